"""Serving the app until SIGTERM or SIGINT, with a JSON answer to a request aiohttp cannot parse.

systemd hears ``READY=1`` once the site listens (the pool and the workers of the
cleanup contexts have started, the signal handlers are in place) and ``STOPPING=1``
as the stop begins.

aiohttp answers a request line or header it cannot parse by itself, before
any middleware runs: a text/plain 400 that quotes the offending line, which
can be the ``Authorization`` header with the caller's API key in it. Here
that answer is the API's usual JSON error (``bad_request``) naming the kind
of fault only, and the log line names the client and the fault's kind, not
its text.

aiohttp offers no setting for its request handler class, so :class:`_Runner`
builds the server itself (``_make_server``, the server's ``_loop`` and
``_kwargs``, the handler's ``_messages``, ``_handle_request`` and ``_ErrInfo`` are
aiohttp internals);
``tests/admin_api/test_httpserver.py`` fails if an aiohttp upgrade moves them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.helpers import set_exception
from aiohttp.http_exceptions import (
    ContentEncodingError,
    HttpProcessingError,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from postwarden_policies.systemd_notify import SystemdNotifier

from .errors import ApiError, ClientGone
from .signals import RELOAD_SIGNALS, release_reload_signals

log = logging.getLogger(__name__)
KEEPALIVE_SECONDS = 75.0  # what web.run_app sets (aiohttp's handler alone keeps 3630 s)
# A stop waits this long for the requests under way, then cancels them and waits as long
# again for them to end (aiohttp's RequestHandler.shutdown).
SHUTDOWN_SECONDS = 10.0


UNDECODABLE = ("the body does not decode as its Content-Encoding says "
               "(only gzip and deflate are decoded)")


def undecodable() -> ApiError:
    return ApiError(400, "bad_request", f"malformed request: {UNDECODABLE}")


def unparsable(exc: HttpProcessingError) -> ApiError:
    return ApiError(400, "bad_request", f"malformed request: {_fault(exc)}")


def log_unparsable(request: web.BaseRequest, exc: HttpProcessingError) -> None:
    log.info("unparsable HTTP request from %s (%s)", request.remote, type(exc).__name__)


def _fault(exc: HttpProcessingError) -> str:
    if isinstance(exc, LineTooLong):
        return "a request line or header is too long"
    # aiohttp's C parser raises a bad chunk as the BadHttpMessage of a bad header: only
    # llhttp's reason, the message's first line, names the chunk.
    if isinstance(exc, TransferEncodingError) or "chunk" in exc.message.partition("\n")[0].lower():
        return "the chunked body is malformed (a chunk size, extension or end)"
    if isinstance(exc, ContentEncodingError):  # br or zstd, or deflate that ends short
        return UNDECODABLE
    return "the request line or a header is malformed"


class _Handler(RequestHandler):
    _body: StreamReader | None = None  # the last request's body, which the parser feeds
    _answered: StreamReader | None = None  # the body of the last request answered

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Done once the client's connection is lost (ended_if_client_leaves).
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if not self.gone.done():
            self.gone.set_result(None)

    def data_received(self, data: bytes) -> None:
        """aiohttp's own, but a fault the parser meets in a body it has begun to hand on
        (a bad chunk after the headers came) fails the reading of that body. aiohttp
        made it a request of its own, answered after the one whose body never ends:
        that one waited for more of it (two minutes, then 408), the client for an answer."""
        queued = len(self._messages)
        super().data_received(data)
        for message, body in list(self._messages)[queued:]:
            if isinstance(message, _ErrInfo) and self._body is not None and (
                    not self._body.is_eof()):
                self._messages.pop()  # the last: the parser stops at a fault
                self._end_body(self._body, message.exc)
                return
            self._body = body

    def _end_body(self, body: StreamReader, fault: BaseException) -> None:
        # A body answered already is only read to its end (aiohttp lingers over it):
        # the fault there would be logged as an unhandled exception.
        if body is not self._answered:
            set_exception(body, fault)  # its handler's read raises it
        body.feed_eof()  # nothing more to read: no lingering after the answer
        self.close()  # read no further; close once the request is answered

    async def _handle_request(self, request: web.BaseRequest, start_time: float | None,
                              request_handler: Callable[[web.BaseRequest],
                                                        Awaitable[web.StreamResponse]],
                              ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self._answered = request.content

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        log_unparsable(request, exc)
        error = unparsable(exc)
        # No middleware runs for it: the X-Request-Id every answer carries is given here
        # (a new one: the request's own headers are not read).
        response = web.json_response(error.body(), status=error.status,
                                     headers={"X-Request-Id": uuid.uuid4().hex})
        response.force_close()  # the rest of the stream cannot be trusted either
        return response


@asynccontextmanager
async def ended_if_client_leaves(request: web.BaseRequest) -> AsyncIterator[None]:
    """The block, cancelled should the client's connection close first (ClientGone is
    raised then): a query inside is cancelled in PostgreSQL too (asyncpg sends it a
    cancel request). aiohttp runs a handler on when its client leaves (handler
    cancellation is off, for a send must not stop halfway), so a search whose client
    gave up ran on to its statement timeout, holding a pooled connection and a backend.

    Only under this module's server (its connection handler tells the client left):
    aiohttp's test server runs the block to its end."""
    gone: asyncio.Future[None] | None = getattr(request.protocol, "gone", None)
    task = asyncio.current_task()
    if gone is None or task is None:
        yield
        return
    if gone.done():
        raise ClientGone
    inside = True

    def stop(_: asyncio.Future[None]) -> None:
        if inside:  # else the block is over: the request goes on (it is answered)
            task.cancel()

    gone.add_done_callback(stop)
    try:
        yield
    except asyncio.CancelledError:
        if gone.done() and task.uncancel() == 0:  # our cancel, not a stop's
            raise ClientGone from None
        raise
    finally:
        inside = False
        gone.remove_done_callback(stop)


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(made.request_handler, request_factory=made.request_factory,
                       handler_cancellation=made.handler_cancellation,
                       loop=made._loop, **made._kwargs)  # internals: see the module note


async def start(app: web.Application, host: str, port: int,
                shutdown_timeout: float = SHUTDOWN_SECONDS) -> web.AppRunner:
    """Listening on host:port once this returns; ``await runner.cleanup()`` stops it."""
    # No access log: each send attempt is logged at INFO, admin changes go to
    # the admin audit log; a reverse proxy in front keeps its own.
    runner = _Runner(app, shutdown_timeout=shutdown_timeout, access_log=None,
                     keepalive_timeout=KEEPALIVE_SECONDS)
    try:
        await runner.setup()
    except BaseException:
        # A start-up step failed: the ones before it (the pool, the periodic jobs) are
        # ended here, where asyncio's shutdown found a job still running and logged a
        # traceback above the one line that says why.
        await runner.cleanup()
        raise
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(f"listen: cannot listen on {host}:{port}: {_reason(exc)}") from exc
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class ListenError(OSError):
    """The site could not listen, named by its setting (asyncio's text names neither
    the setting nor, for an unknown host, the host)."""


def _reason(exc: OSError) -> str:
    # asyncio's bind error wraps the system's text in its own; a name lookup's errno
    # is negative, its text its own.
    return os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)


def _nothing_to_reload(signum: int) -> None:
    log.warning("%s: the admin service has nothing to reload (it reads its runtime "
                "settings, rules and keys from the database); restart it to read its "
                "settings file",
                signal.Signals(signum).name)


async def serve(app: web.Application, host: str, port: int, notifier: SystemdNotifier) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests under way and stop."""
    runner = await start(app, host, port)
    # What start-up built (modules, the pool, the routes) lives as long as the process:
    # full collections need not walk it again (.gcpauses). Start-up's garbage first, or
    # frozen it would stay.
    gc.collect()
    gc.freeze()
    # Only now: a signal during startup (a database that does not answer) ends
    # the process at once, as it would without a handler.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    for signum in RELOAD_SIGNALS:
        loop.add_signal_handler(signum, _nothing_to_reload, signum)
    release_reload_signals()  # those sent as it started are logged now
    log.info("serving on http://%s:%d", host, port)
    notifier.ready()
    try:
        await stop.wait()
    finally:
        notifier.stopping()
        await runner.cleanup()
