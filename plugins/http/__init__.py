"""The HTTP frontend: falcon ASGI apps for the inference, management and metrics listeners."""
