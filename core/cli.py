"""The ``hookserve`` command: ``serve``, ``archive`` and ``plugins``, and the commands plugins add
(``hookserve demo`` is the builtin ``demo`` plugin's)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys

from hookserve import __version__
from hookserve.config import (
    ADDRESS_NAMES,
    TOKEN_ENV,
    TS_CONFIG_FILE_ENV,
    ModelSpec,
    ServerConfig,
    apply_ts_properties,
    parse_address,
    read_properties,
)
from hookserve.errors import HookserveError
from hookserve.manager.limits import check_server_settings
from hookserve.pluginmanager import Hooks, create_plugin_manager, plugin_infos


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``hookserve serve`` flags; unset flags leave config.properties or defaults in place."""
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="[NAME=]ARCHIVE",
        help="models to load at start: name=file.mar, file.mar, a folder, or 'all' (the whole store)",
    )
    parser.add_argument("--model-store", default=None, help="folder holding model archives")
    parser.add_argument("--ts-config", default=None, help="a TorchServe config.properties file")
    for name in ADDRESS_NAMES:
        parser.add_argument(
            f"--{name}-address", dest=f"{name}_address_text", default=None, type=_address_flag, metavar="HOST:PORT"
        )
    # TLS: one certificate for every listener (see ServerConfig.check_tls)
    parser.add_argument("--certfile", default=None, help="PEM certificate (chain): serve TLS on every listener")
    parser.add_argument("--keyfile", default=None, help="PEM private key of --certfile (if not in that file)")
    parser.add_argument(
        "--workers",
        dest="default_workers_per_model",
        type=int,
        default=None,
        help="model workers per model (default: one per GPU, else one per CPU core)",
    )
    parser.add_argument("--frontend-workers", type=int, default=None, help="gunicorn worker processes")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-batch-delay", type=int, default=None, metavar="MS")
    parser.add_argument("--max-request-size", type=int, default=None, metavar="BYTES")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads per worker")
    parser.add_argument(
        "--busy-poll-us",
        type=int,
        default=None,
        metavar="US",
        help="poll instead of sleeping this long after activity, at low load (default 300; 0: off)",
    )
    parser.add_argument(
        "--no-batch-scheduling",
        dest="batch_scheduling",
        action="store_false",
        default=None,
        help="keep the default CPU scheduling instead of SCHED_BATCH for frontends and model workers",
    )
    add_plugin_arguments(parser)
    parser.add_argument("--job-queue-size", type=int, default=None, help="requests queued per model (503 beyond)")
    parser.add_argument(
        "--allowed-urls",
        type=lambda v: [u for u in v.split(",") if u],
        default=None,
        metavar="REGEX,...",
        help="model URLs allowed beyond the model store",
    )
    parser.add_argument("--snapshot-dir", default=None, help="where the registry snapshot is kept")
    parser.add_argument(
        "--no-snapshot",
        "--ncs",
        dest="snapshot",
        action="store_false",
        default=None,
        help="neither restore nor write the registry snapshot",
    )
    parser.add_argument(
        "--management-token", default=None, help=f"bearer token for the management API (or ${TOKEN_ENV})"
    )
    parser.add_argument(
        "--disable-token-auth",
        action="store_true",
        default=None,
        help="allow a management API beyond loopback without a token",
    )
    parser.add_argument(
        "--enable-model-api",
        action="store_true",
        default=None,
        help="allow registering models while management listens beyond loopback",
    )
    parser.add_argument(
        "--max-workers-per-model",
        type=int,
        default=None,
        metavar="N",
        help="most model workers one model version may have (default: max(4, 4 x CPU cores))",
    )
    parser.add_argument(
        "--max-workers",
        type=int,
        default=None,
        metavar="N",
        help="most model workers of all models together (default: max(4, min(16 x CPU cores, memory / 256 MiB)))",
    )
    parser.add_argument("--foreground", action="store_true", help="accepted for TorchServe compatibility")


def _address_flag(text: str) -> str:
    parse_address(text)  # a bad address is a usage error at once
    return text


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Defaults < ``--ts-config`` < flags."""
    config = ServerConfig()
    # TorchServe reads $TS_CONFIG_FILE when no config file is named on its command line
    ts_config = args.ts_config or os.environ.get(TS_CONFIG_FILE_ENV) or None
    if ts_config:
        apply_ts_properties(config, read_properties(ts_config), ts_config)
    # every flag whose dest is a config field; None means "not given"
    for field in dataclasses.fields(ServerConfig):
        value = getattr(args, field.name, None)
        if value is not None and field.name != "models":
            setattr(config, field.name, value)
    if args.models is not None:
        config.models = [ModelSpec.parse(m) for m in args.models]
    for name in ADDRESS_NAMES:
        if getattr(args, f"{name}_address_text", None) is not None:
            config.set_address(name, getattr(args, f"{name}_address_text"))
    config.management_token = config.management_token or os.environ.get(TOKEN_ENV) or None
    config.check_security()
    check_server_settings(config)
    config.check_tls()
    return config


def serve_config(argv: list[str]) -> ServerConfig:
    parser = argparse.ArgumentParser(prog="hookserve serve")
    add_serve_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def run_serve(args: argparse.Namespace, hooks: Hooks | None) -> int:
    from hookserve.manager.process import start_manager

    config = config_from_args(args)
    # before the plugins and gunicorn are imported: the manager's import of torch (about a
    # second) overlaps them
    manager = start_manager(config)
    if hooks is None:
        hooks = Hooks(create_plugin_manager(disabled=config.disabled_plugins, strict=config.strict_plugins))
        hooks.cli_commands(core=CORE_COMMANDS)  # a plugin command that takes a core name is still an error
    hooks.configure(config=config)
    from hookserve.server import HookserveApplication

    HookserveApplication(config, manager).run()
    return 0


def run_plugins(args: argparse.Namespace, hooks: Hooks) -> int:
    for info in plugin_infos(hooks.pm):
        print(f"{info.name}  [{info.source}]  {info.module}")
        print(f"    hooks: {', '.join(info.hooks) or '(none)'}")
    return 0


def add_plugin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--disable-plugin", dest="disabled_plugins", action="append", default=None, metavar="NAME")
    parser.add_argument(
        "--strict-plugins",
        action="store_true",
        default=None,
        help="a broken third-party plugin stops the server instead of being skipped",
    )


def command_line_plugins(argv: list[str]) -> Hooks:
    """The plugins, loaded before the command line is parsed (they add commands to it), with
    the ``--disable-plugin`` and ``--strict-plugins`` flags given anywhere on it."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_plugin_arguments(early)
    known, _ = early.parse_known_args(argv)
    return Hooks(create_plugin_manager(disabled=known.disabled_plugins or (), strict=known.strict_plugins))


CORE_COMMANDS = ("serve", "archive", "plugins")


def build_parser(hooks: Hooks | None) -> argparse.ArgumentParser:
    """The command line; without ``hooks`` (``serve``'s fast start) only the core commands."""
    from hookserve.archive.command import add_archive_arguments, run_archive

    parser = argparse.ArgumentParser(prog="hookserve", description="Serve PyTorch models and TorchServe archives.")
    parser.add_argument("--version", action="version", version=f"hookserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server in the foreground (a gunicorn application)")
    add_serve_arguments(serve)
    serve.set_defaults(run=functools.partial(run_serve, hooks=hooks))

    archive = commands.add_parser("archive", help="pack a model archive (torch-model-archiver's flags)")
    add_archive_arguments(archive)
    archive.set_defaults(run=run_archive)

    plugins = commands.add_parser("plugins", help="list loaded plugins, where they come from and their hooks")
    add_plugin_arguments(plugins)
    plugins.set_defaults(run=functools.partial(run_plugins, hooks=hooks))

    for command in (hooks.cli_commands(core=CORE_COMMANDS) if hooks else {}).values():
        sub = commands.add_parser(command.name, help=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        # serve loads its plugins once the model manager is on its way (run_serve): they are
        # not needed to parse its flags, and loading them first delayed every start-up
        hooks = None if argv[:1] == ["serve"] else command_line_plugins(argv)
        args = build_parser(hooks).parse_args(argv)
        return args.run(args)
    except HookserveError as exc:
        print(f"hookserve: error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
