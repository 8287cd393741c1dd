"""The model manager: one process, child of the gunicorn master, that owns the registry of
models and versions and forks, supervises and stops the model workers."""
