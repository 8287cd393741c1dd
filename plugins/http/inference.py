"""Inference API resources: ``/ping``, ``/predictions`` and ``/explanations``."""

from __future__ import annotations

import falcon
import falcon.asgi

from hookserve.config import ServerConfig
from hookserve.model_service import UNHEALTHY, ModelService
from hookserve.plugins.http.bodies import body_fields, query_fields, read_body
from hookserve.wire.framing import WorkRequest

# Hop-by-hop and framing headers are the frontend's business, not the handler's.
SKIPPED_REQUEST_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class PingResource:
    """``/ping`` as TorchServe 0.12 answers it: ``{"status": "Healthy"}``, ``"Partial Healthy"``
    (200) or ``"Unhealthy"`` (500), with ``problems`` naming what is short (see ``ModelService.health``)."""

    def __init__(self, models: ModelService):
        self.models = models

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        status, problems = self.models.health()
        resp.media = {"status": status, "problems": problems} if problems else {"status": status}
        if status == UNHEALTHY:
            resp.status = 500


class PredictionsResource:
    """``POST /predictions/{model}[/{version}]`` (and the explanations path with ``kind``)."""

    def __init__(self, models: ModelService, config: ServerConfig, kind: str = "predict"):
        self.models = models
        self.max_request_size = config.max_request_size
        self.kind = kind

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model_name: str, version: str | None = None
    ) -> None:
        # Resolve first: an unknown model is a 404 whatever the body (once the service has
        # registered its start-up models: until then the request waits for them).
        route = await self.models.resolve_when_ready(model_name, version)
        body = await read_body(req, self.max_request_size)
        fields = query_fields(req) + body_fields(body, req.content_type)
        # ASGI header names are lower case already
        headers = {k: v for k, v in req.headers.items() if k not in SKIPPED_REQUEST_HEADERS}
        # A client that goes away gets this task cancelled (gunicorn's disconnect grace
        # period is 0), which withdraws its request from the worker if not yet started.
        reply = await self.models.submit(route, WorkRequest(req.context.request_id, self.kind, headers, fields))
        resp.status = reply.status
        if reply.stream is None:
            resp.data = reply.body
        else:
            # the handler streams: chunked transfer, one chunk per part as it comes
            resp.stream = reply.stream
        resp.content_type = reply.content_type
        for key, value in reply.headers.items():
            resp.set_header(key, str(value))

    # TorchServe accepts PUT too (what ``curl -T file`` sends)
    on_put = on_post
