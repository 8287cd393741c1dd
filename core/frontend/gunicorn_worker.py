"""The frontend's gunicorn worker: gunicorn's ASGI worker with a connection protocol that
loses nothing a client sends.

Three changes to gunicorn's ``ASGIProtocol`` (gunicorn 27, ``gunicorn/asgi/protocol.py``),
each kept to the methods it needs:

* **No bytes fed to a finished parser.** Once a request's message is complete, the C parser
  (``gunicorn_h1c.H1CProtocol``) keeps what follows it for the connection loop to replay,
  but at most 64 KiB (``limit_remaining``); past that it sets ``remaining_truncated`` and the
  loop closes the connection after the reply, without ``Connection: close`` and without a
  log line. The next request's bytes reach ``data_received`` before the loop has reset the
  parser whenever the client is quick: under uvloop a read callback runs before the task
  wake-up that resumes the loop, and any pipelining client sends them anyway. A 168 KB-1.1 MB
  POST right after the previous reply lost its connection in about 2 % of requests (44 % with
  gunicorn's own ``asgi`` worker and a trivial app under uvloop; none under plain asyncio).
  Here a body is fed up to its end and no further, other bytes at most 64 KiB at a time (so
  the tail a feed leaves always fits), and what arrives for a finished message is held, with
  reading paused, until the loop has taken the message and reset the parser; then it is fed
  in order. A small next request (under 64 KiB with the tail) still goes to the parser, as
  in gunicorn, which costs no pause.
* **A reply before the whole body announces its close, then lingers.** When the app answers
  before the request body has fully arrived (404 for an unknown model, 413), gunicorn kept
  the connection "alive" in its headers and then closed it with body bytes unread, so the
  kernel reset the connection and a client still sending (``urllib``) saw ``BrokenPipeError``
  instead of the reply. Such a reply says ``Connection: close``; the connection then shuts
  its sending side and reads and discards what the client still sends (nothing is buffered)
  until the client closes, for at most ``LINGER_TIME`` seconds, ``LINGER_IDLE`` seconds
  without data, or ``LINGER_BYTES`` bytes, as nginx's lingering close does.
* **gunicorn's own error replies** (400 bad request line or header, 414, 431 header fields
  too large, 501, the 500 for an app that never started its response) use the server's
  JSON error shape ``{"code", "type", "message"}``, and linger the same way.
"""

from __future__ import annotations

from http import HTTPStatus

from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers import gasgi
from gunicorn.workers.gasgi import ASGIWorker

from hookserve.errors import error_for_status

# gunicorn_h1c keeps at most this much of what follows a finished message (its default
# limit_remaining); a feed of at most this many bytes can never leave more than that.
FEED_SLICE = 65536

# nginx's lingering_time and lingering_timeout defaults; the byte bound keeps a fast client
# from holding a worker's CPU for the whole time.
LINGER_TIME = 30.0
LINGER_IDLE = 5.0
LINGER_BYTES = 1 << 30


class FrontendProtocol(ASGIProtocol):
    """gunicorn's HTTP/1 connection protocol with the three changes in the module docstring."""

    def __init__(self, worker):
        super().__init__(worker)
        # Bytes that arrived for a finished message, waiting for the loop to reset the parser.
        self._held = bytearray()
        self._replay_scheduled = False
        # Body bytes of the current request the parser has passed on.
        self._body_seen = 0
        # The request whose reply announced a close because its body had not all arrived.
        self._close_announced_for = None
        self._linger_after_error = False
        # Lingering close: (deadline, bytes discarded, time of last data) once started.
        self._lingering = False
        self._linger_deadline = 0.0
        self._linger_last = 0.0
        self._linger_bytes = 0
        self._linger_timer = None

    # -- no bytes fed to a finished parser -----------------------------------------------

    def data_received(self, data):
        if self._lingering:
            self._discard(data)
            return
        parser = self._callback_parser
        if parser is None or self._websocket is not None or self._h2c_buffer is not None or self.reader is not None:
            super().data_received(data)
            return
        if self._held:
            self._hold(data)
        elif parser.is_complete and not self._upgrading():
            if len(data) + len(parser.remaining()) <= FEED_SLICE:
                # Small enough for what the parser keeps behind the finished message (a
                # quick client's next small request): the loop replays it, as gunicorn does.
                self._feed_callback_parser(data)
            else:
                self._hold(data)
        else:
            self._feed_http1(data)

    def _upgrading(self) -> bool:
        """The finished request switches to WebSocket: gunicorn's own path takes what follows.

        (An h2c upgrade replaces the parser inside ``_feed_callback_parser`` itself.)"""
        request = self._current_request
        return request is not None and request.may_upgrade() and self._is_websocket_upgrade(request)

    def _feed_http1(self, data) -> None:
        parser = self._callback_parser
        size = len(data)
        start = 0
        while start < size:
            end = start + self._feed_size(parser, size - start)
            fed = self._feed_callback_parser(data if start == 0 and end == size else data[start:end])
            start = end
            if self._callback_parser is not parser:
                # An h2c upgrade took the connection over: the rest goes to its reader.
                if start < size and not self._closed:
                    super().data_received(data[start:])
                return
            if not fed:
                return  # closed on a parse error
            if start < size and parser.is_complete and not self._upgrading():
                self._hold(memoryview(data)[start:])
                return
        # gunicorn's read backpressure, as in ASGIProtocol.data_received.
        if (
            not self._reading_paused
            and self._callback_parser is not None
            and self._http1_buffered() > self._max_buffer_size
        ):
            self._pause_reading()

    def _feed_size(self, parser, available: int) -> int:
        """How much of ``available`` bytes the parser may take in one feed: all the body
        still due while that is known (a body read is fed as it came, and a message ends
        exactly at a feed's end), otherwise at most ``FEED_SLICE``."""
        request = self._current_request
        if request is not None and not request.chunked and not parser.is_complete:
            due = request.content_length - self._body_seen
            if due > 0:
                return min(available, due)
        return min(available, FEED_SLICE)

    def _on_headers_complete(self):
        self._body_seen = 0
        return super()._on_headers_complete()

    def _on_body(self, chunk):
        self._body_seen += len(chunk)
        super()._on_body(chunk)

    def _hold(self, data) -> None:
        self._held += data
        self._pause_reading()

    def _resume_reading(self):
        # The connection loop resumes reading just before it takes the finished message's
        # tail and resets the parser. Held bytes come after that tail: feed them once the
        # loop has yielded, with reading still paused so nothing can overtake them.
        if self._held:
            if not self._replay_scheduled:
                self._replay_scheduled = True
                self.worker.loop.call_soon(self._replay_held)
            return
        super()._resume_reading()

    def _maybe_resume_reading(self):
        if self._held:
            return
        super()._maybe_resume_reading()

    def _replay_held(self) -> None:
        self._replay_scheduled = False
        held = self._held
        # A slice at a time off the front (cheap for a bytearray), stopping when a message
        # completes: the rest stays held, and reading paused, until the loop resets the parser.
        while held and not self._closed and self._callback_parser is not None:
            parser = self._callback_parser
            if parser.is_complete and not self._upgrading():
                return
            size = self._feed_size(parser, len(held))
            piece = bytes(held[:size])
            del held[:size]
            if not self._feed_callback_parser(piece) or self._callback_parser is not parser:
                if held and self._callback_parser is None and self.reader is not None and not self._closed:
                    self.reader.feed_data(bytes(held))  # an h2c upgrade took the connection over
                held.clear()
                return
        if not held:
            self._maybe_resume_reading()

    # -- a reply before the whole body: Connection: close, then a lingering close ---------

    def _will_close(self, request, response_requires_close):
        if self._close_announced_for is request or self._linger_after_error:
            # (gunicorn's own 500 for an app that returned without a response says
            # Connection: close but used to keep the connection.)
            return True
        if super()._will_close(request, response_requires_close):
            return True
        receiver = self._body_receiver
        if (
            self._callback_parser is not None
            and receiver is not None
            and receiver.request is request
            and not receiver._complete
        ):
            # The rest of the body is still on its way: closing is the only way the next
            # request cannot be read out of it.
            self._close_announced_for = request
            return True
        return False

    def _send_error_response(self, status, message, extra_headers=()):
        message = f"{message}: {limit}" if (limit := self._limit_exceeded(status, message)) else message
        body = error_for_status(status, message).to_json()
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        extra = "".join(f"{name}: {value}\r\n" for name, value in extra_headers)
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{extra}"
            f"Connection: close\r\n"
            f"\r\n"
        )
        self._safe_write(head.encode("latin-1") + body)
        self._linger_after_error = True

    def _limit_exceeded(self, status: int, message: str) -> str | None:
        """The gunicorn setting behind a 414 or 431, so the client learns what the bound is."""
        cfg = self.cfg
        if status == 414:
            return f"limit_request_line={cfg.limit_request_line} bytes"
        if status == 431 and ("many" in message.lower() or "number" in message.lower()):
            return f"limit_request_fields={cfg.limit_request_fields}"
        if status == 431:
            return f"limit_request_field_size={cfg.limit_request_field_size} bytes"
        return None

    def _close_transport(self):
        if self._closed or self.transport is None or self._lingering:
            super()._close_transport()
            return
        receiver = self._body_receiver
        unread = self._callback_parser is not None and receiver is not None and not receiver._complete
        if not ((unread or self._linger_after_error) and self.worker.alive):
            super()._close_transport()
            return
        self._start_linger(receiver)

    def _start_linger(self, receiver) -> None:
        self._closed = True
        self._lingering = True
        loop = self.worker.loop
        now = loop.time()
        self._linger_deadline = now + LINGER_TIME
        self._linger_last = now
        # Nothing read from now on is kept.
        self._held.clear()
        if receiver is not None:
            receiver._chunks.clear()
            receiver._buffered = 0
            receiver.signal_disconnect()
        if self._request_ready is not None:
            self._request_ready.set()  # a connection loop waiting for a request sees _closed
        try:
            if self.transport.can_write_eof():
                self.transport.write_eof()  # after the reply has been flushed
        except (OSError, RuntimeError):
            pass
        if self._reading_paused:
            super()._resume_reading()
        self._linger_timer = loop.call_later(LINGER_IDLE, self._linger_check)

    def _discard(self, data) -> None:
        self._linger_bytes += len(data)
        self._linger_last = self.worker.loop.time()
        if self._linger_bytes > LINGER_BYTES:
            self._end_linger()

    def _linger_check(self) -> None:
        now = self.worker.loop.time()
        idle_until = self._linger_last + LINGER_IDLE
        if now >= self._linger_deadline or now >= idle_until or not self.worker.alive:
            self._end_linger()
        else:
            self._linger_timer = self.worker.loop.call_later(
                min(idle_until, self._linger_deadline) - now, self._linger_check
            )

    def _end_linger(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        try:
            self.transport.close()
        except Exception:
            pass

    def eof_received(self):
        if self._lingering:
            self._end_linger()
        return super().eof_received()

    def connection_lost(self, exc):
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)


def use_frontend_protocol() -> None:
    """Make gunicorn's ASGI worker serve connections with :class:`FrontendProtocol`.

    gunicorn's worker names its protocol class inside ``_serve()`` (``lambda:
    ASGIProtocol(self)``), with no setting to change it; a frontend worker process serves
    nothing else, so the module global is the smallest place to swap it.
    """
    gasgi.ASGIProtocol = FrontendProtocol
    # gunicorn caches whether its C parser is there on the class it is asked through but
    # reads the answer from ASGIProtocol: asked through a subclass first, it would serve
    # every connection with the pure-Python parser. Ask through ASGIProtocol.
    ASGIProtocol._check_h1c_protocol_available()


class FrontendWorker(ASGIWorker):
    """Gunicorn's ASGI worker serving connections with :class:`FrontendProtocol`, and closing
    its listeners as soon as SIGTERM arrives (the stock worker notices its stop flag only at
    its next once-a-second heartbeat and accepts new connections until then)."""

    def init_process(self) -> None:
        use_frontend_protocol()
        super().init_process()

    def handle_exit_signal(self) -> None:
        super().handle_exit_signal()
        for server in self.servers:
            server.close()
