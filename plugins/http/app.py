"""The falcon ASGI apps: one per listener address, one error shape for all of them."""

from __future__ import annotations

import hmac
import itertools
import logging
import secrets
from typing import Any

import falcon
import falcon.asgi
import orjson

from hookserve.config import ServerConfig
from hookserve.errors import HookserveError, Unauthorized, error_for_status
from hookserve.plugin_types import Routes

log = logging.getLogger("hookserve.frontend")

REQUEST_ID_HEADER = "x-request-id"
JSON_HANDLER = falcon.media.JSONHandler(dumps=orjson.dumps, loads=orjson.loads)


class RequestIdMiddleware:
    """Every request gets an id (the client's ``x-request-id`` if it sent one); every reply carries it.

    Ours are a random per-process prefix and a counter: unique, and cheaper than a uuid4.
    """

    def __init__(self) -> None:
        self.prefix = f"{secrets.token_hex(6)}-"
        self.counter = itertools.count()

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.request_id = req.get_header(REQUEST_ID_HEADER) or f"{self.prefix}{next(self.counter):x}"

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_header(REQUEST_ID_HEADER, req.context.request_id)


class ManagementTokenMiddleware:
    """Resources marked ``requires_token`` need ``Authorization: Bearer <token>`` (installed only
    when a token is set)."""

    def __init__(self, token: str):
        self.token = token

    async def process_resource(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any, params: dict
    ) -> None:
        if not getattr(resource, "requires_token", False):
            return
        given = req.get_header("Authorization") or ""
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), self.token):
            raise Unauthorized("management API token missing or wrong: send 'Authorization: Bearer <token>'")


async def handle_hookserve_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: HookserveError, params: dict
) -> None:
    if error.code >= 500:
        log.error("request %s: %s: %s", getattr(req.context, "request_id", "-"), error.type, error.message)
    resp.status = error.code
    resp.content_type = falcon.MEDIA_JSON
    resp.data = error.to_json()


def serialize_falcon_error(req: falcon.asgi.Request, resp: falcon.asgi.Response, error: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = error_for_status(error.status_code, error.description or error.title).to_json()


async def handle_unexpected(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: dict
) -> None:
    request_id = getattr(req.context, "request_id", "-")
    log.exception("request %s failed in the frontend", request_id)
    resp.status = 500
    resp.content_type = falcon.MEDIA_JSON
    resp.data = HookserveError(f"{type(error).__name__}: {error}").to_json()


def build_falcon_app(entries: list[tuple[str, Any, dict]], config: ServerConfig) -> falcon.asgi.App:
    middleware: list[Any] = [RequestIdMiddleware()]
    if config.management_token:
        middleware.append(ManagementTokenMiddleware(config.management_token))
    app = falcon.asgi.App(middleware=middleware)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = JSON_HANDLER
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = JSON_HANDLER
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(HookserveError, handle_hookserve_error)
    app.set_error_serializer(serialize_falcon_error)
    for uri_template, resource, kwargs in entries:
        app.add_route(uri_template, resource, **kwargs)
    return app


class ListenerDispatch:
    """One ASGI app for all listeners: picks the falcon app by the port a request came in on."""

    def __init__(self, by_port: dict[int, falcon.asgi.App]):
        self.by_port = by_port
        self.fallback = next(iter(by_port.values()))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        server = scope.get("server")
        app = self.fallback
        if server:
            # any iterable of (host, port) by the ASGI spec, not only a tuple
            _host, port = server
            app = self.by_port.get(port, self.fallback)
        await app(scope, receive, send)


def create_listener_apps(routes: Routes, config: ServerConfig) -> ListenerDispatch:
    by_port = {}
    for (_host, port), names in config.listeners().items():
        entries = [entry for name in names for entry in routes.table.get(name, [])]
        by_port[port] = build_falcon_app(entries, config)
    return ListenerDispatch(by_port)
