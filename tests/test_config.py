"""Server configuration: addresses, config.properties, precedence of flags."""

from __future__ import annotations

import pytest

from hookserve.cli import serve_config
from hookserve.config import DEFAULT_MAX_REQUEST_SIZE, ServerConfig, parse_address
from hookserve.errors import ConfigError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("http://0.0.0.0:9000", ("0.0.0.0", 9000)),
        ("http://[::1]:8085", ("::1", 8085)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["8080", "http://127.0.0.1", "127.0.0.1:notaport", "grpc://127.0.0.1:1"])
def test_parse_address_errors_say_what_is_expected(text):
    with pytest.raises(ConfigError, match="address"):
        parse_address(text)


def test_defaults_are_loopback_and_a_generous_body_cap():
    config = serve_config([])
    assert config.inference_address == ("127.0.0.1", 8080)
    assert config.management_address == ("127.0.0.1", 8081)
    assert config.metrics_address == ("127.0.0.1", 8082)
    assert config.max_request_size == DEFAULT_MAX_REQUEST_SIZE == 64 * 1024 * 1024


def test_flags_override_config_properties(tmp_path):
    properties = tmp_path / "config.properties"
    properties.write_text(
        "inference_address=http://127.0.0.1:9080\n"
        "management_address : http://127.0.0.1:9081\n"
        "! a comment\n"
        "default_workers_per_model=3\n"
        "max_request_size=1000\n"
        "load_models=a=a.mar,b.mar\n"
        "enable_envvars_config=true\n"
    )
    config = serve_config(["--ts-config", str(properties), "--max-request-size", "2000"])
    assert config.inference_address == ("127.0.0.1", 9080)
    assert config.management_address == ("127.0.0.1", 9081)
    assert config.default_workers_per_model == 3
    assert config.max_request_size == 2000
    assert [(m.name, m.source) for m in config.models] == [("a", "a.mar"), (None, "b.mar")]


def test_bad_properties_name_the_file_and_key(tmp_path):
    properties = tmp_path / "config.properties"
    properties.write_text("default_workers_per_model=many\n")
    with pytest.raises(ConfigError, match="default_workers_per_model='many' is not an integer"):
        serve_config(["--ts-config", str(properties)])
    properties.write_text("just a line\n")
    with pytest.raises(ConfigError, match="config.properties:1: expected key=value"):
        serve_config(["--ts-config", str(properties)])


def test_config_round_trips_through_the_run_folder(tmp_path):
    config = serve_config(["--models", "m=m.mar", "--inference-address", "127.0.0.1:1234"])
    config.run_dir = str(tmp_path)
    config.save()
    loaded = ServerConfig.load(str(tmp_path))
    assert loaded == config


def test_workers_per_model_follows_torchserve_default():
    config = ServerConfig()
    assert config.workers_per_model(gpu_count=4) == 4
    assert config.workers_per_model(gpu_count=0) >= 1
    config.default_workers_per_model = 2
    assert config.workers_per_model(gpu_count=4) == 2
