"""Builtin plugins, one module or small package each (declared as entry points in ``pyproject.toml``)."""
