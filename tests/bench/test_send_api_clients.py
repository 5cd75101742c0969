"""bench/send_api.py's load generators: what they count as accepted and as errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from bench.send_api import api_load, api_requests, raw_load, raw_messages

from tests.fixtures.ports import free_port
from tests.fixtures.scripted_smtp import Scripted, smtp_server  # noqa: F401 - fixture

KEY = "pw_bench_test_key"
COUNT = 40


def _number(subject: str) -> int:
    return int(subject.rsplit("#", 1)[1])


@pytest.fixture
async def api() -> AsyncIterator[tuple[int, list[int]]]:
    """A server answering by request number n: n % 4 == 0 a 202 with a JSON object,
    1 a 422, 2 a 202 whose body is not JSON, 3 a 202 with a JSON object, then it closes
    the connection. Yields its port and the numbers it saw."""
    seen: list[int] = []

    async def send(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        n = _number((await request.json())["subject"])
        seen.append(n)
        if n % 4 == 1:
            return web.json_response({"error": {"code": "invalid_field"}}, status=422)
        if n % 4 == 2:
            return web.Response(status=202, text="queued", content_type="application/json")
        answer = web.json_response({"id": str(n)}, status=202)
        if n % 4 == 3:
            answer.force_close()  # "Connection: close", then the server hangs up
        return answer

    app = web.Application()
    app.router.add_post("/api/v1/send-email", send)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, seen
    finally:
        await runner.cleanup()


async def test_only_202s_with_a_json_object_are_accepted(api: tuple[int, list[int]]) -> None:
    port, seen = api
    requests = api_requests(port, KEY, COUNT, "t1")
    latencies, errors, _ = await api_load(port, requests, time.monotonic() + 60)
    assert sorted(seen) == list(range(COUNT))  # each request sent once
    assert len(latencies) == COUNT // 2  # n % 4 in (0, 3): closed connections reopened
    assert errors == COUNT // 2


async def test_raw_messages_not_queued_are_errors(
    smtp_server: tuple[Scripted, int],  # noqa: F811 - the imported fixture
) -> None:
    scripted, port = smtp_server
    scripted.data_replies = ["451 4.3.0 try later", "554 5.7.1 no"]
    messages = raw_messages(10, "t2")
    queued, errors = await raw_load(port, messages, time.monotonic() + 60)
    assert (queued, errors) == (8, 2)
    recipients = {rcpt for _, rcpts, _ in scripted.received for rcpt in rcpts}
    assert len(recipients) == 8  # one message per transaction, each its own
    assert recipients <= {recipient for _, recipient, _ in messages}
