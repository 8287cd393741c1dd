"""The wire contracts as dataclasses: the routes table and the control messages, encoded and
decoded by the one module that owns each, checked once with errors that name the field."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import orjson
import pytest
import requests

from helpers import Server, mgmt, mlp_archive, serving
from hookserve.errors import BadRequest
from hookserve.wire.contracts import WireError
from hookserve.wire.control import (
    CONTROL_SOCKET,
    RegisterModel,
    ReplaceWorker,
    ScaleWorkers,
    SetDefault,
    Unregister,
    decode_control,
    encode_control,
)
from hookserve.wire.routes import (
    ManagerStatus,
    ModelEntry,
    ModelSettings,
    RoutesTable,
    VersionEntry,
    WorkerEntry,
    read_routes,
    routes_path,
    write_routes,
)

SETTINGS = ModelSettings(
    min_worker=2, max_worker=3, batch_size=4, max_batch_delay=5, response_timeout=6, startup_timeout=7
)


def table() -> RoutesTable:
    worker = WorkerEntry(id="mlp-1.0-0", pid=42, state="READY", device="cpu", socket="/run/w1.sock", started_at=1.5)
    version = VersionEntry(
        state="READY",
        url="mlp.mar",
        runtime="python",
        loaded_at_startup=True,
        device_type=None,
        settings=SETTINGS,
        workers=(worker,),
    )
    return RoutesTable(
        models={"mlp": ModelEntry(default="1.0", versions={"1.0": version})},
        failed={"bad": "ArchiveError: no MANIFEST.json"},
        manager=ManagerStatus(state="ready", since=3.0, pid=7),
    )


def test_the_routes_table_round_trips_through_its_file(tmp_path):
    write_routes(tmp_path, table(), "test")
    assert read_routes(tmp_path) == table()
    assert not list(tmp_path.glob(".*tmp"))  # written aside, then renamed
    # one name per setting, the management API's, in the file too
    saved = json.loads(routes_path(tmp_path).read_text())
    assert saved["models"]["mlp"]["versions"]["1.0"]["settings"]["max_batch_delay"] == 5
    assert RoutesTable.from_json(b"{}") == RoutesTable()
    assert RoutesTable().manager.describe() == "the model manager has not started"


def corrupt(change) -> bytes:
    data = orjson.loads(table().to_json())
    change(data)
    return orjson.dumps(data)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["models"]["mlp"]["versions"]["1.0"]["workers"][0].update(pid="x"),
            "models.mlp.versions.1.0.workers[0].pid must be an integer, got 'x'",
        ),
        (
            lambda d: d["models"]["mlp"]["versions"]["1.0"]["workers"][0].update(pid=True),
            "models.mlp.versions.1.0.workers[0].pid must be an integer, got True",
        ),
        (
            lambda d: d["models"]["mlp"]["versions"]["1.0"].pop("settings"),
            "models.mlp.versions.1.0.settings is missing",
        ),
        (
            lambda d: d["models"]["mlp"]["versions"]["1.0"]["settings"].update(batch_size=None),
            "models.mlp.versions.1.0.settings.batch_size must be an integer, got None",
        ),
        (lambda d: d["models"]["mlp"].update(versions=[]), "models.mlp.versions must be an object, got []"),
        (lambda d: d["failed"].update(bad=3), "failed.bad must be a string, got 3"),
        (lambda d: d["manager"].update(state=None), "manager.state must be a string, got None"),
    ],
)
def test_a_malformed_routes_table_names_the_field(change, message):
    with pytest.raises(WireError) as raised:
        RoutesTable.from_json(corrupt(change))
    assert str(raised.value) == message


def test_a_frontend_keeps_its_routes_when_the_file_is_malformed(tmp_path, caplog):
    from hookserve.frontend.model_client import ModelClient

    write_routes(tmp_path, table(), "test")
    client = ModelClient(str(tmp_path))
    assert client.resolve("mlp").ready_sockets == ["/run/w1.sock"]
    routes_path(tmp_path).write_bytes(corrupt(lambda d: d["models"]["mlp"].pop("default")))
    assert client.refresh(force=True) == table()
    assert "models.mlp.default is missing" in caplog.text


def test_the_master_marks_the_manager_over_a_malformed_table(tmp_path):
    from hookserve.manager.process import mark_manager

    routes_path(tmp_path).write_bytes(b'{"models": 3}')
    mark_manager(str(tmp_path), "restarting", reason="it died")
    assert read_routes(tmp_path).manager.describe() == "the model manager is restarting: it died"
    write_routes(tmp_path, table(), "test")
    mark_manager(str(tmp_path), "starting")
    [worker] = read_routes(tmp_path).models["mlp"].versions["1.0"].workers
    assert worker.state == "LOST"


@pytest.mark.parametrize(
    "message",
    [
        RegisterModel(url="mlp.mar", model_name="m", initial_workers=2, max_batch_delay=0, synchronous=False),
        RegisterModel(),
        ScaleWorkers(model="m", version="2.0", min_worker=1, max_worker=4, synchronous=True),
        SetDefault(model="m", version="2.0"),
        Unregister(model="m"),
        ReplaceWorker(socket="/run/w1.sock"),
    ],
)
def test_control_messages_round_trip(message):
    line = encode_control(message)
    assert line.endswith(b"\n") and orjson.loads(line)["op"] == message.op
    assert decode_control(line) == message


@pytest.mark.parametrize(
    "line, message",
    [
        (b'{"op": "nope"}', "unknown control operation 'nope'"),
        (b"[1]", "unknown control operation None"),
        (b"not json", "control message is not JSON"),
        (b'{"op": "scale", "model": "m", "min_worker": "2"}', "Parameter min_worker must be an integer, got '2'"),
        (b'{"op": "scale"}', "Parameter model is missing"),
        (b'{"op": "register", "url": 5}', "Parameter url must be a string, got 5"),
        (b'{"op": "register", "synchronous": "false"}', "Parameter synchronous must be true or false, got 'false'"),
    ],
)
def test_a_malformed_control_message_is_a_bad_request_naming_the_field(line, message):
    with pytest.raises(BadRequest) as raised:
        decode_control(line)
    assert raised.value.message.startswith(message), raised.value.message
    assert raised.value.code == 400


def test_the_manager_answers_a_malformed_message_and_carries_on(tmp_path):
    """Decoded once at the manager's edge: a bad message gets a 400, the manager stays up."""
    mlp_archive(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = Server(["--model-store", str(tmp_path / "store"), "--no-snapshot"], tmp_path, env={"TMPDIR": str(tmp)})
    with serving(server):
        [run_dir] = tmp.glob("hookserve-*")
        replies = []
        for line in (b'{"op": "scale", "model": 5}\n', b"{not json\n"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(10)
                sock.connect(str(Path(run_dir) / CONTROL_SOCKET))
                sock.sendall(line)
                replies.append(orjson.loads(sock.makefile("rb").readline())["error"])
        assert [r["code"] for r in replies] == [400, 400]
        assert replies[0]["message"] == "Parameter model must be a string, got 5"
        registered = mgmt(server, "POST", "/models", params={"url": "mlp.mar", "initial_workers": "1"})
        assert registered.status_code == 200, registered.text
        assert requests.get(server.url("/ping"), timeout=10).json() == {"status": "Healthy"}
