"""Handlers: ``BaseHandler`` and the default handlers."""
