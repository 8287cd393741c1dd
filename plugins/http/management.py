"""Management API resources (TorchServe 0.12 compatible), on the management listener.

Reads and changes go to the model service (see ``hookserve.model_service``); this module
parses parameters, applies the API's access rules and writes TorchServe's JSON. Parameters
are taken from the query string or from a JSON body.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

import falcon
import falcon.asgi
import orjson

from hookserve.config import ServerConfig, is_loopback
from hookserve.errors import BadRequest, HookserveError, ModelApiDisabled
from hookserve.manager.limits import strict_int
from hookserve.model_service import ManagementAnswer, ModelDescription, ModelRef, ModelService
from hookserve.wire.control import RegisterModel, ScaleWorkers
from hookserve.wire.framing import WorkRequest

REGISTER_INTS = ("batch_size", "max_batch_delay", "initial_workers", "response_timeout", "startup_timeout")
SCALE_INTS = ("min_worker", "max_worker")
DEFAULT_LIST_LIMIT = 100


async def request_params(req: falcon.asgi.Request, ints: tuple[str, ...]) -> dict[str, Any]:
    """Query parameters, overlaid by a JSON object body; the named ones as integers."""
    params: dict[str, Any] = dict(req.params)
    if req.content_length and (req.content_type or "").startswith("application/json"):
        body = await req.stream.read()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        params.update(data)
    for key in ints:
        if params.get(key) is not None:
            try:
                params[key] = strict_int(params[key])
            except (TypeError, ValueError):
                raise BadRequest(f"Parameter {key} must be an integer, got {params[key]!r}") from None
    if "synchronous" in params:
        params["synchronous"] = str(params["synchronous"]).lower() != "false"
    return params


def memory_usage(pid: int) -> int:
    """Resident bytes of a worker (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


class ManagementResources:
    """Shared by the management resources: the model service and the API's access rule."""

    def __init__(self, models: ModelService, config: ServerConfig):
        self.models = models
        self.model_api = config.enable_model_api or is_loopback(config.management_address[0])

    def require_model_api(self) -> None:
        if not self.model_api:
            raise ModelApiDisabled(
                "registering and unregistering models is disabled while management listens beyond loopback; "
                "start the server with --enable-model-api"
            )


def answer(resp: falcon.asgi.Response, done: ManagementAnswer) -> None:
    resp.status = done.status
    resp.media = {"status": done.message}


def description_json(description: ModelDescription) -> dict:
    """``GET /models/{name}``'s entry for one version, in TorchServe's words."""
    settings = description.settings
    return {
        "modelName": description.model,
        "modelVersion": description.version,
        "modelUrl": description.url,
        "runtime": description.runtime,
        "minWorkers": settings.min_worker,
        "maxWorkers": settings.max_worker,
        "batchSize": settings.batch_size,
        "maxBatchDelay": settings.max_batch_delay,
        "responseTimeout": settings.response_timeout,
        "startupTimeout": settings.startup_timeout,
        "deviceType": description.device_type,
        "loadedAtStartup": description.loaded_at_startup,
        "workers": [
            {
                "id": w.id,
                "startTime": datetime.fromtimestamp(w.started_at, timezone.utc).isoformat(),
                "status": w.state,
                "pid": w.pid,
                "memoryUsage": memory_usage(w.pid) if w.pid else 0,
                "gpu": w.device != "cpu",
                "device": w.device,
            }
            for w in description.workers
        ],
        "jobQueueStatus": {
            "remainingCapacity": description.queue_capacity,
            "pendingRequests": description.pending_requests,
        },
    }


class ModelsResource:
    """``POST /models`` registers, ``GET /models`` lists."""

    requires_token = True

    def __init__(self, shared: ManagementResources):
        self.shared = shared

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.shared.require_model_api()
        params = await request_params(req, REGISTER_INTS)
        given = {k: params.get(k) for k in ("url", "model_name", "handler", "runtime", *REGISTER_INTS)}
        answer(
            resp, await self.shared.models.register(RegisterModel(**given, synchronous=params.get("synchronous", True)))
        )

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        params = await request_params(req, ("limit", "next_page_token"))
        limit = params.get("limit") or DEFAULT_LIST_LIMIT
        start = params.get("next_page_token") or 0
        if limit < 1 or start < 0:
            raise BadRequest("limit must be positive and next_page_token not negative")
        models = self.shared.models.list_models()
        body: dict[str, Any] = {
            "models": [{"modelName": m.name, "modelUrl": m.url} for m in models[start : start + limit]]
        }
        if start + limit < len(models):
            body["nextPageToken"] = str(start + limit)
        resp.media = body


class ModelResource:
    """``/models/{model}[/{version}|/all]``: describe, scale, unregister."""

    requires_token = True

    def __init__(self, shared: ManagementResources):
        self.shared = shared

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model_name: str, version: str | None = None
    ) -> None:
        models = self.shared.models
        versions = (models.versions(model_name) or [None]) if version == "all" else [version]
        described = []
        for number in versions:
            description = models.describe(model_name, number)
            entry = description_json(description)
            if req.get_param_as_bool("customized"):
                ref = await models.resolve_when_ready(model_name, description.version)
                entry["customizedMetadata"] = await self._customized(req, ref)
            described.append(entry)
        resp.media = described

    async def _customized(self, req: falcon.asgi.Request, ref: ModelRef) -> Any:
        reply = await self.shared.models.submit(ref, WorkRequest(req.context.request_id, "describe", {}, []))
        if reply.status >= 400:
            raise HookserveError(reply.error["message"] if reply.error else reply.body.decode(), code=reply.status)
        return reply.body.decode("utf-8", errors="replace")

    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model_name: str, version: str | None = None
    ) -> None:
        params = await request_params(req, SCALE_INTS)
        scaling = ScaleWorkers(
            model=model_name,
            version=version,
            min_worker=params.get("min_worker"),
            max_worker=params.get("max_worker"),
            synchronous=params.get("synchronous", False),
        )
        answer(resp, await self.shared.models.scale(scaling))

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model_name: str, version: str | None = None
    ) -> None:
        self.shared.require_model_api()
        answer(resp, await self.shared.models.unregister(model_name, version))


class SetDefaultResource:
    requires_token = True

    def __init__(self, shared: ManagementResources):
        self.shared = shared

    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model_name: str, version: str) -> None:
        answer(resp, await self.shared.models.set_default(model_name, version))
