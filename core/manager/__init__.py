"""The model manager: one process, child of the gunicorn master, that owns the registry of
models and versions and forks, supervises and stops the model workers.

``main`` (the process and its loop), ``lifecycle`` (a version opened, added, failed,
removed), ``registry`` (models, versions, defaults), ``supervisor`` (fork, reap, restart
with back-off, stop workers), ``control_api`` (the management operations), ``publishing``
(routes, run state, snapshot), ``startup`` (the models it starts with); ``process`` is the
master's side (start, supervise, stop the manager)."""
