"""One error module: every error hookserve reports is a typed class of ``hookserve.errors``
with its HTTP status and TorchServe type name, serialized one way."""

from __future__ import annotations

import importlib
import json
import pkgutil

import hookserve
from hookserve import errors
from hookserve.errors import HookserveError, error_for_status

# importing these runs something (a gunicorn config module, a ``python -m`` entry point)
SKIPPED = {"hookserve.gunicorn_conf", "hookserve.demo.__main__", "hookserve.manager.__main__"}


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def test_every_error_class_lives_in_the_error_module():
    for module in pkgutil.walk_packages(hookserve.__path__, "hookserve."):
        if module.name not in SKIPPED:
            importlib.import_module(module.name)
    for package in ("hookserve.plugins", "hookserve.handlers"):
        for module in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            importlib.import_module(module.name)
    outside = {
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in all_subclasses(HookserveError)
        if cls.__module__.startswith("hookserve") and cls.__module__ != "hookserve.errors"
    }
    assert outside == set()


def test_each_class_names_one_status_and_type():
    classes = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, HookserveError)]
    pairs = [(cls.code, cls.type) for cls in classes if cls is not HookserveError]
    assert len(pairs) == len(set(pairs)), pairs
    error = errors.ModelVersionNotFound("Model version: 9 does not exist for model: mlp")
    assert json.loads(error.to_json()) == {
        "code": 404,
        "type": "ModelVersionNotFoundException",
        "message": "Model version: 9 does not exist for model: mlp",
    }


def test_replies_of_the_http_layers_get_torchserve_names():
    assert error_for_status(404, "no route").to_dict() == {
        "code": 404,
        "type": "ResourceNotFoundException",
        "message": "no route",
    }
    assert error_for_status(431, "header").type == "RequestHeaderFieldsTooLargeException"
    assert error_for_status(415, "media").type == "UnsupportedMediaTypeException"
    assert error_for_status(599, "odd").type == "InternalServerException"
