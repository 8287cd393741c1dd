"""Secure defaults: loopback listeners, a token for management beyond loopback (and for
management whenever one is set), model URLs kept inside the model store unless
``allowed_urls`` says otherwise, validated model names and versions."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from helpers import Server, free_port, mlp_archive, scale_archive, serving
from hookserve.cli import serve_config
from hookserve.config import TOKEN_ENV
from hookserve.errors import ConfigError, HookserveError
from hookserve.plugins.http.management import ManagementResources

TOKEN = "s3cret-token"
SAMPLE = [0.5] * 64


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("security")
    mlp_archive(work)
    ver = scale_archive(work, "1.0", 1.0, "ver")
    outside = work / "outside"
    outside.mkdir()
    for name in ("allowed.mar", "allowed-file.mar", "denied.mar", "ok/good.mar"):
        (outside / name).parent.mkdir(exist_ok=True)
        shutil.copy(ver, outside / name)
    # next to the store, one "../" away
    shutil.copy(ver, work / "escape.mar")
    (work / "store" / "sub").mkdir()
    # a manifest whose version is not a valid name
    with zipfile.ZipFile(ver) as src, zipfile.ZipFile(work / "store" / "badversion.mar", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "MAR-INF/MANIFEST.json":
                manifest = json.loads(data)
                manifest["model"]["modelVersion"] = "1.0/../x y"
                data = json.dumps(manifest).encode()
            dst.writestr(item, data)
    return {"work": work, "store": work / "store", "outside": outside}


@pytest.fixture(scope="module")
def server(paths):
    outside = paths["outside"]
    allowed = [
        re.escape(str(outside / "allowed.mar")),
        re.escape(f"file://{outside / 'allowed-file.mar'}"),
        # prefixes, as operators write them: "../" must not climb out of them
        re.escape(str(outside / "ok")) + "/.*",
        re.escape(f"file://{outside / 'ok'}") + "/.*",
        r"http://127\.0\.0\.1:1/.*",
    ]
    srv = Server(
        [
            "--model-store",
            str(paths["store"]),
            "--models",
            "mlp=mlp.mar",
            "--workers",
            "1",
            "--management-token",
            TOKEN,
            "--allowed-urls",
            ",".join(allowed),
        ],
        paths["work"],
    )
    with serving(srv):
        yield srv


def mgmt(server: Server, method: str, path: str, token: str | None = TOKEN, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return requests.request(method, server.url(path, "management"), headers=headers, timeout=60, **kwargs)


def registered(server: Server) -> list[str]:
    reply = mgmt(server, "GET", "/models")
    assert reply.status_code == 200, reply.text
    return [m["modelName"] for m in reply.json()["models"]]


# --- the management token ------------------------------------------------------------

CHANGES = [
    ("POST", "/models?url=ver.mar&model_name=sneaky&initial_workers=1"),
    ("PUT", "/models/mlp?min_worker=3&synchronous=true"),
    ("PUT", "/models/mlp/1.0/set-default"),
    ("DELETE", "/models/mlp"),
]
READS = [("GET", "/models"), ("GET", "/models/mlp"), ("GET", "/models/mlp/all"), ("GET", "/models/mlp?customized=true")]


@pytest.mark.parametrize("method, path", CHANGES + READS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "wrong", "longer", "basic", "bare", "empty"],
)
def test_management_without_the_right_token_is_401_and_changes_nothing(server, method, path, headers):
    reply = mgmt(server, method, path, token=None, headers=headers)
    assert reply.status_code == 401, reply.text
    assert reply.json()["type"] == "TokenAuthorizationException"
    assert "Authorization: Bearer" in reply.json()["message"]
    assert registered(server) == ["mlp"]
    [mlp] = mgmt(server, "GET", "/models/mlp").json()
    assert mlp["minWorkers"] == 1 and len(mlp["workers"]) == 1


def test_management_with_the_token_works(server):
    assert mgmt(server, "GET", "/models").json() == {"models": [{"modelName": "mlp", "modelUrl": "mlp.mar"}]}
    reply = mgmt(server, "POST", "/models", params={"url": "ver.mar", "initial_workers": "1"})
    assert reply.status_code == 200, reply.text
    assert mgmt(server, "PUT", "/models/ver/1.0/set-default").status_code == 200
    assert mgmt(server, "DELETE", "/models/ver").status_code == 200
    assert registered(server) == ["mlp"]


def test_inference_needs_no_token(server):
    assert requests.get(server.url("/ping"), timeout=10).json() == {"status": "Healthy"}
    reply = requests.post(server.url("/predictions/mlp"), json=SAMPLE, timeout=30)
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"class", "scores"}


# --- model URLs ----------------------------------------------------------------------


def outside_urls(paths) -> list[str]:
    work, outside = paths["work"], paths["outside"]
    return [
        "../escape.mar",
        "sub/../../escape.mar",
        "../store/../escape.mar",
        "./../escape.mar",
        str(work / "escape.mar"),
        f"file://{work / 'escape.mar'}",
        str(paths["store"] / ".." / "escape.mar"),
        # allowed_urls match whole URLs: a neighbour of an allowed file is not allowed
        str(outside / "denied.mar"),
        f"file://{outside / 'allowed.mar'}",  # only the plain path of this one is allowed
        str(outside / "allowed-file.mar"),  # only the file:// URL of this one is allowed
        str(outside / "allowed.mar") + "x",
        # no download is even tried (it would fail differently): 404 as TorchServe does
        "http://127.0.0.2:1/ver.mar",
        "/etc/passwd",
        # an allowed prefix followed by "../"
        str(outside / "ok" / ".." / "denied.mar"),
        f"file://{outside / 'ok' / '..' / 'denied.mar'}",
        "http://127.0.0.1:1/../ver.mar",
    ]


def test_urls_outside_the_store_are_404(server, paths):
    for url in outside_urls(paths):
        reply = mgmt(server, "POST", "/models", params={"url": url, "model_name": "esc", "initial_workers": "1"})
        assert reply.status_code == 404, (url, reply.text)
        assert reply.json()["type"] == "ModelNotFoundException", url
        # in a JSON body as well
        reply = mgmt(server, "POST", "/models", json={"url": url, "model_name": "esc"})
        assert reply.status_code == 404, (url, reply.text)
    assert registered(server) == ["mlp"]
    # TorchServe's words
    reply = mgmt(server, "POST", "/models", params={"url": "../escape.mar"})
    assert reply.json()["message"] == "Relative path is not allowed in url: ../escape.mar"


def test_unsupported_url_scheme_is_400(server):
    reply = mgmt(server, "POST", "/models", params={"url": "ftp://127.0.0.1/ver.mar"})
    assert reply.status_code == 400 and "scheme" in reply.json()["message"]


def test_allowed_urls_let_more_in(server, paths):
    outside = paths["outside"]
    for name, url in (
        ("outpath", str(outside / "allowed.mar")),
        ("outfile", f"file://{outside / 'allowed-file.mar'}"),
        ("outprefix", str(outside / "ok" / "good.mar")),
        ("outfileprefix", f"file://{outside / 'ok' / 'good.mar'}"),
    ):
        reply = mgmt(server, "POST", "/models", params={"url": url, "model_name": name, "initial_workers": "1"})
        assert reply.status_code == 200, (url, reply.text)
        [entry] = mgmt(server, "GET", f"/models/{name}").json()
        assert entry["modelUrl"] == url
        answer = requests.post(server.url(f"/predictions/{name}"), json=2.0, timeout=30).json()
        assert (answer["version"], answer["y"]) == ("1.0", 2.0)
        assert mgmt(server, "DELETE", f"/models/{name}").status_code == 200
    assert registered(server) == ["mlp"]


# --- names and versions --------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "a/b", "a b", "-lead", ".hidden", "_under", "", "x;rm", "naïve"])
def test_invalid_model_names_are_400(server, name):
    reply = mgmt(server, "POST", "/models", params={"url": "ver.mar", "model_name": name})
    assert reply.status_code == 400, reply.text
    assert reply.json()["type"] == "BadRequestException"
    assert "model_name" in reply.json()["message"]
    assert registered(server) == ["mlp"]


def test_valid_unusual_model_names_are_accepted(server):
    for name in ("A-1_b.c", "9lives"):
        reply = mgmt(server, "POST", "/models", params={"url": "ver.mar", "model_name": name, "initial_workers": "0"})
        assert reply.status_code == 200, reply.text
        assert mgmt(server, "DELETE", f"/models/{name}").status_code == 200


def test_an_invalid_version_in_the_manifest_is_400(server):
    reply = mgmt(server, "POST", "/models", params={"url": "badversion.mar", "model_name": "badver"})
    assert reply.status_code == 400, reply.text
    assert "model version '1.0/../x y' is invalid" in reply.json()["message"]
    assert registered(server) == ["mlp"]


# --- listeners and start-up checks ---------------------------------------------------

# Runs the real ``hookserve serve`` command line with the gunicorn application replaced,
# so a start that passed its checks is seen (exit 99) without anything ever being bound.
NO_BIND_SERVE = """
import sys

import hookserve.server
from hookserve.cli import main


class Started:
    def __init__(self, config, manager):
        print("STARTED", config.management_address, flush=True)
        manager.terminate()
        manager.wait()
        sys.exit(99)


hookserve.server.HookserveApplication = Started
sys.exit(main(["serve", *sys.argv[1:]]))
"""


def run_serve_without_binding(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # the run folder of a server stopped this way stays behind: keep it in the test's folder
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV} | {"TMPDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-c", NO_BIND_SERVE, *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_management_beyond_loopback_without_a_token_refuses_to_start(tmp_path):
    port = free_port()
    common = ["--model-store", str(tmp_path), "--ncs"]
    refused = run_serve_without_binding(tmp_path, "--management-address", f"0.0.0.0:{port}", *common)
    assert refused.returncode == 2, refused
    assert "STARTED" not in refused.stdout
    message = refused.stderr
    assert message.startswith("hookserve: error: management listens on 0.0.0.0:")
    assert "--management-token" in message and "--disable-token-auth" in message
    # the control: the same command line with a token goes on to start the server
    started = run_serve_without_binding(
        tmp_path, "--management-address", f"0.0.0.0:{port}", "--management-token", "t", *common
    )
    assert started.returncode == 99 and "STARTED ('0.0.0.0'" in started.stdout, started
    opened = run_serve_without_binding(
        tmp_path, "--management-address", f"0.0.0.0:{port}", "--disable-token-auth", *common
    )
    assert opened.returncode == 99, opened


@pytest.mark.parametrize(
    "argv",
    [
        ["--management-address", "0.0.0.0:8081"],
        ["--management-address", "[::]:8081"],
        ["--management-address", "http://192.168.1.10:8081"],
        ["--management-address", "myhost.example:8081"],
    ],
)
def test_serve_config_refuses_open_management(argv, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError, match="beyond loopback"):
        serve_config(argv)
    assert serve_config([*argv, "--disable-token-auth"]).disable_token_auth is True
    assert serve_config([*argv, "--management-token", "T"]).management_token == "T"
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert serve_config(argv).management_token == "from-env"


def test_config_properties_open_management_needs_the_ts_switch(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    props = tmp_path / "config.properties"
    props.write_text("management_address=http://0.0.0.0:8081\n")
    with pytest.raises(ConfigError, match="beyond loopback"):
        serve_config(["--ts-config", str(props)])
    props.write_text("management_address=http://0.0.0.0:8081\ndisable_token_authorization=true\n")
    assert serve_config(["--ts-config", str(props)]).disable_token_auth is True


@pytest.mark.parametrize("address", ["127.0.0.1:8081", "127.0.0.2:8081", "localhost:8081", "[::1]:8081"])
def test_loopback_management_needs_no_token(address, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = serve_config(["--management-address", address])
    assert config.management_token is None and config.disable_token_auth is False


def test_every_listener_is_on_loopback_by_default(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = serve_config([])
    assert [config.inference_address[0], config.management_address[0], config.metrics_address[0]] == ["127.0.0.1"] * 3
    assert config.allowed_urls == [] and config.management_token is None
    # only management needs the token: an open inference listener is the operator's call
    assert serve_config(["--inference-address", "0.0.0.0:8080"]).inference_address == ("0.0.0.0", 8080)


def test_registration_beyond_loopback_needs_enable_model_api(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    open_management = ["--management-address", "0.0.0.0:8081", "--management-token", "T"]
    shared = ManagementResources(None, serve_config(open_management))
    with pytest.raises(HookserveError) as refused:
        shared.require_model_api()
    assert refused.value.code == 405 and "--enable-model-api" in refused.value.message
    ManagementResources(None, serve_config([*open_management, "--enable-model-api"])).require_model_api()
    ManagementResources(None, serve_config([])).require_model_api()
