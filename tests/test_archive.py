"""hookserve.archive.reading, .writing and .command on real files, and against torch-model-archiver 0.12."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from helpers import manifest_json
from hookserve.archive.command import add_archive_arguments, run_archive
from hookserve.archive.reading import ModelArchive, open_archive
from hookserve.archive.writing import ArchiveOptions, write_archive
from hookserve.errors import ArchiveError

HANDLER_SOURCE = "def handle(data, context):\n    return [len(data)]\n"
MODEL_SOURCE = (
    "import torch\n\n\nclass Tiny(torch.nn.Module):\n"
    "    def __init__(self):\n        super().__init__()\n        self.fc = torch.nn.Linear(2, 1)\n"
)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Real input files: weights of a small torch model, handler, model file, config, reqs."""
    src = tmp_path / "src"
    src.mkdir()
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(2, 1).state_dict(), src / "weights.pt")
    (src / "my_handler.py").write_text(HANDLER_SOURCE)
    (src / "model.py").write_text(MODEL_SOURCE)
    (src / "model-config.yaml").write_text("minWorkers: 1\nmaxWorkers: 2\nbatchSize: 4\nhandler:\n  topk: 3\n")
    (src / "requirements.txt").write_text("numpy\n")
    (src / "index_to_name.json").write_text('{"0": "zero"}')
    assets = src / "assets"
    (assets / "vocab").mkdir(parents=True)
    (assets / "vocab" / "words.txt").write_text("a\nb\n")
    (assets / "labels.txt").write_text("x\n")
    (assets / "__pycache__").mkdir()
    (assets / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    (assets / ".git").mkdir()
    (assets / ".git" / "HEAD").write_text("ref")
    out = tmp_path / "out"
    out.mkdir()
    return {
        "weights": src / "weights.pt",
        "handler": src / "my_handler.py",
        "model": src / "model.py",
        "config": src / "model-config.yaml",
        "requirements": src / "requirements.txt",
        "index": src / "index_to_name.json",
        "assets": assets,
        "out": out,
        "work": tmp_path / "work",
    }


def full_options(inputs: dict[str, Path], **overrides) -> ArchiveOptions:
    values = dict(
        model_name="tiny",
        version="2.1",
        handler=str(inputs["handler"]),
        serialized_file=str(inputs["weights"]),
        model_file=str(inputs["model"]),
        extra_files=[str(inputs["index"]), str(inputs["assets"])],
        requirements_file=str(inputs["requirements"]),
        config_file=str(inputs["config"]),
        export_path=str(inputs["out"]),
    )
    values.update(overrides)
    return ArchiveOptions(**values)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def make_zip(path: Path, entries: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def symlink_info(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


EXPECTED_FILES = {
    "weights.pt",
    "my_handler.py",
    "model.py",
    "model-config.yaml",
    "requirements.txt",
    "index_to_name.json",
    "labels.txt",
    "vocab/words.txt",
    "MAR-INF/MANIFEST.json",
}


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "archive_format, expected_name",
    [("default", "tiny.mar"), ("zip-store", "tiny.mar"), ("tgz", "tiny.tar.gz"), ("no-archive", "tiny")],
)
def test_round_trip_every_format(inputs, archive_format, expected_name):
    written = write_archive(full_options(inputs, archive_format=archive_format))
    assert written == inputs["out"] / expected_name

    archive = open_archive(written, inputs["work"])

    assert archive.source == str(written)
    assert (archive.name, archive.version, archive.runtime) == ("tiny", "2.1", "python")
    assert archive.handler == "my_handler.py"
    assert archive.serialized_file == "weights.pt"
    assert archive.model_file == "model.py"
    assert archive.requirements_file == "requirements.txt"
    assert archive.config_file == "model-config.yaml"
    assert archive.manifest["archiverVersion"] == "0.12.0"
    assert archive.config == {"minWorkers": 1, "maxWorkers": 2, "batchSize": 4, "handler": {"topk": 3}}
    assert files_under(archive.model_dir) == EXPECTED_FILES
    original = torch.load(inputs["weights"])
    loaded = torch.load(archive.model_dir / archive.serialized_file)
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)
    if archive_format == "no-archive":
        assert archive.model_dir == written.resolve()
    else:
        assert archive.model_dir.is_relative_to(inputs["work"].resolve())


@pytest.mark.parametrize(
    "archive_format, compression", [("default", zipfile.ZIP_DEFLATED), ("zip-store", zipfile.ZIP_STORED)]
)
def test_zip_formats_compression_and_layout(inputs, archive_format, compression):
    written = write_archive(full_options(inputs, archive_format=archive_format))
    with zipfile.ZipFile(written) as zf:
        assert {i.compress_type for i in zf.infolist()} == {compression}
        assert set(zf.namelist()) == EXPECTED_FILES


def test_tgz_entries_live_under_model_name_folder(inputs):
    written = write_archive(full_options(inputs, archive_format="tgz"))
    with tarfile.open(written) as tf:
        names = {m.name for m in tf.getmembers() if m.isfile()}
    assert names == {f"tiny/{n}" for n in EXPECTED_FILES}


def test_manifest_omits_unset_keys(inputs):
    options = ArchiveOptions(model_name="bare", handler="image_classifier", export_path=inputs["out"])
    written = write_archive(options)
    with zipfile.ZipFile(written) as zf:
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        assert zf.namelist() == ["MAR-INF/MANIFEST.json"]  # a built-in handler is not copied
    assert list(manifest) == ["createdOn", "runtime", "model", "archiverVersion"]
    assert manifest["model"] == {"modelName": "bare", "handler": "image_classifier", "modelVersion": "1.0"}


def test_handler_with_function_and_without_suffix(inputs, monkeypatch):
    monkeypatch.chdir(inputs["handler"].parent)
    out = inputs["out"]
    with_fn = write_archive(ArchiveOptions(model_name="a", handler="my_handler.py:handle", export_path=out))
    no_suffix = write_archive(ArchiveOptions(model_name="b", handler="my_handler:handle", export_path=out))
    for path, recorded in [(with_fn, "my_handler.py:handle"), (no_suffix, "my_handler:handle")]:
        archive = open_archive(path, inputs["work"])
        assert archive.handler == recorded
        assert (archive.model_dir / "my_handler.py").read_text() == HANDLER_SOURCE


def test_force_overwrites_each_format(inputs):
    for archive_format in ("default", "tgz", "no-archive"):
        first = write_archive(full_options(inputs, archive_format=archive_format, version="1"))
        second = write_archive(full_options(inputs, archive_format=archive_format, version="2", force=True))
        assert first == second
        assert open_archive(second, inputs["work"]).version == "2"


# ------------------------------------------------------------------------------- reading


def test_folder_is_used_in_place(tmp_path):
    folder = tmp_path / "resnet"
    (folder / "MAR-INF").mkdir(parents=True)
    (folder / "MAR-INF" / "MANIFEST.json").write_bytes(manifest_json(serializedFile="w.pt", handler="h.py"))
    torch.save({"x": torch.ones(2)}, folder / "w.pt")
    work = tmp_path / "work"

    archive = open_archive(str(folder), work)

    assert archive.model_dir == folder.resolve()
    assert (archive.name, archive.serialized_file, archive.handler) == ("m", "w.pt", "h.py")
    assert not work.exists()  # nothing extracted


def test_tar_gz_with_and_without_top_folder(tmp_path):
    weights = io.BytesIO()
    torch.save({"x": torch.ones(2)}, weights)
    nested = make_tar(
        tmp_path / "nested.tar.gz",
        [("pkg/MAR-INF/MANIFEST.json", manifest_json(serializedFile="w.pt")), ("pkg/w.pt", weights.getvalue())],
    )
    flat = make_tar(
        tmp_path / "flat.tgz",
        [("./MAR-INF/MANIFEST.json", manifest_json(serializedFile="w.pt")), ("./w.pt", weights.getvalue())],
    )
    for path in (nested, flat):
        archive = open_archive(path, tmp_path / "work")
        assert archive.serialized_file == "w.pt"
        assert torch.equal(torch.load(archive.model_dir / "w.pt")["x"], torch.ones(2))


def test_no_manifest_defaults(tmp_path):
    weights = io.BytesIO()
    torch.save({"x": torch.zeros(1)}, weights)
    path = make_zip(tmp_path / "plain.zip", {"model.pth": weights.getvalue(), "notes.txt": "hi"})

    archive = open_archive(path, tmp_path / "work")

    assert archive.manifest == {
        "runtime": "python",
        "model": {"modelName": "plain", "modelVersion": "1.0", "serializedFile": "model.pth"},
    }
    assert (archive.name, archive.version, archive.runtime, archive.handler) == ("plain", "1.0", "python", None)
    assert archive.config == {}


def test_no_manifest_two_weight_files_leaves_serialized_file_unset(tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    torch.save({}, folder / "a.pt")
    torch.save({}, folder / "b.pt2")
    archive = open_archive(folder, tmp_path / "work")
    assert archive.serialized_file is None
    assert archive.name == "two"


def test_model_name_overrides_manifest(inputs):
    written = write_archive(full_options(inputs))
    archive = open_archive(written, inputs["work"], model_name="renamed")
    assert archive.name == "renamed"
    assert archive.manifest["model"]["modelName"] == "renamed"
    assert archive.version == "2.1"


def test_each_open_extracts_into_a_fresh_folder(inputs):
    written = write_archive(full_options(inputs))
    first = open_archive(written, inputs["work"])
    second = open_archive(written, inputs["work"])
    assert first.model_dir != second.model_dir
    assert first.model_dir.parent == second.model_dir.parent == inputs["work"].resolve()


def test_model_archive_properties_none_when_absent(tmp_path):
    archive = ModelArchive(source="x", model_dir=tmp_path, manifest={"model": {"modelName": "x"}})
    assert archive.name == "x"
    assert archive.version == "1.0"  # the archiver's default, as TorchServe assumes
    assert (archive.handler, archive.serialized_file, archive.model_file) == (None,) * 3
    assert (archive.requirements_file, archive.config_file, archive.runtime) == (None,) * 3
    assert archive.config == {}


# -------------------------------------------------------------------------- read errors


def open_error(path: Path, work: Path) -> str:
    with pytest.raises(ArchiveError) as info:
        open_archive(path, work)
    assert str(path) in info.value.message  # every message names the archive
    assert info.value.type == "InvalidModelException"
    return info.value.message


def test_not_found(tmp_path):
    assert "not found" in open_error(tmp_path / "missing.mar", tmp_path / "work")


def test_bad_zip(tmp_path):
    path = tmp_path / "broken.mar"
    path.write_bytes(b"this is not a zip")
    assert "not a valid zip archive" in open_error(path, tmp_path / "work")
    assert list((tmp_path / "work").iterdir()) == []  # failed extraction is cleaned up


def test_bad_tar(tmp_path):
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(b"this is not a tarball")
    assert "not a valid tar archive" in open_error(path, tmp_path / "work")


def test_unknown_file_type(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00" * 64)
    assert "neither a zip" in open_error(path, tmp_path / "work")


def test_manifest_not_json(tmp_path):
    path = make_zip(tmp_path / "m.mar", {"MAR-INF/MANIFEST.json": "{not json"})
    message = open_error(path, tmp_path / "work")
    assert "MAR-INF/MANIFEST.json is not valid JSON" in message
    assert "Expecting property name" in message  # the JSON error itself


def test_manifest_without_model_section(tmp_path):
    path = make_zip(tmp_path / "m.mar", {"MAR-INF/MANIFEST.json": '{"runtime": "python"}'})
    assert "has no 'model' section" in open_error(path, tmp_path / "work")


def test_serialized_file_missing(tmp_path):
    path = make_zip(tmp_path / "m.mar", {"MAR-INF/MANIFEST.json": manifest_json(serializedFile="gone.pt")})
    message = open_error(path, tmp_path / "work")
    assert "serializedFile 'gone.pt'" in message and "no such file" in message


def test_manifest_file_outside_archive(tmp_path):
    manifest = manifest_json(serializedFile="../../etc/passwd")
    path = make_zip(tmp_path / "m.mar", {"MAR-INF/MANIFEST.json": manifest})
    assert "is not a path inside the archive" in open_error(path, tmp_path / "work")


def test_config_file_missing(tmp_path):
    path = make_zip(tmp_path / "m.mar", {"MAR-INF/MANIFEST.json": manifest_json(configFile="model-config.yaml")})
    assert "configFile 'model-config.yaml'" in open_error(path, tmp_path / "work")


def test_config_file_invalid_yaml(tmp_path):
    path = make_zip(
        tmp_path / "m.mar",
        {"MAR-INF/MANIFEST.json": manifest_json(configFile="c.yaml"), "c.yaml": "minWorkers: [1, 2\n"},
    )
    assert "c.yaml is not valid YAML" in open_error(path, tmp_path / "work")


def test_invalid_model_name_in_manifest(tmp_path):
    path = make_zip(tmp_path / "m.mar", {"MAR-INF/MANIFEST.json": json.dumps({"model": {"modelName": "a b"}})})
    assert "model name 'a b' is invalid" in open_error(path, tmp_path / "work")


@pytest.mark.parametrize("entry", ["../evil.txt", "/tmp/hookserve-evil.txt", "a/../../evil.txt"])
def test_zip_traversal_refused(tmp_path, entry):
    path = make_zip(tmp_path / "m.mar", {entry: "pwned", "MAR-INF/MANIFEST.json": manifest_json()})
    message = open_error(path, tmp_path / "sub" / "work")
    assert repr(entry) in message and "escapes the extraction folder" in message
    assert not (tmp_path / "sub" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/hookserve-evil.txt").exists()


def test_zip_symlink_escape_refused(tmp_path):
    path = tmp_path / "m.mar"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "../../outside")
    message = open_error(path, tmp_path / "work")
    assert "symlink 'link' -> '../../outside' points outside" in message


@pytest.mark.parametrize("entry", ["../evil.txt", "/tmp/hookserve-evil.txt"])
def test_tar_traversal_refused(tmp_path, entry):
    path = make_tar(tmp_path / "m.tar.gz", [(entry, b"pwned")])
    message = open_error(path, tmp_path / "sub" / "work")
    assert repr(entry) in message and "escapes the extraction folder" in message
    assert not (tmp_path / "sub" / "evil.txt").exists()
    assert not Path("/tmp/hookserve-evil.txt").exists()


def test_tar_symlink_escape_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    path = make_tar(
        tmp_path / "m.tar.gz",
        [symlink_info("link", str(outside)), ("link/evil.txt", b"pwned")],
    )
    message = open_error(path, tmp_path / "work")
    assert f"symlink 'link' -> '{outside}' points outside" in message
    assert list(outside.iterdir()) == []


def test_tar_relative_symlink_escape_refused(tmp_path):
    path = make_tar(tmp_path / "m.tgz", [symlink_info("up", "../../..")])
    assert "symlink 'up' -> '../../..' points outside" in open_error(path, tmp_path / "work")


def test_tar_chained_symlink_escape_refused(tmp_path):
    # "s" -> "." is harmless alone, but makes "s/l" -> "../x" point one level above.
    path = make_tar(
        tmp_path / "m.tar.gz",
        [symlink_info("s", "."), symlink_info("s/l", "../x"), ("s/l/evil.txt", b"pwned")],
    )
    assert "points outside" in open_error(path, tmp_path / "work")
    assert not (tmp_path / "x").exists()


def test_tar_symlink_inside_is_kept(tmp_path):
    path = make_tar(
        tmp_path / "m.tar.gz",
        [
            ("MAR-INF/MANIFEST.json", manifest_json(serializedFile="w.pt")),
            ("real.pt", b"data"),
            symlink_info("w.pt", "real.pt"),
        ],
    )
    archive = open_archive(path, tmp_path / "work")
    assert (archive.model_dir / "w.pt").is_symlink()
    assert (archive.model_dir / "w.pt").read_bytes() == b"data"


# ------------------------------------------------------------------------- write errors


def write_error(options: ArchiveOptions) -> str:
    with pytest.raises(ArchiveError) as info:
        write_archive(options)
    return info.value.message


def test_existing_output_needs_force(inputs):
    written = write_archive(full_options(inputs))
    before = written.read_bytes()
    message = write_error(full_options(inputs, version="9"))
    assert str(written) in message and "--force" in message
    assert written.read_bytes() == before


def test_invalid_model_name(inputs):
    assert "model name 'bad name' is invalid" in write_error(full_options(inputs, model_name="bad name"))
    assert "is invalid" in write_error(full_options(inputs, model_name="-dash"))


@pytest.mark.parametrize(
    "field, kind",
    [
        ("serialized_file", "serialized file"),
        ("model_file", "model file"),
        ("requirements_file", "requirements file"),
        ("config_file", "config file"),
    ],
)
def test_missing_input_file(inputs, field, kind):
    missing = str(inputs["out"] / "nope.bin")
    assert write_error(full_options(inputs, **{field: missing})) == f"{kind} {missing} not found"
    assert list(inputs["out"].iterdir()) == []


def test_missing_extra_file_and_handler(inputs):
    missing = str(inputs["out"] / "nope.json")
    assert write_error(full_options(inputs, extra_files=[missing])) == f"extra file {missing} not found"
    assert "handler file /no/such/h.py not found" in write_error(full_options(inputs, handler="/no/such/h.py"))


def test_bad_export_path_format_and_runtime(inputs):
    assert "is not a directory" in write_error(full_options(inputs, export_path=str(inputs["weights"])))
    assert "archive format 'rar'" in write_error(full_options(inputs, archive_format="rar"))
    assert "runtime 'LSP'" in write_error(full_options(inputs, runtime="LSP"))


# -------------------------------------------------------------------------------- CLI


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hookserve archive")
    add_archive_arguments(parser)
    return parser.parse_args(argv)


def cli_argv(inputs: dict[str, Path], *extra: str) -> list[str]:
    return [
        "--model-name", "tiny",
        "--handler", str(inputs["handler"]),
        "--serialized-file", str(inputs["weights"]),
        "--model-file", str(inputs["model"]),
        "--extra-files", f"{inputs['index']},{inputs['assets']}",
        "-r", str(inputs["requirements"]),
        "-c", str(inputs["config"]),
        "--export-path", str(inputs["out"]),
        *extra,
    ]  # fmt: skip


def test_run_archive_writes_and_prints_path(inputs, capsys):
    assert run_archive(parse(cli_argv(inputs, "--archive-format", "tgz", "-v", "3.0"))) == 0
    written = inputs["out"] / "tiny.tar.gz"
    assert capsys.readouterr().out.strip() == str(written)
    archive = open_archive(written, inputs["work"])
    assert archive.version == "3.0"
    assert files_under(archive.model_dir) == EXPECTED_FILES


def test_run_archive_defaults(inputs, capsys, monkeypatch):
    monkeypatch.chdir(inputs["out"])
    args = parse(["--model-name", "d", "--handler", "image_classifier"])
    assert (args.version, args.runtime, args.archive_format, args.force, args.export_path) == (
        "1.0", "python", "default", False, None
    )  # fmt: skip
    assert run_archive(args) == 0
    assert capsys.readouterr().out.strip() == str(inputs["out"] / "d.mar")


def test_run_archive_error_exit_status(inputs, capsys):
    assert run_archive(parse(cli_argv(inputs))) == 0
    capsys.readouterr()
    assert run_archive(parse(cli_argv(inputs))) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and "--force" in captured.err
    assert run_archive(parse(cli_argv(inputs, "-f"))) == 0


def test_parser_rejects_unknown_choices():
    with pytest.raises(SystemExit):
        parse(["--model-name", "x", "--handler", "h", "--archive-format", "rar"])


# ------------------------------------------------- compatibility with torch-model-archiver


def run_torch_model_archiver(inputs: dict[str, Path], export: Path, *flags: str) -> None:
    # TMPDIR: the archiver stages files in $TMPDIR/<model-name> and deletes it first.
    env = dict(os.environ, TMPDIR=str(export.parent))
    subprocess.run(
        [sys.executable, "-m", "model_archiver.model_packaging", *flags, "--export-path", str(export)],
        check=True,
        env=env,
        cwd=inputs["out"],
        capture_output=True,
    )


def reference_flags(inputs: dict[str, Path]) -> list[list[str]]:
    full = [
        "--model-name", "tiny", "--version", "2.1",
        "--handler", str(inputs["handler"]),
        "--serialized-file", str(inputs["weights"]),
        "--model-file", str(inputs["model"]),
        "--extra-files", f"{inputs['index']},{inputs['assets']}",
        "--requirements-file", str(inputs["requirements"]),
        "--config-file", str(inputs["config"]),
    ]  # fmt: skip
    minimal = ["--model-name", "tiny", "--version", "1.0", "--handler", "image_classifier"]
    weights_only = [
        "--model-name", "tiny", "--version", "1.0",
        "--handler", str(inputs["handler"]), "--serialized-file", str(inputs["weights"]),
    ]  # fmt: skip
    return [full, minimal, weights_only]


@pytest.mark.parametrize("archive_format", ["default", "tgz", "no-archive"])
def test_reads_what_torch_model_archiver_writes(inputs, tmp_path, archive_format):
    pytest.importorskip("model_archiver")
    export = tmp_path / "tma"
    export.mkdir()
    run_torch_model_archiver(inputs, export, *reference_flags(inputs)[0], "--archive-format", archive_format)
    written = export / {"default": "tiny.mar", "tgz": "tiny.tar.gz", "no-archive": "tiny"}[archive_format]

    archive = open_archive(written, inputs["work"])

    reference = json.loads((archive.model_dir / "MAR-INF" / "MANIFEST.json").read_text())
    assert archive.manifest == reference
    assert reference["model"]["modelName"] == "tiny"
    assert (archive.name, archive.version, archive.handler) == ("tiny", "2.1", "my_handler.py")
    assert (archive.serialized_file, archive.model_file) == ("weights.pt", "model.py")
    assert (archive.requirements_file, archive.config_file, archive.runtime) == (
        "requirements.txt", "model-config.yaml", "python"
    )  # fmt: skip
    assert archive.config["batchSize"] == 4
    assert files_under(archive.model_dir) == EXPECTED_FILES


@pytest.mark.parametrize("case", [0, 1, 2], ids=["all-flags", "builtin-handler", "weights-only"])
def test_writes_what_torch_model_archiver_writes(inputs, tmp_path, case):
    pytest.importorskip("model_archiver")
    flags = reference_flags(inputs)[case]
    export = tmp_path / "tma"
    export.mkdir()
    run_torch_model_archiver(inputs, export, *flags)
    assert run_archive(parse([*flags, "--export-path", str(inputs["out"])])) == 0

    with zipfile.ZipFile(export / "tiny.mar") as theirs, zipfile.ZipFile(inputs["out"] / "tiny.mar") as ours:
        their_manifest = json.loads(theirs.read("MAR-INF/MANIFEST.json"))
        our_manifest = json.loads(ours.read("MAR-INF/MANIFEST.json"))
        assert set(ours.namelist()) == set(theirs.namelist())
    assert list(our_manifest) == list(their_manifest)
    assert list(our_manifest["model"]) == list(their_manifest["model"])
    del our_manifest["createdOn"], their_manifest["createdOn"]
    assert our_manifest == their_manifest


def test_tar_link_redirected_by_later_link_refused(tmp_path):
    # "a" -> "b/../c" stays inside while "b" does not exist; "b" -> "." then sends it above.
    path = make_tar(tmp_path / "m.tar.gz", [symlink_info("a", "b/../c"), symlink_info("b", ".")])
    assert "symlink 'a' -> 'b/../c' points outside" in open_error(path, tmp_path / "work")


def test_tar_write_through_redirected_link_refused(tmp_path):
    path = make_tar(
        tmp_path / "m.tar.gz",
        [symlink_info("a", "b/../c"), symlink_info("b", "."), ("a", b"pwned")],
    )
    assert "entry 'a' resolves outside the extraction folder" in open_error(path, tmp_path / "work")
    assert not (tmp_path / "work" / "c").exists()


def test_symlinked_inputs_are_archived_as_content(inputs, tmp_path):
    link = tmp_path / "linked.pt"
    link.symlink_to(inputs["weights"])
    for archive_format in ("default", "tgz", "no-archive"):
        written = write_archive(
            ArchiveOptions(model_name="ln", handler="image_classifier", serialized_file=str(link),
                           export_path=inputs["out"], archive_format=archive_format, force=True)
        )  # fmt: skip
        archive = open_archive(written, inputs["work"])
        weights = archive.model_dir / "linked.pt"
        assert not weights.is_symlink()
        assert weights.read_bytes() == inputs["weights"].read_bytes()


def test_rearchiving_a_folder_replaces_its_manifest(inputs):
    folder = write_archive(full_options(inputs, archive_format="no-archive", version="1.0"))
    written = write_archive(
        ArchiveOptions(model_name="again", handler="image_classifier", version="5", extra_files=[str(folder)],
                       export_path=inputs["out"])
    )  # fmt: skip
    with zipfile.ZipFile(written) as zf:
        assert zf.namelist().count("MAR-INF/MANIFEST.json") == 1
    archive = open_archive(written, inputs["work"])
    assert (archive.name, archive.version, archive.serialized_file) == ("again", "5", None)
    assert files_under(archive.model_dir) == EXPECTED_FILES


def test_extra_files_glob_pattern(inputs, tmp_path):
    (tmp_path / "src" / "extra_a.txt").write_text("a")
    (tmp_path / "src" / "extra_b.txt").write_text("b")
    pattern = str(tmp_path / "src" / "extra_*.txt")
    options = ArchiveOptions(
        model_name="g", handler="image_classifier", extra_files=[pattern], export_path=inputs["out"]
    )
    written = write_archive(options)
    with zipfile.ZipFile(written) as zf:
        assert set(zf.namelist()) == {"extra_a.txt", "extra_b.txt", "MAR-INF/MANIFEST.json"}


def test_entry_clashing_with_a_file_is_an_archive_error(tmp_path):
    path = make_zip(tmp_path / "m.mar", {"a": "file", "a/b": "needs a to be a folder"})
    assert "cannot be extracted" in open_error(path, tmp_path / "work")
