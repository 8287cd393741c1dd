"""Bench prototype: a *sync* falcon WSGI forwarding frontend for hookserve's model workers.

Only for measuring gunicorn ``sync``/``gthread`` against the ASGI frontend (see README.md);
it is not part of hookserve. It reads ``routes.json`` from the run folder of a running
``hookserve serve`` (``$HOOKSERVE_RUN_DIR``) and forwards ``POST /predictions/{model}[/{version}]``
to a READY model worker over a blocking Unix socket, with hookserve's own framing
(``hookserve.wire.framing``) and the same body -> fields parsing as the ASGI app (a raw JSON body
is one field named ``body``). Like the ASGI client it picks the worker with the fewest
requests in flight from this process. Each thread keeps its own connection per worker
socket, so a connection carries one request at a time (no multiplexing is needed).

    HOOKSERVE_RUN_DIR=/tmp/hookserve-xxxx gunicorn -k gthread -w 1 --threads 8 \
        --chdir bench/frontend_stacks 'wsgi_frontend:create_app()'
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

import falcon
import orjson

from hookserve.config import ServerConfig
from hookserve.errors import HookserveError, ModelNotFound, RequestTooLarge, ServiceUnavailable, WorkerDied
from hookserve.plugins.http.bodies import body_fields, query_fields
from hookserve.wire.framing import FRAME_HEADER, Reply, WorkRequest, encode_request

try:  # workers also send {"started": [ids]} notices (protocol since 38fc7c0)
    from hookserve.wire.framing import decode_worker_frame
except ImportError:  # older protocol: every frame from a worker is a reply
    from hookserve.wire.framing import decode_reply as decode_worker_frame

SKIPPED_REQUEST_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class ResponseTimeout(HookserveError):
    code = 504
    type = "ResponseTimeoutException"


class SyncModelClient:
    def __init__(self, run_dir: str):
        self.routes_path = Path(run_dir) / "routes.json"
        self.routes: dict = {"models": {}, "failed": {}}
        self._mtime_ns = -1
        self._local = threading.local()  # per thread: {socket_path: (socket, reader)}
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def resolve(self, model: str, version: str | None) -> dict:
        try:
            mtime_ns = os.stat(self.routes_path).st_mtime_ns
        except FileNotFoundError:
            mtime_ns = self._mtime_ns
        if mtime_ns != self._mtime_ns:
            self.routes, self._mtime_ns = orjson.loads(self.routes_path.read_bytes()), mtime_ns
        entry = self.routes["models"].get(model)
        if entry is None:
            raise ModelNotFound(f"Model not found: {model}")
        info = entry["versions"].get(version or entry["default"])
        if info is None:
            raise ModelNotFound(f"Model version {version} not found for model {model}")
        return info

    def _connection(self, path: str):
        conns = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(path)
        if conn is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
            except OSError as exc:
                sock.close()
                raise ServiceUnavailable(f"worker socket {path} is not reachable: {exc.strerror}") from None
            conn = conns[path] = (sock, sock.makefile("rb"))
        return conn

    def _drop(self, path: str) -> None:
        sock, reader = self._local.conns.pop(path)
        reader.close()
        sock.close()

    @staticmethod
    def _read_reply(reader) -> Reply:
        """Frames until the reply; ``started`` notices (a list of ids) are skipped."""
        while True:
            header = reader.read(FRAME_HEADER.size)
            if len(header) < FRAME_HEADER.size:
                raise ConnectionError("worker closed the connection")
            meta_len, payload_len = FRAME_HEADER.unpack(header)
            meta = reader.read(meta_len)
            payload = reader.read(payload_len) if payload_len else b""
            if len(meta) < meta_len or len(payload) < payload_len:
                raise ConnectionError("worker closed the connection")
            frame = decode_worker_frame(meta, payload)
            if isinstance(frame, Reply):
                return frame

    def submit(self, model: str, version: str | None, request: WorkRequest):
        info = self.resolve(model, version)
        sockets = [w["socket"] for w in info["workers"] if w["state"] == "READY"]
        if not sockets:
            raise ServiceUnavailable(f"Model {model} has no worker ready")
        with self._lock:
            path = min(sockets, key=lambda s: self._in_flight.get(s, 0))
            self._in_flight[path] = self._in_flight.get(path, 0) + 1
        try:
            sock, reader = self._connection(path)
            sock.settimeout(float(info["settings"]["response_timeout"]))
            try:
                sock.sendall(b"".join(encode_request(request)))
                reply = self._read_reply(reader)
            except TimeoutError:
                self._drop(path)  # a late reply must not be read by the next request
                raise ResponseTimeout(
                    f"the model did not answer within {info['settings']['response_timeout']}s"
                ) from None
            except OSError:
                self._drop(path)
                raise WorkerDied("the model worker died while handling the request") from None
            if reply.id != request.id:  # cannot happen with one request per connection at a time
                self._drop(path)
                raise WorkerDied(f"reply id {reply.id} for request {request.id}")
            return reply
        finally:
            with self._lock:
                self._in_flight[path] -= 1


def read_body(req: falcon.Request, limit: int) -> bytes:
    length = req.content_length
    if length is not None and length > limit:
        raise RequestTooLarge(f"request body of {length} bytes exceeds max_request_size={limit} bytes")
    body = req.bounded_stream.read(limit + 1)
    if len(body) > limit:
        raise RequestTooLarge(f"request body exceeds max_request_size={limit} bytes")
    return body


class PredictionsResource:
    def __init__(self, models: SyncModelClient, max_request_size: int):
        self.models = models
        self.max_request_size = max_request_size

    def on_post(self, req: falcon.Request, resp: falcon.Response, model_name: str, version: str | None = None) -> None:
        self.models.resolve(model_name, version)
        body = read_body(req, self.max_request_size)
        fields = query_fields(req) + body_fields(body, req.content_type)
        headers = {k.lower(): v for k, v in req.headers.items() if k.lower() not in SKIPPED_REQUEST_HEADERS}
        reply = self.models.submit(model_name, version, WorkRequest(req.context.request_id, "predict", headers, fields))
        resp.status = reply.status
        resp.data = reply.body
        resp.content_type = reply.content_type
        for key, value in reply.headers.items():
            resp.set_header(key, str(value))


class RequestIdMiddleware:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.request_id = req.get_header("x-request-id") or uuid.uuid4().hex

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        resp.set_header("x-request-id", req.context.request_id)


def handle_hookserve_error(req, resp, error: HookserveError, params) -> None:
    resp.status = error.code
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(error.to_dict())


def create_app() -> falcon.App:
    config = ServerConfig.load()  # from $HOOKSERVE_RUN_DIR, like hookserve.app:create_app()
    models = SyncModelClient(config.run_dir)
    app = falcon.App(middleware=[RequestIdMiddleware()])
    app.add_error_handler(HookserveError, handle_hookserve_error)
    predictions = PredictionsResource(models, config.max_request_size)
    app.add_route("/predictions/{model_name}", predictions)
    app.add_route("/predictions/{model_name}/{version}", predictions)
    return app
