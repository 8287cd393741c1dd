"""``hookserve archive``: torch-model-archiver's command line on top of :mod:`hookserve.archive.writing`.

The flags are torch-model-archiver 0.12's, so existing build scripts work after swapping
the command name. Two differences, both lenient: ``--version`` defaults to ``1.0`` instead
of being required, and ``--export-path`` defaults to the directory current when the
command runs rather than when the parser was built.
"""

from __future__ import annotations

import argparse
import sys

from hookserve.archive.writing import ARCHIVE_FORMATS, RUNTIMES, ArchiveOptions, write_archive
from hookserve.errors import ArchiveError


def add_archive_arguments(parser: argparse.ArgumentParser) -> None:
    """Add torch-model-archiver's flags to ``parser``; dests match :class:`ArchiveOptions`
    field names (``model_name``, ``version``, ``extra_files``, ...)."""
    parser.add_argument("--model-name", required=True, help="name of the model; the output is NAME.mar")
    parser.add_argument("--serialized-file", help="weights: a state_dict .pt/.pth, TorchScript, ...")
    parser.add_argument("--model-file", help="Python file defining the model class (eager mode)")
    parser.add_argument(
        "--handler",
        required=True,
        help="handler file (h.py or h.py:function) or a handler name such as image_classifier",
    )
    parser.add_argument("--extra-files", help="comma-separated files or folders (folders contribute their contents)")
    parser.add_argument("--runtime", default="python", choices=RUNTIMES)
    parser.add_argument("--export-path", help="folder to write the archive to (default: current folder)")
    parser.add_argument(
        "--archive-format",
        default="default",
        choices=list(ARCHIVE_FORMATS),
        help="default: NAME.mar; zip-store: NAME.mar uncompressed; tgz: NAME.tar.gz; no-archive: folder NAME/",
    )
    parser.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("-v", "--version", default="1.0", help="model version (default: 1.0)")
    parser.add_argument("-r", "--requirements-file", help="requirements.txt for the model")
    parser.add_argument("-c", "--config-file", help="model-config.yaml")


def run_archive(args: argparse.Namespace) -> int:
    """Write the archive ``args`` describe and print its path. Returns the exit status:
    0 on success, 2 (after printing ``error: ...`` to stderr) on an :class:`ArchiveError`."""
    options = ArchiveOptions(
        model_name=args.model_name,
        handler=args.handler,
        version=args.version,
        serialized_file=args.serialized_file,
        model_file=args.model_file,
        extra_files=args.extra_files.split(",") if args.extra_files else (),
        requirements_file=args.requirements_file,
        config_file=args.config_file,
        runtime=args.runtime,
        export_path=args.export_path,
        archive_format=args.archive_format,
        force=args.force,
    )
    try:
        path = write_archive(options)
    except ArchiveError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    print(path)
    return 0
