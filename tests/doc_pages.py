"""Running a documentation page: its examples written out, its commands run and each curl
replayed against a real server, which must print what the page prints under it.

A page marks its examples with HTML comments: ``<!-- file: PATH -->`` before a block that
is a file, ``<!-- run: NAME -->`` before a console block (``$ command`` lines, each followed
by its expected output). The page's addresses are the default listeners
(``127.0.0.1:8080`` inference, ``:8081`` management, ``:8082`` metrics); they are rewritten
to the ports of the test's server.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from distributions import pip_install
from helpers import Server

BLOCK = re.compile(r"<!-- (file|run): (\S+) -->\n```[a-z]*\n(.*?)^```", re.S | re.M)
# The page's address of each listener.
DOC_LISTENERS = {
    "http://127.0.0.1:8080": "inference",
    "http://127.0.0.1:8081": "management",
    "http://127.0.0.1:8082": "metrics",
}
DOC_URL = re.compile("|".join(map(re.escape, DOC_LISTENERS)))


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str]
    expected: list[str] = field(default_factory=list)


class DocPage:
    """The named examples of one markdown page."""

    def __init__(self, path: Path):
        self.path = path

    def blocks(self) -> dict[tuple[str, str], str]:
        blocks = {}
        for kind, name, body in BLOCK.findall(self.path.read_text(encoding="utf-8")):
            assert (kind, name) not in blocks, f"two blocks named {kind}: {name}"
            blocks[kind, name] = body
        return blocks

    def files(self) -> dict[str, str]:
        return {name: body for (kind, name), body in self.blocks().items() if kind == "file"}

    def commands(self, name: str) -> list[Command]:
        """The ``$`` commands of a run block (``\\`` continues a line), with their output lines."""
        body = self.blocks()["run", name]
        result: list[Command] = []
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ "):
                text = line[2:]
                while text.endswith("\\"):
                    i += 1
                    text = text[:-1] + " " + lines[i].strip()
                words = shlex.split(text)
                env = {}
                while words and re.match(r"^[A-Z_]+=", words[0]):
                    key, _, value = words.pop(0).partition("=")
                    env[key] = value
                result.append(Command(words, env))
            else:
                assert result, f"run block {name!r} starts with output, not a command"
                result[-1].expected.append(line)
            i += 1
        return result

    def check_every_example_is_run(self, run_blocks: set[str], file_blocks: set[str]) -> None:
        """The page's examples are exactly those the tests name, and every fenced block with a
        language tag is a named example."""
        blocks = self.blocks()
        assert {name for kind, name in blocks if kind == "run"} == run_blocks
        assert {name for kind, name in blocks if kind == "file"} == file_blocks
        fences = len(re.findall(r"^```[a-z]+$", self.path.read_text(encoding="utf-8"), re.M))
        assert fences == len(blocks), "a code block without a <!-- file/run --> marker is not tested"

    def write_files(self, folder: Path) -> None:
        for name, body in self.files().items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(body, encoding="utf-8")


# ------------------------------------------------------------------ running commands


def cli(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hookserve.cli", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        timeout=180,
    )


def to_server(text: str, server: Server | None) -> str:
    """``text`` with the page's listener addresses replaced by ``server``'s."""
    if server is None:
        return text
    return DOC_URL.sub(lambda m: server.url("", DOC_LISTENERS[m.group(0)]), text)


def run_command(
    command: Command, cwd: Path, env: dict[str, str], server: Server | None = None
) -> subprocess.CompletedProcess | None:
    """Run one non-curl, non-serve command of the page as a reader would, checking its output.

    ``pip install`` goes into the folder ``env["SITE"]`` (put on ``PYTHONPATH``, never into the
    test environment), offline; a ``python`` script's arguments that name the page's
    addresses are pointed at ``server``.
    """
    argv, env = command.argv, dict(env, **command.env)
    if argv[:2] == ["mkdir", "-p"]:
        for folder in argv[2:]:
            (cwd / folder).mkdir(parents=True, exist_ok=True)
        return None
    if argv[0] == "python":
        result = subprocess.run(
            [sys.executable, *(to_server(arg, server) for arg in argv[1:])],
            cwd=cwd,
            capture_output=True,
            text=True,
            env=dict(os.environ, **env),
            timeout=120,
        )
    elif argv[:2] == ["pip", "install"]:
        result = pip_install(Path(env["SITE"]), argv[2:], cwd=cwd, offline=True)
    elif argv[0] == "hookserve":
        result = cli(argv[1:], cwd, env)
    else:
        raise AssertionError(f"the page runs a command the test does not know: {argv}")
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    if command.expected:
        assert matches(result.stdout.splitlines(), command.expected), f"{argv}: printed\n{result.stdout}"
    return result


def matches(output: list[str], expected: list[str]) -> bool:
    """``output`` is ``expected``, where a ``...`` line stands for any number of lines."""
    if "..." not in expected:
        return output == expected
    pattern = r"\n".join(".*?" if line == "..." else re.escape(line) for line in expected)
    pattern = pattern.replace(r".*?\n", r"(?:.*\n)*?").replace(r"\n.*?", r"(?:\n.*)*?")
    return re.fullmatch(pattern, "\n".join(output)) is not None


def serve_args(command: Command) -> list[str]:
    assert command.argv[:2] == ["hookserve", "serve"], command.argv
    return command.argv[2:]


# ------------------------------------------------------------------- replaying curl


@dataclass
class Curl:
    method: str
    listener: str
    path: str
    headers: dict[str, str]
    data: bytes | None
    files: dict | None
    show_headers: bool


def parse_curl(argv: list[str], cwd: Path) -> Curl:
    assert argv[0] == "curl", argv
    headers, data, form, url, show, method = {}, None, {}, None, False, None
    words = iter(argv[1:])
    for word in words:
        if word == "-i":
            show = True
        elif word == "-H":
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data", "--data-binary"):
            value = next(words)
            data = (cwd / value[1:]).read_bytes() if value.startswith("@") else value.encode()
        elif word == "-F":
            name, _, spec = next(words).partition("=")
            spec, _, content_type = spec.partition(";type=")
            if spec.startswith("@"):
                path = cwd / spec[1:]
                content_type = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                form[name] = (path.name, path.read_bytes(), content_type)
            else:
                form[name] = (None, spec.encode(), content_type or None)
        elif word == "-T":  # the file as the body of a PUT, with no content type
            data = (cwd / next(words)).read_bytes()
            method = method or "PUT"
        elif word == "-X":
            method = next(words)
        elif word == "-N":  # curl's "no buffering" changes what it shows when, not what
            pass
        elif word.startswith("http://"):
            url = word
        else:
            raise AssertionError(f"curl option {word!r} is not replayed by this test")
    address = url and DOC_URL.match(url)
    assert address, f"{url} is not one of the page's listeners {sorted(DOC_LISTENERS)}"
    if "-T" not in argv and data is not None and not any(h.lower() == "content-type" for h in headers):
        headers["Content-Type"] = "application/x-www-form-urlencoded"  # what curl -d sends
    method = method or ("POST" if data is not None or form else "GET")
    return Curl(method, DOC_LISTENERS[address.group(0)], url[address.end() :], headers, data, form or None, show)


def same(actual, expected) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        return isinstance(actual, (int, float)) and abs(actual - expected) <= 2e-4
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(same(actual[k], expected[k]) for k in expected)
        )
    return type(actual) is type(expected) and actual == expected


def check_reply(reply: requests.Response, expected: list[str], show_headers: bool, where: str) -> None:
    lines = list(expected)
    code = 200
    if show_headers:
        status = lines.pop(0)
        code = int(status.split()[1])
        while lines and lines[0]:
            name, _, value = lines.pop(0).partition(": ")
            assert name in reply.headers, f"{where}: no header {name} in {dict(reply.headers)}"
            if value != "...":
                assert reply.headers[name] == value, f"{where}: {name}: {reply.headers[name]!r}"
        lines = lines[1:]
    assert reply.status_code == code, f"{where}: {reply.status_code} {reply.text}"
    body = "\n".join(lines)
    try:
        wanted = json.loads(body)
    except json.JSONDecodeError:
        assert reply.text == body, f"{where}: {reply.text!r}"
    else:
        assert reply.headers["content-type"] == "application/json", where
        assert same(reply.json(), wanted), f"{where}: got {reply.text}, the page says {body}"


def replay(
    server: Server, page: DocPage, block: str, cwd: Path, env: dict[str, str] | None = None
) -> list[requests.Response | subprocess.CompletedProcess | None]:
    """Run a block against ``server``: each curl's reply, and each other command's output, must
    be what the page prints."""
    results = []
    for command in page.commands(block):
        if command.argv[0] != "curl":
            results.append(run_command(command, cwd, env or {}, server))
            continue
        curl = parse_curl(command.argv, cwd)
        reply = requests.request(
            curl.method,
            server.url(curl.path, curl.listener),
            headers=curl.headers,
            data=curl.data,
            files=curl.files,
            timeout=30,
        )
        check_reply(reply, command.expected, curl.show_headers, f"{block}: {shlex.join(command.argv)}")
        results.append(reply)
    return results
