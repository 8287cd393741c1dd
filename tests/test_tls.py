"""TLS: a real server with a certificate made here, real handshakes from requests and ssl.

hookserve serves TLS on every listener when a certificate is set (``--certfile``/``--keyfile``
or TorchServe's ``certificate_file``/``private_key_file``), plain HTTP otherwise; what it
cannot honour (Java keystores, https:// without a certificate, http:// beside one) is refused.
"""

from __future__ import annotations

import http.client
import os
import shlex
import signal
import ssl
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import requests
import trustme

from helpers import PLAIN_GUNICORN, TS_CONFIG_SERVE, Server, archive, free_port, spawn_logged
from hookserve.cli import serve_config
from hookserve.errors import ConfigError
from hookserve.server import gunicorn_settings

ECHO = """
def handle(data, context):
    if data is None:
        return None
    return [{"echo": row.get("body") or row.get("data")} for row in data]
"""


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pem(ca, tmp_path_factory) -> dict[str, Path]:
    """A server certificate for 127.0.0.1 signed by the test CA: chain, key and CA bundle as files."""
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"cert": folder / "server.pem", "key": folder / "server.key", "ca": folder / "ca.pem"}
    cert.cert_chain_pems[0].write_to_path(files["cert"])
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(files["cert"], append=True)
    cert.private_key_pem.write_to_path(files["key"])
    ca.cert_pem.write_to_path(files["ca"])
    return files


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("tls-store")
    archive(work, "echo", "handler.py", files={"handler.py": ECHO})
    return work / "store"


def echo_args(store: Path) -> list[str]:
    return ["--ncs", "--model-store", str(store), "--models", "echo=echo.mar", "--workers", "1"]


def wait_https(url: str, process: subprocess.Popen, log: Path, ca: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if requests.get(f"{url}/ping", timeout=2, verify=str(ca)).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not healthy over https after {timeout}s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def tls_server(store, pem, tmp_path_factory):
    """``hookserve serve --certfile --keyfile`` with host:port addresses (they follow the certificate)."""
    work = tmp_path_factory.mktemp("tls-server")
    server = Server(
        [*echo_args(store), "--certfile", str(pem["cert"]), "--keyfile", str(pem["key"])],
        work,
    )
    server.start()
    try:
        wait_https(https(server), server.process, server.log_path, pem["ca"])
        yield server
    finally:
        server.stop()


def https(server: Server, listener: str = "inference") -> str:
    return f"https://127.0.0.1:{server.ports[listener]}"


def test_requests_with_the_ca_bundle_gets_predictions_over_tls(tls_server, pem):
    ca = str(pem["ca"])
    reply = requests.post(f"{https(tls_server)}/predictions/echo", json={"x": 1}, verify=ca, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"echo": {"x": 1}}
    models = requests.get(f"{https(tls_server, 'management')}/models", verify=ca, timeout=30)
    assert models.status_code == 200 and models.json()["models"][0]["modelName"] == "echo"
    # no /metrics route yet (issue 16): an answer from the app at all proves the handshake
    assert requests.get(f"{https(tls_server, 'metrics')}/metrics", verify=ca, timeout=30).status_code < 500


def test_ssl_and_http_client_handshake(tls_server, pem):
    context = ssl.create_default_context(cafile=str(pem["ca"]))
    connection = http.client.HTTPSConnection("127.0.0.1", tls_server.ports["inference"], context=context, timeout=30)
    try:
        connection.request("GET", "/ping")
        reply = connection.getresponse()
        assert reply.status == 200
        assert b"Healthy" in reply.read()
        tls = connection.sock
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        names = [value for kind, value in tls.getpeercert()["subjectAltName"]]
        assert "127.0.0.1" in names
    finally:
        connection.close()


def test_an_untrusted_client_fails_the_handshake(tls_server):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{https(tls_server)}/ping", timeout=10)  # the system CAs do not know the test CA


def test_plain_http_to_a_tls_port_gets_no_answer(tls_server):
    for listener in ("inference", "management", "metrics"):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{tls_server.ports[listener]}/ping", timeout=10)


def test_an_idle_keep_alive_tls_client_does_not_hold_up_a_stop(store, pem, tmp_path):
    """A client that keeps its connection and never answers the server's close_notify (any
    idle pool) must not hold a graceful stop for the event loop's 30 s SSL shutdown timeout."""
    server = Server(
        [*echo_args(store), "--certfile", str(pem["cert"]), "--keyfile", str(pem["key"])],
        tmp_path,
    )
    server.start()
    try:
        wait_https(https(server), server.process, server.log_path, pem["ca"])
        with requests.Session() as session:
            for _ in range(100):  # until the model is up
                reply = session.post(f"{https(server)}/predictions/echo", json=1, verify=str(pem["ca"]), timeout=30)
                if reply.status_code == 200:
                    break
                time.sleep(0.1)
            assert reply.json() == {"echo": 1}
            time.sleep(6)  # past gunicorn's 5 s keep-alive: the server has closed its side
            started = time.monotonic()
            assert server.stop(timeout=40) == 0
            assert time.monotonic() - started < 10, server.log()
    finally:
        server.kill_group()


def test_ts_config_https_addresses_and_pem_keys_serve_tls(store, pem, tmp_path):
    ports = {name: free_port() for name in ("inference", "management", "metrics")}
    properties = tmp_path / "config.properties"
    properties.write_text(
        f"inference_address=https://127.0.0.1:{ports['inference']}\n"
        f"management_address=https://127.0.0.1:{ports['management']}\n"
        f"metrics_address=https://127.0.0.1:{ports['metrics']}\n"
        f"certificate_file={pem['cert']}\n"
        f"private_key_file={pem['key']}\n"
        f"model_store={store}\n"
        "load_models=echo=echo.mar\n"
        "default_workers_per_model=1\n"
        "vmargs=-Xmx4g -XX:+ExitOnOutOfMemoryError\n"
    )
    log_path = tmp_path / "server.log"
    process = spawn_logged([*TS_CONFIG_SERVE, str(properties)], log_path)
    try:
        url = f"https://127.0.0.1:{ports['inference']}"
        wait_https(url, process, log_path, pem["ca"])
        reply = requests.post(f"{url}/predictions/echo", json=[1, 2], verify=str(pem["ca"]), timeout=30)
        assert reply.status_code == 200 and reply.json() == {"echo": [1, 2]}
        management = f"https://127.0.0.1:{ports['management']}/models"
        assert requests.get(management, verify=str(pem["ca"]), timeout=30).status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{ports['inference']}/ping", timeout=10)
        text = log_path.read_text()
        assert "https://127.0.0.1" in text  # gunicorn names the scheme it listens with
        assert text.count("config.properties key 'vmargs' has no meaning in hookserve (Java VM options)") == 1
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def test_plain_gunicorn_serves_tls_from_hookserve_args(store, pem, tmp_path):
    ports = {name: free_port() for name in ("inference", "management", "metrics")}
    args = [
        *echo_args(store),
        *("--certfile", str(pem["cert"]), "--keyfile", str(pem["key"])),
        *[arg for name, port in ports.items() for arg in (f"--{name}-address", f"https://127.0.0.1:{port}")],
    ]
    log_path = tmp_path / "gunicorn.log"
    process = spawn_logged(PLAIN_GUNICORN, log_path, env=dict(os.environ, HOOKSERVE_ARGS=shlex.join(args)))
    try:
        wait_https(f"https://127.0.0.1:{ports['inference']}", process, log_path, pem["ca"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


# --- the rule, in-process -------------------------------------------------------------------


def write_properties(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.properties"
    path.write_text(text)
    return str(path)


def test_gunicorn_gets_the_certificate_and_a_hook_that_will_not_fall_back_to_http(pem):
    config = serve_config(["--certfile", str(pem["cert"]), "--keyfile", str(pem["key"])])
    settings = gunicorn_settings(config)
    assert settings["certfile"] == str(pem["cert"]) and settings["keyfile"] == str(pem["key"])

    def broken_factory():
        raise ssl.SSLError("no such key")

    # gunicorn's ASGI worker would log this and serve plain HTTP; the hook stops the worker instead
    with pytest.raises(SystemExit) as stopped:
        settings["ssl_context"](types.SimpleNamespace(certfile=str(pem["cert"])), broken_factory)
    assert stopped.value.code == 3
    plain = gunicorn_settings(serve_config([]))
    assert "certfile" not in plain and "ssl_context" in plain  # for a --certfile given to gunicorn itself


def test_relative_certificate_paths_are_made_absolute(pem, monkeypatch):
    monkeypatch.chdir(pem["cert"].parent)
    config = serve_config(["--certfile", pem["cert"].name, "--keyfile", pem["key"].name])
    assert config.certfile == str(pem["cert"]) and config.keyfile == str(pem["key"])


@pytest.mark.parametrize("key", ["keystore", "keystore_pass", "keystore_type"])
def test_keystore_keys_are_refused_naming_the_key(tmp_path, key):
    with pytest.raises(ConfigError, match=f"'{key}'.*Java keystore.*certificate_file and private_key_file"):
        serve_config(["--ts-config", write_properties(tmp_path, f"{key}=changeit\n")])


def test_cli_refuses_a_keystore_and_exits_non_zero(tmp_path):
    properties = write_properties(tmp_path, "keystore=src/test/resources/keystore.p12\nkeystore_pass=changeit\n")
    result = subprocess.run(
        [sys.executable, "-m", "hookserve.cli", "serve", "--ts-config", properties],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "'keystore'" in result.stderr and "'keystore_pass'" in result.stderr
    assert "changeit" not in result.stderr  # the password is not echoed


def test_https_address_without_a_certificate_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="inference_address is https://127.0.0.1:8443 .*certificate_file"):
        serve_config(["--ts-config", write_properties(tmp_path, "inference_address=https://127.0.0.1:8443\n")])
    with pytest.raises(ConfigError, match="management_address is https://.*--certfile"):
        serve_config(["--management-address", "https://127.0.0.1:9443"])


def test_http_address_beside_a_certificate_is_refused(tmp_path, pem):
    properties = write_properties(
        tmp_path,
        "inference_address=https://127.0.0.1:8443\n"
        "metrics_address=http://127.0.0.1:8082\n"
        f"certificate_file={pem['cert']}\nprivate_key_file={pem['key']}\n",
    )
    with pytest.raises(ConfigError, match="metrics_address is http://127.0.0.1:8082 .*every listener or on none"):
        serve_config(["--ts-config", properties])
    # a flag without a scheme overrides the file's http:// and follows the certificate
    config = serve_config(["--ts-config", properties, "--metrics-address", "127.0.0.1:8445"])
    assert config.tls and config.metrics_address == ("127.0.0.1", 8445)


def test_a_key_that_does_not_match_the_certificate_is_refused(ca, pem, tmp_path):
    other = ca.issue_cert("127.0.0.1")
    other.private_key_pem.write_to_path(tmp_path / "other.key")
    with pytest.raises(ConfigError, match="cannot use certificate_file / --certfile"):
        serve_config(["--certfile", str(pem["cert"]), "--keyfile", str(tmp_path / "other.key")])
    with pytest.raises(ConfigError, match="cannot use certificate_file / --certfile"):
        serve_config(["--certfile", str(tmp_path / "missing.pem")])
    with pytest.raises(ConfigError, match="needs a certificate"):
        serve_config(["--keyfile", str(pem["key"])])


def test_certificate_and_key_in_one_file(pem, tmp_path):
    both = tmp_path / "both.pem"
    both.write_bytes(pem["cert"].read_bytes() + pem["key"].read_bytes())
    config = serve_config(["--certfile", str(both)])
    assert config.tls and config.keyfile is None
