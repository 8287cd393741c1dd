"""The HTTP app built in-process (issue 13, item 6): ``create_app(config, service)`` with an
:class:`~hookserve.inprocess.InProcessService`, tested with ``falcon.testing``.

No run folder, no socket, no process: the app is the one ``hookserve serve`` runs (the same
plugins and resources), the models are real torch models in real archives, loaded and run
by the model worker's own code in this process. The end-to-end tests keep starting real
servers; these check what the HTTP layer does with what a model service answers.
"""

from __future__ import annotations

import asyncio
import os
import sys

import orjson
import pytest
from falcon import testing
from urllib3 import encode_multipart_formdata

from helpers import archive, mlp_archive, mlp_expected, scale_archive
from hookserve.app import create_app
from hookserve.config import ServerConfig
from hookserve.frontend.model_client import ModelClient
from hookserve.inprocess import InProcessService
from hookserve.model_service import ModelService
from hookserve.wire.framing import Field, WorkRequest

INFERENCE, MANAGEMENT = 8080, 8081  # ServerConfig's default ports tell the listeners apart

# Describes each field it received (bytes by length), and the batch it ran in; sleeps when
# asked to, fails when asked to; ``ran`` lists every ``n`` it has run, in order.
PROBE_HANDLER = """
    import time

    ran = []


    def handle(data, context):
        if data is None:
            return None
        for row in data:
            body = row.get("body")
            if isinstance(body, dict):
                if body.get("raise"):
                    raise ValueError("asked to fail")
                time.sleep(body.get("sleep", 0))
                ran.append(body.get("n"))
        out = []
        for idx, row in enumerate(data):
            fields = {
                name: {"bytes": len(value)} if isinstance(value, bytes) else {type(value).__name__: value}
                for name, value in row.items()
            }
            out.append(
                {
                    "fields": fields,
                    "batch": len(data),
                    "ran": list(ran),
                    "id": context.get_request_id(idx),
                    "explain": context.get_request_header(idx, "explain"),
                }
            )
        return out
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    work = tmp_path_factory.mktemp("inprocess")
    mlp_archive(work)
    archive(work, "probe", "handler.py", files={"handler.py": PROBE_HANDLER})
    scale_archive(work, "1.0", 2.0, "ver-1")
    scale_archive(work, "2.0", 3.0, "ver-2")
    return work / "store"


@pytest.fixture(scope="module")
def config(store):
    return ServerConfig(model_store=str(store), batch_size=4, max_batch_delay=50, max_request_size=4096)


@pytest.fixture(scope="module")
def service(store, config):
    with InProcessService(config) as service:
        service.add(store / "mlp.mar")
        service.add(store / "probe.mar")
        yield service


@pytest.fixture(scope="module")
def client(service, config):
    return testing.TestClient(create_app(config, service))


@pytest.fixture
def managed(config):
    """A fresh service and a client on its management listener, for tests that change models."""
    with InProcessService(config) as service:
        yield service, testing.TestClient(create_app(config, service))


def manage(client: testing.TestClient, method: str, path: str, **kwargs) -> testing.Result:
    return client.simulate_request(method, path, port=MANAGEMENT, **kwargs)


def error_of(result: testing.Result) -> tuple[int, str]:
    """An error reply's status and type, after checking its body is TorchServe's error shape."""
    body = result.json
    assert set(body) == {"code", "type", "message"}, body
    assert body["code"] == result.status_code
    return body["code"], body["type"]


def test_both_services_satisfy_the_protocol(service, tmp_path):
    assert isinstance(service, ModelService)
    assert isinstance(ModelClient(str(tmp_path)), ModelService)


# --- inference -------------------------------------------------------------------------


def test_ping_is_healthy_and_unhealthy_once_the_service_is_closed(client, config):
    assert client.simulate_get("/ping").json == {"status": "Healthy"}
    closed = InProcessService(config)
    closed.close()
    reply = testing.TestClient(create_app(config, closed)).simulate_get("/ping")
    assert reply.status_code == 500
    assert reply.json == {"status": "Unhealthy", "problems": ["the in-process model service is closed"]}


def test_closing_stops_the_batch_threads_and_takes_back_what_loading_added(store):
    service = InProcessService()
    service.add(store / "probe.mar")
    thread = service.models["probe"]["1.0"].batches.thread
    assert any(entry.startswith(str(service.work_dir)) for entry in sys.path)
    service.close()
    thread.join(timeout=10)
    assert not thread.is_alive() and not service.work_dir.exists()
    assert not any(entry.startswith(str(service.work_dir)) for entry in sys.path)
    assert not [m for m in sys.modules.values() if str(getattr(m, "__file__", "")).startswith(str(service.work_dir))]


def test_json_prediction_is_the_models_answer(client):
    row = [float(i % 7) / 7 for i in range(64)]
    reply = client.simulate_post("/predictions/mlp", json=row)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    expected = mlp_expected([row])[0]
    assert reply.json["class"] == expected["class"]
    assert reply.json["scores"] == pytest.approx(expected["scores"], abs=1e-6)
    # the version named in the path is the same model
    assert client.simulate_post("/predictions/mlp/1.0", json=row).json == reply.json


def test_raw_bytes_and_text_bodies_reach_the_handler_as_sent(client):
    raw = client.simulate_post("/predictions/probe", body=b"\x00\xff" * 10, content_type="application/octet-stream")
    assert raw.json["fields"] == {"body": {"bytes": 20}}
    text = client.simulate_post("/predictions/probe", body="héllo".encode(), content_type="text/plain")
    assert text.json["fields"] == {"body": {"str": "héllo"}}
    query = client.simulate_post("/predictions/probe", query_string="threshold=0.5", json={})
    assert query.json["fields"] == {"threshold": {"str": "0.5"}, "body": {"dict": {}}}


def test_multipart_parts_become_fields(client):
    body, content_type = encode_multipart_formdata(
        {"image": ("img.bin", b"\x89PNG....", "application/octet-stream"), "caption": "a cat"}
    )
    reply = client.simulate_post("/predictions/probe", body=body, content_type=content_type)
    assert reply.status_code == 200, reply.text
    assert reply.json["fields"] == {"image": {"bytes": 8}, "caption": {"str": "a cat"}}


def test_request_id_reaches_the_handler_and_comes_back(client):
    reply = client.simulate_post("/predictions/probe", json={}, headers={"x-request-id": "abc123"})
    assert reply.json["id"] == "abc123"
    assert reply.headers["x-request-id"] == "abc123"


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "kind", "words"),
    [
        ("/predictions/nope", {"json": 1}, 404, "ModelNotFoundException", "Model not found: nope"),
        ("/predictions/mlp/9.9", {"json": 1}, 404, "ModelNotFoundException", "9.9 does not exist for model: mlp"),
        ("/predictions/probe", {"json": {"raise": True}}, 500, "PredictionException", "ValueError: asked to fail"),
        ("/predictions/mlp", {"json": [1.0, 2.0]}, 500, "PredictionException", "RuntimeError"),
        (
            "/predictions/probe",
            {"body": b"{nope", "content_type": "application/json"},
            400,
            "BadRequestException",
            "not valid JSON",
        ),
        (
            "/predictions/probe",
            {"body": b"--x\r\nnot a part", "content_type": "multipart/form-data; boundary=x"},
            400,
            "BadRequestException",
            "malformed multipart/form-data",
        ),
        ("/predictions/probe", {"body": b"x" * 5000}, 413, "RequestEntityTooLargeException", "max_request_size=4096"),
        ("/nowhere", {"json": 1}, 404, "ResourceNotFoundException", ""),
    ],
)
def test_errors_have_their_status_and_torchserve_body(client, path, kwargs, status, kind, words):
    reply = client.simulate_post(path, **kwargs)
    assert error_of(reply) == (status, kind)
    assert words in reply.json["message"]


def test_requests_that_arrive_while_a_batch_runs_form_the_next_batch(client):
    """As in a model worker: batch_size=4, and three requests queued behind a slow one run together."""

    async def burst():
        async with testing.ASGIConductor(client.app) as conductor:
            slow = asyncio.ensure_future(
                conductor.simulate_post("/predictions/probe", json={"n": "slow", "sleep": 1.0})
            )
            await asyncio.sleep(0.15)
            # tasks, so they are queued while the slow one runs (bare coroutines would start
            # only once it is done, and then race the batcher)
            rest = [
                asyncio.ensure_future(conductor.simulate_post("/predictions/probe", json={"n": n}))
                for n in ("a", "b", "c")
            ]
            return await slow, await asyncio.gather(*rest)

    slow, rest = asyncio.run(burst())
    assert slow.json["batch"] == 1
    assert [r.json["batch"] for r in rest] == [3, 3, 3]
    ran = rest[0].json["ran"]
    assert ran[-4] == "slow" and sorted(ran[-3:]) == ["a", "b", "c"]


def submitted(service: InProcessService, ref, n: str, kind: str = "predict", **body) -> asyncio.Future:
    """``service.submit`` of a JSON body ``{"n": n, **body}``, as a task (queued in creation order)."""
    fields = [Field("body", "application/json", orjson.dumps({"n": n, **body}))]
    return asyncio.ensure_future(service.submit(ref, WorkRequest(f"req-{n}", kind, {}, fields)))


def test_a_batch_holds_one_kind_of_request(service):
    """Predictions and explanations queued together run in separate batches, as in a worker."""

    async def scenario():
        ref = await service.resolve_when_ready("probe")
        slow = submitted(service, ref, "slow-kinds", sleep=0.3)
        await asyncio.sleep(0.1)
        queued = [
            submitted(service, ref, "p1"),
            submitted(service, ref, "e1", "explain"),
            submitted(service, ref, "p2"),
        ]
        await slow
        return [orjson.loads((await reply).body) for reply in queued]

    replies = asyncio.run(scenario())
    assert [(r["batch"], r["explain"]) for r in replies] == [(1, None), (1, "True"), (1, None)]
    assert replies[-1]["ran"][-3:] == ["p1", "e1", "p2"]


def test_a_request_cancelled_before_its_batch_starts_never_runs(service):
    """A client that goes away (its request task cancelled) takes its request off the queue."""

    async def scenario():
        ref = await service.resolve_when_ready("probe")
        slow = submitted(service, ref, "slow-2", sleep=0.4)
        await asyncio.sleep(0.1)
        gone = submitted(service, ref, "gone")
        await asyncio.sleep(0.05)
        gone.cancel()
        await slow
        return await submitted(service, ref, "after")

    reply = asyncio.run(scenario())
    ran = orjson.loads(reply.body)["ran"]
    assert ran[-2:] == ["slow-2", "after"] and "gone" not in ran


# --- management -------------------------------------------------------------------------


def test_models_are_listed_and_paged(client, store):
    assert manage(client, "GET", "/models").json == {
        "models": [
            {"modelName": "mlp", "modelUrl": str(store / "mlp.mar")},
            {"modelName": "probe", "modelUrl": str(store / "probe.mar")},
        ]
    }
    first = manage(client, "GET", "/models", params={"limit": 1}).json
    assert [m["modelName"] for m in first["models"]] == ["mlp"] and first["nextPageToken"] == "1"
    second = manage(client, "GET", "/models", params={"limit": 1, "next_page_token": 1}).json
    assert [m["modelName"] for m in second["models"]] == ["probe"] and "nextPageToken" not in second
    assert error_of(manage(client, "GET", "/models", params={"limit": -1})) == (400, "BadRequestException")


def test_a_model_is_described_with_its_one_in_process_worker(client):
    reply = manage(client, "GET", "/models/probe")
    assert reply.status_code == 200, reply.text
    [entry] = reply.json
    assert entry["modelName"] == "probe" and entry["modelVersion"] == "1.0"
    assert (entry["minWorkers"], entry["maxWorkers"], entry["batchSize"], entry["maxBatchDelay"]) == (1, 1, 4, 50)
    assert entry["loadedAtStartup"] is True and entry["deviceType"] == "cpu"
    [worker] = entry["workers"]
    assert (worker["status"], worker["pid"], worker["gpu"]) == ("READY", os.getpid(), False)
    assert worker["memoryUsage"] > 0
    assert entry["jobQueueStatus"] == {"remainingCapacity": 100, "pendingRequests": 0}
    assert error_of(manage(client, "GET", "/models/nope")) == (404, "ModelNotFoundException")


@pytest.mark.parametrize(
    ("params", "status", "kind", "words"),
    [
        ({}, 400, "BadRequestException", "Parameter url is required."),
        ({"url": "ver-1.mar", "runtime": "java"}, 400, "BadRequestException", "not supported (python only)"),
        ({"url": "ver-1.mar", "model_name": "bad name"}, 400, "BadRequestException", "is invalid"),
        (
            {"url": "ver-1.mar", "batch_size": "x"},
            400,
            "BadRequestException",
            "Parameter batch_size must be an integer",
        ),
        ({"url": "missing.mar"}, 404, "ModelNotFoundException", "Model not found in model store: missing.mar"),
        ({"url": "../ver-1.mar"}, 404, "ModelNotFoundException", "Relative path is not allowed"),
        ({"url": "/etc/passwd"}, 404, "ModelNotFoundException", "matches none of allowed_urls"),
        ({"url": "ver-1.mar", "initial_workers": 2}, 501, "NotImplementedException", "initial_workers=2"),
    ],
)
def test_registration_errors(managed, params, status, kind, words):
    service, client = managed
    reply = manage(client, "POST", "/models", params=params)
    assert error_of(reply) == (status, kind)
    assert words in reply.json["message"]
    assert service.list_models() == []


def test_register_predict_set_default_and_unregister(managed):
    service, client = managed
    registered = manage(client, "POST", "/models", params={"url": "ver-1.mar"})
    assert registered.status_code == 200, registered.text
    assert registered.json == {"status": 'Model "ver" Version: 1.0 registered with 1 initial workers'}
    assert client.simulate_post("/predictions/ver", body=b"2", content_type="text/plain").json["y"] == 4.0
    again = manage(client, "POST", "/models", json={"url": "ver-1.mar"})
    assert error_of(again) == (409, "ConflictStatusException")

    assert manage(client, "POST", "/models", params={"url": "ver-2.mar", "batch_size": 2}).status_code == 200
    described = manage(client, "GET", "/models/ver/all").json
    assert [(e["modelVersion"], e["batchSize"]) for e in described] == [("1.0", 4), ("2.0", 2)]
    customized = manage(client, "GET", "/models/ver/2.0", params={"customized": "true"}).json
    assert '"handler": "VersionHandler"' in customized[0]["customizedMetadata"]

    # the first version stays the default until set otherwise
    assert client.simulate_post("/predictions/ver", body=b"1", content_type="text/plain").json["version"] == "1.0"
    refused = manage(client, "DELETE", "/models/ver/1.0")
    assert error_of(refused) == (403, "InvalidModelVersionException")
    assert manage(client, "PUT", "/models/ver/2.0/set-default").json == {
        "status": 'Default version successfully updated for model "ver" to "2.0"'
    }
    assert client.simulate_post("/predictions/ver", body=b"1", content_type="text/plain").json["y"] == 3.0
    assert manage(client, "DELETE", "/models/ver/1.0").json == {"status": 'Model "ver" unregistered'}
    assert error_of(manage(client, "PUT", "/models/ver/1.0/set-default")) == (404, "ModelVersionNotFoundException")
    assert manage(client, "DELETE", "/models/ver").status_code == 200
    assert error_of(client.simulate_post("/predictions/ver", body=b"1")) == (404, "ModelNotFoundException")
    assert service.list_models() == []


def test_worker_counts_other_than_one_are_refused_in_process(managed):
    service, client = managed
    service.add(service.config.model_store + "/ver-1.mar")
    assert manage(client, "PUT", "/models/ver", params={"min_worker": 1}).json == {
        "status": "Workers scaled to 1 for model: ver"
    }
    refused = manage(client, "PUT", "/models/ver/1.0", params={"min_worker": 3})
    assert error_of(refused) == (501, "NotImplementedException")
    assert "one worker per model version" in refused.json["message"]
    assert error_of(manage(client, "PUT", "/models/nope", params={"min_worker": 1})) == (404, "ModelNotFoundException")


def test_management_token_applies_in_process(store):
    config = ServerConfig(model_store=str(store), management_token="s3cret")
    with InProcessService(config) as service:
        client = testing.TestClient(create_app(config, service))
        assert error_of(manage(client, "GET", "/models")) == (401, "TokenAuthorizationException")
        allowed = manage(client, "GET", "/models", headers={"Authorization": "Bearer s3cret"})
        assert allowed.json == {"models": []}
