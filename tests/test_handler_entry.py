"""resolve_handler: every form of a manifest's ``handler`` string, and every error, on real files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers import folder_archive
from hookserve.archive.reading import ModelArchive
from hookserve.context import Context
from hookserve.errors import ArchiveError
from hookserve.handlers.base_handler import BaseHandler
from hookserve.handlers.image_classifier import ImageClassifier
from hookserve.pluginmanager import Hooks
from hookserve.worker.handler_entry import resolve_handler

pytestmark = pytest.mark.usefixtures("forget_archive_modules")

FUNCTION_HANDLER = """
calls = []


def {name}(data, context):
    calls.append(data)
    return None if data is None else [len(data)]
"""
CLASS_HANDLER = """
from hookserve.handlers.base_handler import BaseHandler



class Counter(BaseHandler):
    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        return [len(data)]
"""


def archive_with(model_dir: Path, handler: str, files: dict[str, str]) -> ModelArchive:
    return folder_archive(model_dir, files, handler=handler)


def context_for(archive: ModelArchive) -> Context:
    return Context(archive.name, str(archive.model_dir), archive.manifest, 1, None)


@pytest.mark.parametrize(
    "handler, files, function",
    [
        ("handler.py", {"handler.py": FUNCTION_HANDLER.format(name="handle")}, "handle"),
        ("handler", {"handler.py": FUNCTION_HANDLER.format(name="handle")}, "handle"),
        ("handler.py:predict", {"handler.py": FUNCTION_HANDLER.format(name="predict")}, "predict"),
        (
            "pkg.serving:predict",
            {"pkg/__init__.py": "", "pkg/serving.py": FUNCTION_HANDLER.format(name="predict")},
            "predict",
        ),
    ],
)
def test_function_entry_point(tmp_path: Path, hooks: Hooks, handler: str, files: dict, function: str) -> None:
    archive = archive_with(tmp_path, handler, files)
    entry = resolve_handler(archive, hooks)
    context = context_for(archive)

    assert entry.handler.__name__ == function
    entry.initialize(context)
    assert entry.handle([{"body": b"a"}, {"body": b"b"}], context) == [2]
    # initialize called fn(None, context) first
    assert sys.modules[entry.handler.__module__].calls == [None, [{"body": b"a"}, {"body": b"b"}]]


def test_class_defined_in_module(tmp_path: Path, hooks: Hooks) -> None:
    archive = archive_with(tmp_path, "handler.py", {"handler.py": CLASS_HANDLER})
    entry = resolve_handler(archive, hooks)
    context = context_for(archive)

    assert type(entry.handler).__name__ == "Counter"  # BaseHandler is imported, not defined, there
    entry.initialize(context)
    assert entry.handler.initialized
    assert entry.handle([{}, {}, {}], context) == [3]


@pytest.mark.parametrize("name, cls", [("base_handler", BaseHandler), ("image_classifier", ImageClassifier)])
def test_known_handler_name(tmp_path: Path, hooks: Hooks, name: str, cls: type) -> None:
    entry = resolve_handler(archive_with(tmp_path, name, {}), hooks)
    assert type(entry.handler) is cls


def test_each_model_gets_its_own_handler_module(tmp_path: Path, hooks: Hooks) -> None:
    source = "def handle(data, context):\n    return [{!r}]\n"
    first = archive_with(tmp_path / "a", "handler.py", {"handler.py": source.format("a")})
    second = archive_with(tmp_path / "b", "handler.py", {"handler.py": source.format("b")})
    assert resolve_handler(first, hooks).handle([{}], None) == ["a"]
    assert resolve_handler(second, hooks).handle([{}], None) == ["b"]


# --- errors ----------------------------------------------------------------------------


def test_import_error_inside_handler_module(tmp_path: Path, hooks: Hooks) -> None:
    archive = archive_with(tmp_path, "handler.py", {"handler.py": "import captum_not_installed\n"})
    with pytest.raises(
        ArchiveError,
        match="cannot import handler 'handler.py': ModuleNotFoundError: No module named 'captum_not_installed'",
    ):
        resolve_handler(archive, hooks)


def test_syntax_error_in_handler_module(tmp_path: Path, hooks: Hooks) -> None:
    archive = archive_with(tmp_path, "handler.py", {"handler.py": "def handle(:\n"})
    with pytest.raises(ArchiveError, match="cannot import handler 'handler.py': SyntaxError"):
        resolve_handler(archive, hooks)


def test_more_than_one_class(tmp_path: Path, hooks: Hooks) -> None:
    source = CLASS_HANDLER + "\n\nclass Helper:\n    pass\n"
    archive = archive_with(tmp_path, "handler.py:serve", {"handler.py": source})
    with pytest.raises(
        ArchiveError,
        match=r"has no function 'serve', so expected exactly one class in it, found \['Counter', 'Helper'\]",
    ):
        resolve_handler(archive, hooks)


def test_class_without_initialize(tmp_path: Path, hooks: Hooks) -> None:
    source = "class OnlyHandle:\n    def handle(self, data, context):\n        return data\n"
    archive = archive_with(tmp_path, "handler.py", {"handler.py": source})
    with pytest.raises(ArchiveError, match="handler class OnlyHandle has no initialize"):
        resolve_handler(archive, hooks)


def test_class_without_handle(tmp_path: Path, hooks: Hooks) -> None:
    source = "class OnlyInit:\n    def initialize(self, context):\n        pass\n"
    archive = archive_with(tmp_path, "handler.py", {"handler.py": source})
    with pytest.raises(ArchiveError, match="handler class OnlyInit has no handle"):
        resolve_handler(archive, hooks)


def test_unknown_name_lists_known_names(tmp_path: Path, hooks: Hooks) -> None:
    archive = archive_with(tmp_path, "audio_classifier", {})
    with pytest.raises(
        ArchiveError,
        match=r"handler 'audio_classifier' is neither a module in .* nor a known handler name "
        r"\['base_handler', 'image_classifier', 'image_segmenter', 'object_detector', 'text_classifier'\]",
    ):
        resolve_handler(archive, hooks)


def test_no_handler(tmp_path: Path, hooks: Hooks) -> None:
    archive = archive_with(tmp_path, "", {})
    with pytest.raises(ArchiveError, match="the manifest names no handler"):
        resolve_handler(archive, hooks)
