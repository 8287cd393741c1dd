"""Management API resources (TorchServe 0.12 compatible), on the management listener.

Changes go to the model manager over the control socket; reads come from the routes the
manager publishes. Parameters are taken from the query string or from a JSON body.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone
from typing import Any

import falcon
import falcon.asgi
import orjson

from hookserve.config import ServerConfig, is_loopback
from hookserve.errors import BadRequest, HookserveError, ManagerTimeout, ModelApiDisabled
from hookserve.frontend.model_client import ModelClient, VersionRoute
from hookserve.manager.limits import strict_int
from hookserve.wire.control import (
    DEFAULT_CALL_TIMEOUT_S,
    ControlMessage,
    RegisterModel,
    ScaleWorkers,
    SetDefault,
    Unregister,
    call_manager,
)
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
    """Shared by the management resources: the model client, the manager, the config."""

    def __init__(self, models: ModelClient, config: ServerConfig):
        self.models = models
        self.config = config
        self.model_api = config.enable_model_api or is_loopback(config.management_address[0])

    def require_model_api(self) -> None:
        if not self.model_api:
            raise ModelApiDisabled(
                "registering and unregistering models is disabled while management listens beyond loopback; "
                "start the server with --enable-model-api"
            )

    async def manager(self, resp: falcon.asgi.Response, message: ControlMessage) -> None:
        try:
            status, body = await call_manager(self.config.run_dir, message, timeout=DEFAULT_CALL_TIMEOUT_S)
        except (TimeoutError, asyncio.TimeoutError):  # one class from Python 3.11 on
            # the manager answers a slow synchronous call itself before this; this is a
            # manager too busy to answer at all
            raise ManagerTimeout(
                f"the model manager did not answer {message.op} within {DEFAULT_CALL_TIMEOUT_S:g} s; "
                "the change may still be in progress (GET /models shows the workers)"
            ) from None
        self.models.refresh(force=True)  # this frontend's next request sees the change
        resp.status = status
        resp.media = body

    def describe(self, model: str, version: str) -> dict:
        route = self.models.resolve(model, version)
        info = route.info
        pending = self.models.pending_for(model, version)
        return {
            "modelName": model,
            "modelVersion": version,
            "modelUrl": info.url,
            "runtime": info.runtime,
            "minWorkers": info.settings.min_worker,
            "maxWorkers": info.settings.max_worker,
            "batchSize": info.settings.batch_size,
            "maxBatchDelay": info.settings.max_batch_delay,
            "responseTimeout": info.settings.response_timeout,
            "startupTimeout": info.settings.startup_timeout,
            "deviceType": info.device_type or ("gpu" if any(w.device != "cpu" for w in info.workers) else "cpu"),
            "loadedAtStartup": info.loaded_at_startup,
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
                for w in info.workers
            ],
            "jobQueueStatus": {
                "remainingCapacity": self.models.job_queue_size - pending,
                "pendingRequests": pending,
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
        await self.shared.manager(resp, RegisterModel(**given, synchronous=params.get("synchronous", True)))

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        params = await request_params(req, ("limit", "next_page_token"))
        limit = params.get("limit") or DEFAULT_LIST_LIMIT
        start = params.get("next_page_token") or 0
        if limit < 1 or start < 0:
            raise BadRequest("limit must be positive and next_page_token not negative")
        routes = self.shared.models.refresh().models
        names = sorted(routes)
        page = names[start : start + limit]
        body: dict[str, Any] = {
            "models": [{"modelName": n, "modelUrl": routes[n].versions[routes[n].default].url} for n in page]
        }
        if start + limit < len(names):
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
        if version == "all":
            entry = models.refresh().models.get(model_name)
            versions = list(entry.versions) if entry else [None]
        else:
            versions = [version]
        described = []
        for number in versions:
            route = models.resolve(model_name, number)
            entry = self.shared.describe(model_name, route.version)
            if req.get_param_as_bool("customized"):
                entry["customizedMetadata"] = await self._customized(req, route)
            described.append(entry)
        resp.media = described

    async def _customized(self, req: falcon.asgi.Request, route: VersionRoute) -> Any:
        reply = await self.shared.models.submit(route, WorkRequest(req.context.request_id, "describe", {}, []))
        if reply.status >= 400:
            raise HookserveError(reply.error["message"] if reply.error else reply.body.decode(), code=reply.status)
        return reply.body.decode("utf-8", errors="replace")

    async def on_put(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model_name: str, version: str | None = None
    ) -> None:
        params = await request_params(req, SCALE_INTS)
        await self.shared.manager(
            resp,
            ScaleWorkers(
                model=model_name,
                version=version,
                min_worker=params.get("min_worker"),
                max_worker=params.get("max_worker"),
                synchronous=params.get("synchronous", False),
            ),
        )

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model_name: str, version: str | None = None
    ) -> None:
        self.shared.require_model_api()
        await self.shared.manager(resp, Unregister(model=model_name, version=version))


class SetDefaultResource:
    requires_token = True

    def __init__(self, shared: ManagementResources):
        self.shared = shared

    async def on_put(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model_name: str, version: str) -> None:
        await self.shared.manager(resp, SetDefault(model=model_name, version=version))
