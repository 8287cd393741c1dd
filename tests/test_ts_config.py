"""TorchServe's config.properties: every key honoured, warned about or refused, never silent."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helpers import TS_CONFIG_SERVE, free_port, spawn_logged, wait_ping
from hookserve.cli import serve_config
from hookserve.config import HONOURED, REFUSED, TS_KEYS, WARNED, ServerConfig, ts_keys_markdown
from hookserve.errors import ConfigError

CONFIGURATION = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

# Every key TorchServe 0.12 reads from config.properties: the constants of its
# ConfigManager.java (frontend/server/src/main/java/org/pytorch/serve/util/), the "python"
# property it also reads, and the two its launcher (ts/model_server.py) reads.
TORCHSERVE_0_12_KEYS = set(
    """
    debug inference_address management_address metrics_address load_models blacklist_env_vars
    default_workers_per_model default_response_timeout default_startup_timeout
    unregister_model_timeout number_of_netty_threads netty_client_threads job_queue_size
    number_of_gpu metrics_config metrics_mode model_metrics_auto_detect disable_system_metrics
    ipex_enable cpu_launcher_enable cpu_launcher_args ipex_gpu_enable async_logging
    cors_allowed_origin cors_allowed_methods cors_allowed_headers decode_input_request keystore
    keystore_pass keystore_type certificate_file private_key_file max_request_size max_response_size
    limit_max_image_pixels default_service_handler service_envelope model_server_home model_store
    prefer_direct_buffer allowed_urls install_py_dep_per_model enable_metrics_api
    grpc_inference_address grpc_management_address grpc_inference_port grpc_management_port
    grpc_inference_max_connection_age_ms grpc_management_max_connection_age_ms
    grpc_inference_max_connection_age_grace_ms grpc_management_max_connection_age_grace_ms
    enable_grpc_ssl initial_worker_port initial_distribution_port workflow_store cpp_log_config
    ts_open_inference_protocol token_expiration_min ts_header_key_sequence_id
    ts_header_key_sequence_start ts_header_key_sequence_end disable_token_authorization
    enable_model_api use_native_io io_ratio metric_time_interval enable_envvars_config
    model_snapshot models version system_metrics_cmd use_env_allowed_urls python tsConfigFile vmargs
    plugins_path
    """.split()
)
# hookserve's own keys, per-model keys people write at the top level, an older TorchServe's key
EXTRA_KEYS = {"batch_size", "max_batch_delay", "minWorkers", "maxWorkers", "snapshot_store"}


def properties(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.properties"
    path.write_text(text)
    return str(path)


def test_every_torchserve_key_has_a_decision():
    assert set(TS_KEYS) == TORCHSERVE_0_12_KEYS | EXTRA_KEYS
    for key, entry in TS_KEYS.items():
        assert entry.does in (HONOURED, WARNED, REFUSED), key
        assert (entry.apply is not None) == (entry.does == HONOURED), key
        assert "|" not in entry.note, key  # the docs/configuration.md table


def test_configuration_doc_table_is_the_code_table():
    text = CONFIGURATION.read_text()
    found = re.search(r"<!-- ts-keys[^>]*-->\n(.*?)<!-- /ts-keys -->", text, re.S)
    assert found, "docs/configuration.md has no ts-keys section"
    assert found[1] == ts_keys_markdown(), "docs/configuration.md's table differs: paste `python -m hookserve.config`"


def test_a_warned_key_is_logged_naming_it(tmp_path, caplog):
    path = properties(tmp_path, "vmargs=-Xmx4g\ninstall_py_dep_per_model=true\ncors_allowed_origin=*\n")
    with caplog.at_level(logging.WARNING, logger="hookserve.config"):
        serve_config(["--ts-config", path])
    messages = [r.getMessage() for r in caplog.records]
    assert f"{path}: config.properties key 'vmargs' has no meaning in hookserve (Java VM options); ignored" in messages
    assert any(
        "'install_py_dep_per_model' is not yet supported; the archive's requirements are not installed" in m
        for m in messages
    )
    assert any("'cors_allowed_origin'" in m for m in messages)
    assert len(messages) == 3  # once each


def test_a_value_that_means_what_hookserve_does_is_quiet(tmp_path, caplog):
    path = properties(
        tmp_path,
        "install_py_dep_per_model=false\nipex_enable=false\ndecode_input_request=true\n"
        "ts_open_inference_protocol=false\nlimit_max_image_pixels=true\nsnapshot_store=FS\n",
    )
    with caplog.at_level(logging.WARNING, logger="hookserve.config"):
        serve_config(["--ts-config", path])
    assert caplog.records == []


@pytest.mark.parametrize(
    "line, key",
    [
        ("blacklist_env_vars=AWS_.*", "blacklist_env_vars"),
        ('model_snapshot={"name":"startup.cfg","modelCount":0,"models":{}}', "model_snapshot"),
        ("service_envelope=kserve", "service_envelope"),
        ("decode_input_request=false", "decode_input_request"),
        ("ts_open_inference_protocol=true", "ts_open_inference_protocol"),
        ("keystore_type=JKS", "keystore_type"),
    ],
)
def test_a_refused_key_is_an_error_naming_it(tmp_path, line, key):
    with pytest.raises(ConfigError, match=f"config.properties key '{key}'"):
        serve_config(["--ts-config", properties(tmp_path, line + "\n")])


def test_an_unknown_key_is_still_an_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*inference_adress"):
        serve_config(["--ts-config", properties(tmp_path, "inference_adress=127.0.0.1:1\nvmargs=-Xmx1g\n")])


def test_honoured_keys_set_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("STORE_DIR", "/srv/models")
    config = serve_config(
        [
            "--ts-config",
            properties(
                tmp_path,
                "model_store=$$STORE_DIR$$\nnumber_of_netty_threads=0\nbatch_size=4\nmax_batch_delay=7\n"
                "default_response_timeout=9\nenable_model_api=true\njob_queue_size=3\n",
            ),
        ]
    )
    assert config.model_store == "/srv/models"
    assert config.frontend_workers == ServerConfig.frontend_workers == 1  # TorchServe's 0: the default
    assert (config.batch_size, config.max_batch_delay, config.response_timeout) == (4, 7, 9)
    assert config.enable_model_api is True and config.job_queue_size == 3
    with pytest.raises(ConfigError, match=r"model_store refers to \$NOT_SET_HERE"):
        serve_config(["--ts-config", properties(tmp_path, "model_store=$$NOT_SET_HERE$$\n")])


def test_ts_config_file_variable_names_the_file_when_no_flag_does(tmp_path, monkeypatch):
    monkeypatch.setenv("TS_CONFIG_FILE", properties(tmp_path, "job_queue_size=7\n"))
    assert serve_config([]).job_queue_size == 7
    other = tmp_path / "other"
    other.mkdir()
    assert serve_config(["--ts-config", properties(other, "job_queue_size=9\n")]).job_queue_size == 9
    monkeypatch.setenv("TS_CONFIG_FILE", str(tmp_path / "missing.properties"))
    with pytest.raises(ConfigError, match="missing.properties"):
        serve_config([])


def test_cli_prints_the_refusal_and_exits_non_zero(tmp_path):
    path = properties(tmp_path, "service_envelope=kservev2\nvmargs=-Xmx1g\n")
    result = subprocess.run(
        [sys.executable, "-m", "hookserve.cli", "serve", "--ts-config", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "hookserve: error:" in result.stderr and "'service_envelope'" in result.stderr


def test_envvars_config_lets_ts_variables_override_the_file(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TS_JOB_QUEUE_SIZE", "7")
    monkeypatch.setenv("TS_INFERENCE_ADDRESS", "http://127.0.0.1:9990")
    monkeypatch.setenv("TS_ALLOWED_URLS", "https://example.com/.*")
    monkeypatch.setenv("TS_VMARGS", "-Xmx1g")  # not a TS_ variable in TorchServe either
    monkeypatch.setenv("TS_CORS_ALLOWED_ORIGIN", "*")
    text = "job_queue_size=3\nenable_envvars_config=true\n"
    with caplog.at_level(logging.WARNING, logger="hookserve.config"):
        config = serve_config(["--ts-config", properties(tmp_path, text)])
    assert config.job_queue_size == 7 and config.inference_address == ("127.0.0.1", 9990)
    assert config.allowed_urls == []  # only with use_env_allowed_urls=true, as TorchServe
    assert [r.getMessage() for r in caplog.records] == [
        "$TS_CORS_ALLOWED_ORIGIN: config.properties key 'cors_allowed_origin' is not supported: hookserve sends "
        "no CORS headers, so browsers keep other origins out; ignored"
    ]
    config = serve_config(["--ts-config", properties(tmp_path, text + "use_env_allowed_urls=true\n")])
    assert config.allowed_urls == ["https://example.com/.*"]
    assert serve_config(["--ts-config", properties(tmp_path, text), "--job-queue-size", "5"]).job_queue_size == 5
    assert serve_config(["--ts-config", properties(tmp_path, "job_queue_size=3\n")]).job_queue_size == 3
    monkeypatch.setenv("TS_KEYSTORE", "ks.p12")
    with pytest.raises(ConfigError, match=r"\$TS_KEYSTORE: config.properties key 'keystore'"):
        serve_config(["--ts-config", properties(tmp_path, text)])


def test_default_service_handler_serves_an_archive_that_names_none(tmp_path):
    """TorchServe's rule: the archive's own handler, else handler= at registration, else this key."""
    store = tmp_path / "store"
    (store / "plain").mkdir(parents=True)  # a folder with no manifest: no handler
    (store / "plain" / "echo_handler.py").write_text(
        "def handle(data, context):\n    return None if data is None else [{'echo': row.get('body')} for row in data]\n"
    )
    ports = {name: free_port() for name in ("inference", "management", "metrics")}
    path = properties(
        tmp_path,
        "".join(f"{name}_address=127.0.0.1:{port}\n" for name, port in ports.items())
        + f"model_store={store}\nload_models=plain=plain\ndefault_workers_per_model=1\n"
        "default_service_handler=echo_handler\n",
    )
    log_path = tmp_path / "server.log"
    process = spawn_logged([*TS_CONFIG_SERVE, path], log_path)
    try:
        url = f"http://127.0.0.1:{ports['inference']}"
        wait_ping(url, process, log_path)
        for _ in range(100):  # until the model is up
            reply = requests.post(f"{url}/predictions/plain", json=[3], timeout=30)
            if reply.status_code != 404:
                break
            time.sleep(0.1)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"echo": [3]}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(40)
