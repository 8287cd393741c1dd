"""End to end: a real ``hookserve serve`` on loopback with real archives and real HTTP."""

from __future__ import annotations

import zipfile

import pytest
import requests

from helpers import Server, archive, manifest_json, mlp_archive, mlp_expected, post, wait_for

FUNCTION_HANDLER = """
    def handle(data, context):
        if data is None:  # the load-time call
            return None
        out = []
        for row in data:
            described = {}
            for name, value in row.items():
                kind = type(value).__name__
                described[name] = {"type": kind, "value": value if kind != "bytes" else len(value)}
            out.append(described)
        return out
"""

CLASS_HANDLER = """
    class Behaviours:
        def initialize(self, context):
            self.model_name = context.model_name
            self.batch_size = context.system_properties["batch_size"]

        def handle(self, data, context):
            command = data[0].get("body")
            if isinstance(command, (bytes, bytearray)):
                command = command.decode()
            if command == "boom":
                raise ValueError("the handler was told to fail")
            if command == "notlist":
                return {"oops": True}
            if command == "wronglen":
                return [1, 2]
            if command == "status":
                context.set_response_status(201, "Made", 0)
                context.set_response_header(0, "x-handler", "yes")
                context.set_response_content_type(0, "application/x-custom")
                return [b"custom-bytes"]
            if command == "text":
                return ["plain text"]
            if command == "bytes":
                return [bytes([0, 1, 2, 255])]
            return [{"model": self.model_name, "request_id": context.get_request_id(0),
                     "header": context.get_request_header(0, "x-test-header"),
                     "all_headers": sorted(context.get_all_request_header(0))}]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    store = work / "store"
    mlp = mlp_archive(work)
    archive(work, "fields", "handler.py", files={"handler.py": FUNCTION_HANDLER})
    archive(work, "behave", "handler.py", files={"handler.py": CLASS_HANDLER})
    # Broken archives: each must be reported and must not stop the others.
    (store / "badzip.mar").write_bytes(b"this is not a zip file")
    with zipfile.ZipFile(store / "badmanifest.mar", "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", "{not json")
    with zipfile.ZipFile(store / "noweights.mar", "w") as zf:
        zf.writestr(
            "MAR-INF/MANIFEST.json", manifest_json("noweights", handler="handler.py", serializedFile="missing.pt")
        )
        zf.writestr("handler.py", "def handle(data, context):\n    return data\n")
    archive(work, "badimport", "handler.py", files={"handler.py": "import module_that_does_not_exist\n"})
    srv = Server(
        [
            "--model-store",
            str(store),
            "--workers",
            "1",
            "--max-request-size",
            "65536",
            "--models",
            f"mlp={mlp.name}",
            "fields=fields.mar",
            "behave=behave.mar",
            "badzip.mar",
            "badmanifest.mar",
            "noweights.mar",
            "badimport=badimport.mar",
        ],
        work,
    )
    srv.start()
    try:
        # never healthy: the broken start-up archives are part of /ping's answer
        wait_for(lambda: ping_problems(srv) == BROKEN_PROBLEMS, timeout=60, what="the good models ready")
        yield srv
    finally:
        srv.stop()


BROKEN = ("badimport", "badmanifest", "badzip", "noweights")
BROKEN_PROBLEMS = [f"{name}: failed to load at start-up" for name in BROKEN]


def ping_problems(server: Server) -> list[str] | None:
    """The models /ping reports as short (without the reasons), None while it cannot answer."""
    try:
        reply = requests.get(server.url("/ping"), timeout=5)
    except requests.ConnectionError:
        return None
    assert server.process.poll() is None, server.log()
    return [
        problem.split(": failed to load at start-up")[0] + ": failed to load at start-up"
        for problem in reply.json().get("problems", [])
    ]


def test_mlp_prediction_matches_the_model(server):
    row = [0.01 * i for i in range(64)]
    reply = post(server, "/predictions/mlp", json=row)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    expected = mlp_expected([row])[0]
    assert reply.json()["class"] == expected["class"]
    assert reply.json()["scores"] == pytest.approx(expected["scores"], abs=1e-5)
    versioned = post(server, "/predictions/mlp/1.0", json=row)
    assert versioned.status_code == 200 and versioned.json()["class"] == expected["class"]


def test_ping_reports_the_broken_start_up_archives(server):
    """A start-up model that failed to load is part of /ping's answer (``Partial Healthy``:
    the good models beside it run and serve), by name and reason."""
    reply = requests.get(server.url("/ping"), timeout=5)
    assert reply.status_code == 200
    assert reply.json()["status"] == "Partial Healthy"
    problems = reply.json()["problems"]
    assert [p.split(":")[0] for p in problems] == list(BROKEN)
    assert "module_that_does_not_exist" in problems[0] and "missing.pt" in problems[3]


def test_unknown_model_and_version_are_404_in_torchserve_shape(server):
    reply = post(server, "/predictions/nosuchmodel", json=[1])
    assert reply.status_code == 404
    assert reply.json() == {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: nosuchmodel"}
    reply = post(server, "/predictions/mlp/9.9", json=[1])
    assert reply.status_code == 404
    assert reply.json()["type"] == "ModelNotFoundException"
    assert "9.9" in reply.json()["message"]
    assert reply.headers["x-request-id"]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("badzip", "not a valid zip"),
        ("badmanifest", "MANIFEST.json"),
        ("noweights", "missing.pt"),
        ("badimport", "module_that_does_not_exist"),
    ],
)
def test_broken_archive_is_reported_by_name_and_reason(server, name, reason):
    log = server.log()
    assert any(name in line and reason in line for line in log.splitlines()), log
    reply = post(server, f"/predictions/{name}", json=[1])
    assert reply.status_code == 404
    assert reason in reply.json()["message"]


def test_json_body_is_decoded_for_the_handler(server):
    reply = post(server, "/predictions/fields", json={"a": [1, 2]})
    assert reply.json() == {"body": {"type": "dict", "value": {"a": [1, 2]}}}


def test_text_and_raw_bodies(server):
    text = post(server, "/predictions/fields", data="héllo".encode(), headers={"content-type": "text/plain"})
    assert text.json() == {"body": {"type": "str", "value": "héllo"}}
    raw = post(
        server, "/predictions/fields", data=b"\x00\x01\x02", headers={"content-type": "application/octet-stream"}
    )
    assert raw.json() == {"body": {"type": "bytes", "value": 3}}


def test_multipart_form_fields_become_inputs(server):
    reply = post(
        server,
        "/predictions/fields",
        files={"data": ("img.bin", b"\x89PNG....", "application/octet-stream")},
        data={"caption": "a cat"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "caption": {"type": "str", "value": "a cat"},
        "data": {"type": "bytes", "value": 8},
    }


def test_urlencoded_form_and_query_fields(server):
    reply = post(server, "/predictions/fields?threshold=0.5", data={"text": "x y", "lang": "en"})
    assert reply.json() == {
        "threshold": {"type": "str", "value": "0.5"},
        "text": {"type": "str", "value": "x y"},
        "lang": {"type": "str", "value": "en"},
    }


def test_invalid_json_body_is_400(server):
    reply = post(server, "/predictions/fields", data=b"{nope", headers={"content-type": "application/json"})
    assert reply.status_code == 400
    assert "not valid JSON" in reply.json()["message"]


def test_context_carries_request_id_and_headers(server):
    reply = post(server, "/predictions/behave", json="hello", headers={"x-test-header": "v1", "x-request-id": "abc123"})
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "abc123"
    body = reply.json()
    assert body["model"] == "behave" and body["request_id"] == "abc123" and body["header"] == "v1"
    assert "content-type" in body["all_headers"]


def test_handler_sets_status_headers_and_content_type(server):
    reply = post(server, "/predictions/behave", data="status", headers={"content-type": "text/plain"})
    assert reply.status_code == 201
    assert reply.headers["x-handler"] == "yes"
    assert reply.headers["content-type"] == "application/x-custom"
    assert reply.content == b"custom-bytes"


def test_str_and_bytes_replies(server):
    text = post(server, "/predictions/behave", data="text", headers={"content-type": "text/plain"})
    assert text.content == b"plain text" and text.headers["content-type"].startswith("text/plain")
    raw = post(server, "/predictions/behave", data="bytes", headers={"content-type": "text/plain"})
    assert raw.content == bytes([0, 1, 2, 255])
    assert raw.headers["content-type"] == "application/octet-stream"


def test_handler_exception_is_500_naming_it_and_the_worker_keeps_serving(server):
    reply = post(server, "/predictions/behave", data="boom", headers={"content-type": "text/plain"})
    assert reply.status_code == 500
    body = reply.json()
    assert body["code"] == 500
    assert "ValueError" in body["message"] and "the handler was told to fail" in body["message"]
    request_id = reply.headers["x-request-id"]
    assert request_id in server.log() and "Traceback" in server.log()
    assert post(server, "/predictions/behave", json="hello").status_code == 200


def test_handler_breaking_the_list_contract_is_500(server):
    reply = post(server, "/predictions/behave", data="notlist", headers={"content-type": "text/plain"})
    assert reply.status_code == 500
    assert "returned dict, expected a list" in reply.json()["message"]
    reply = post(server, "/predictions/behave", data="wronglen", headers={"content-type": "text/plain"})
    assert reply.status_code == 500
    assert "returned 2 items for a batch of 1" in reply.json()["message"]


def test_body_over_max_request_size_is_413(server):
    reply = post(server, "/predictions/fields", data=b"x" * 70000, headers={"content-type": "application/octet-stream"})
    assert reply.status_code == 413
    assert reply.json()["code"] == 413 and "65536" in reply.json()["message"]
    # chunked upload without a Content-Length is capped too
    chunked = post(
        server,
        "/predictions/fields",
        data=iter([b"y" * 40000, b"y" * 40000]),
        headers={"content-type": "application/octet-stream"},
    )
    assert chunked.status_code == 413
    assert post(server, "/predictions/fields", json=[1]).status_code == 200


def test_unknown_route_is_404_in_torchserve_shape(server):
    reply = requests.get(server.url("/nothing/here"), timeout=5)
    assert reply.status_code == 404
    assert reply.json()["type"] == "ResourceNotFoundException"
    assert reply.headers["x-request-id"]


def test_put_works_like_post_as_in_torchserve(server):
    reply = requests.put(
        server.url("/predictions/fields"),
        data=b"\x01\x02",
        timeout=30,
        headers={"content-type": "application/octet-stream"},
    )
    assert reply.status_code == 200
    assert reply.json() == {"body": {"type": "bytes", "value": 2}}
