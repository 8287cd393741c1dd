"""Public names (issue 12, item 8): what users import comes from the packages they import.

``hookserve.handlers`` exports ``BaseHandler`` and every default handler; ``hookserve``
exports ``Context``, ``hookimpl`` and the error classes. Both load them on first use, so
importing the packages (as frontends do) imports no torch. Import checks run in fresh
interpreters: the test process itself has torch loaded.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest

import hookserve
import hookserve.errors
import hookserve.handlers


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def default_handler_classes() -> dict[str, type]:
    from hookserve.plugins.handlers import hookserve_handler_classes

    return {h.cls.__name__: h.cls for h in hookserve_handler_classes()}


def test_every_default_handler_is_exported_from_hookserve_handlers():
    classes = default_handler_classes()
    assert "BaseHandler" in classes
    assert set(hookserve.handlers.__all__) == set(classes)
    for name, cls in classes.items():
        assert getattr(hookserve.handlers, name) is cls
        assert name in dir(hookserve.handlers)
    from hookserve.handlers import BaseHandler, ImageClassifier, TextClassifier  # noqa: F401

    assert issubclass(ImageClassifier, BaseHandler) and issubclass(TextClassifier, BaseHandler)


def test_context_hookimpl_and_every_error_are_exported_from_hookserve():
    errors = {
        name
        for name, value in vars(hookserve.errors).items()
        if inspect.isclass(value) and issubclass(value, hookserve.errors.HookserveError)
    }
    assert errors <= set(hookserve.__all__)
    for name in errors:
        assert getattr(hookserve, name) is getattr(hookserve.errors, name)
    from hookserve import BadRequest, Context, HookserveError, hookimpl
    from hookserve.context import Context as ContextClass
    from hookserve.hookspecs import hookimpl as marker

    assert Context is ContextClass and hookimpl is marker and issubclass(BadRequest, HookserveError)
    assert set(hookserve.__all__) <= set(dir(hookserve))
    for name in hookserve.__all__:
        assert getattr(hookserve, name) is not None


def test_unknown_names_still_raise_attribute_error_and_submodules_still_import():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        hookserve.Nope  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        hookserve.handlers.Nope  # noqa: B018
    with pytest.raises(ImportError):
        from hookserve.handlers import Nope  # noqa: F401
    from hookserve import errors  # a submodule, not a public name

    assert errors is hookserve.errors


def test_importing_the_packages_and_the_frontend_path_imports_no_torch(tmp_path):
    """What a frontend imports: hookserve, its app module, every builtin plugin (the
    handlers plugin included), and the falcon app they build."""
    out = run_python(
        f"""
        import sys

        import hookserve
        import hookserve.app
        import hookserve.handlers
        from hookserve import Context, BadRequest, hookimpl
        from hookserve.config import ServerConfig

        dir(hookserve), dir(hookserve.handlers)
        app = hookserve.app.create_app(ServerConfig(run_dir={str(tmp_path)!r}))
        assert app is not None
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
        """
    )
    assert out == "[]"


@pytest.mark.parametrize("name", ["BaseHandler", "ImageClassifier", "TextClassifier"])
def test_handlers_import_torch_only_when_touched(name):
    out = run_python(
        f"""
        import sys

        import hookserve.handlers

        before = "torch" in sys.modules
        from hookserve.handlers import {name}

        print(before, "torch" in sys.modules, {name}.__module__)
        """
    )
    before, after, module = out.split()
    assert (before, after) == ("False", "True")
    assert module.startswith("hookserve.handlers.")
