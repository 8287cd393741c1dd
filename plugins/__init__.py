"""Builtin plugins, one module or small package each (see ``hookserve.pluginmanager.BUILTIN_PLUGINS``)."""
