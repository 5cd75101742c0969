"""The service as `postwarden-admin serve` runs it: a request aiohttp cannot parse gets
the API's JSON error without its text, SIGTERM stops the process cleanly, and SIGHUP or
SIGUSR1 (the milter's reload signals) stops nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postwarden_admin_api.context import Role
from tests.fixtures.adminapp import TEST_SECRET_KEY, MintKey
from tests.fixtures.ports import free_port
from tests.fixtures.postfix import wait_for

KEY = "pw_0123456789abcdef_" + "S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr"

UNPARSABLE = {
    "space before the colon": f"Authorization : Bearer {KEY}\r\n".encode(),
    "control character in a value": f"Authorization: Bearer {KEY}\x01\r\n".encode(),
    "line too long": f"Authorization: Bearer {KEY}{'x' * 9000}\r\n".encode(),
}


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def _exchange_in_two(port: int, head: bytes, rest: bytes) -> bytes:
    """The answer to ``head`` then, once the service has begun on it, ``rest``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head)
        time.sleep(0.5)
        conn.sendall(rest)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def _answers(port: int) -> bool:
    try:
        return _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                         ).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    stderr = (tmp_path / "stderr").open("w+")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    env |= {"POSTWARDEN_DATABASE_URL": database_url,
           "POSTWARDEN_LISTEN": f"127.0.0.1:{port}", "POSTWARDEN_SECRET_KEY": TEST_SECRET_KEY}
    proc = subprocess.Popen([sys.executable, "-m", "postwarden_admin_api", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    try:
        wait_for(lambda: _answers(port) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, (tmp_path / "stderr").read_text()
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()


@pytest.mark.parametrize("header", UNPARSABLE.values(), ids=UNPARSABLE.keys())
def test_a_request_aiohttp_cannot_parse_is_a_json_400_that_does_not_quote_it(
    service: tuple[int, subprocess.Popen[str]], header: bytes, tmp_path: Path
) -> None:
    port, proc = service
    answer = _exchange(port, b"GET /api/v1/keys HTTP/1.1\r\nHost: t\r\n" + header + b"\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", answer[:300]
    assert b"Content-Type: application/json" in head
    # As every answer does (docs/api.md, the OpenAPI document), so a client can quote it.
    assert re.search(rb"\r\nX-Request-Id: [0-9a-f]{32}\r\n", head + b"\r\n"), head
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request"
    assert error["message"].startswith("malformed request: ")
    assert b"S3cr3t" not in answer
    assert _answers(port)  # the service goes on
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    log = (tmp_path / "stderr").read_text()
    assert "unparsable HTTP request from 127.0.0.1" in log
    assert "S3cr3t" not in log
    assert "Traceback" not in log



@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1])
def test_a_reload_signal_is_logged_and_stops_nothing(
    service: tuple[int, subprocess.Popen[str]], signum: signal.Signals, tmp_path: Path
) -> None:
    # SIGHUP ended the process, an exit systemd counts as clean (Restart=on-failure does
    # not restart it): a `kill -HUP` meant to reload, as for the milter, took the send
    # API down for good.
    port, proc = service
    proc.send_signal(signum)
    line = f"{signum.name}: the admin service has nothing to reload"
    wait_for(lambda: line in (tmp_path / "stderr").read_text() or proc.poll() is not None,
             timeout=10)
    assert proc.poll() is None, proc.returncode
    assert _answers(port)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


BAD_CHUNKS = {
    "chunk size not hex": b"zz\r\n{}\r\n0\r\n\r\n",
    "no CRLF after the chunk": b"2\r\n{}XX0\r\n\r\n",
    "chunk size overflow": b"ffffffffffffffffff\r\n",
}


@pytest.mark.parametrize("body", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
def test_a_malformed_chunk_is_named_as_such_not_as_a_bad_header(
    service: tuple[int, subprocess.Popen[str]], body: bytes
) -> None:
    # It was "the request line or a header is malformed": a client whose headers are
    # fine looked for the fault in the wrong place.
    port, _ = service
    answer = _exchange(port, b"POST /api/v1/rules HTTP/1.1\r\nHost: t\r\n"
                       b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + body)
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", answer[:300]
    error = json.loads(text)["error"]
    assert (error["code"], error["message"]) == (
        "bad_request", "malformed request: the chunked body is malformed "
        "(a chunk size, extension or end)")


async def test_a_malformed_chunk_after_the_headers_came_is_answered_at_once(
    service: tuple[int, subprocess.Popen[str]], mint_key: MintKey
) -> None:
    # aiohttp made the fault a request of its own, queued behind the one whose body
    # never ended: no answer for two minutes, then 408 "did not arrive in time".
    port, _ = service
    key = await mint_key(Role.ADMIN)
    head = (b"POST /api/v1/rules HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nAuthorization: Bearer " + key.encode() + b"\r\n\r\n")
    started = time.monotonic()
    answer = await asyncio.to_thread(_exchange_in_two, port, head, b"2\r\n{}XX0\r\n\r\n")
    assert time.monotonic() - started < 5
    first, _, text = answer.partition(b"\r\n\r\n")
    assert first.split(b" ", 2)[1] == b"400", answer[:300]
    assert b"Connection: close" in first
    error = json.loads(text)["error"]  # one answer, to the one request sent
    assert error["message"] == ("malformed request: the chunked body is malformed "
                                "(a chunk size, extension or end)")
    assert _answers(port)


def test_a_malformed_chunk_after_a_refusal_is_no_error_in_the_log(
    service: tuple[int, subprocess.Popen[str]], tmp_path: Path
) -> None:
    # Refused (no key) while its body came: the bad chunk met aiohttp reading the rest
    # of that body, where it was logged at ERROR as an unhandled exception.
    port, proc = service
    head = (b"POST /api/v1/rules HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n")
    answer = _exchange_in_two(port, head, b"zz\r\n")
    assert answer.split(b" ", 2)[1] == b"401", answer[:300]
    assert _answers(port)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    log = (tmp_path / "stderr").read_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


CODINGS = {"br": b"br", "zstd": b"zstd", "deflate that is not": b"deflate"}
API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.mark.parametrize("coding", CODINGS.values(), ids=CODINGS.keys())
def test_a_body_the_service_cannot_decode_is_named(
    service: tuple[int, subprocess.Popen[str]], coding: bytes
) -> None:
    # It was "the request line or a header is malformed", for a well-formed header.
    port, _ = service
    answer = _exchange(port, b"POST /api/v1/rules HTTP/1.1\r\nHost: t\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                       b"Content-Encoding: " + coding + b"\r\n\r\n{}")
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", answer[:300]
    assert json.loads(text)["error"]["message"] == (
        "malformed request: the body does not decode as its Content-Encoding says "
        "(only gzip and deflate are decoded)")
    # docs/api.md said a Content-Encoding other than gzip or deflate was a 415.
    row = next(line for line in API_DOC.read_text().splitlines() if line.startswith("| 400 |"))
    assert f"`{coding.decode()}`" in row


def test_a_reload_signal_as_the_settings_are_read_stops_nothing(
    database_url: str, tmp_path: Path
) -> None:
    """SIGHUP in the service's first second (its imports, its settings, the database),
    before its handlers were in place, ended it for good (an exit systemd counts as
    clean). The settings file is a FIFO, so the signal comes while it is read."""
    port, fifo, stderr = free_port(), tmp_path / "admin.yaml", tmp_path / "stderr"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWARDEN_")}
    with stderr.open("w") as told:
        proc = subprocess.Popen([sys.executable, "-m", "postwarden_admin_api", "serve",
                                 "--config", str(fifo)], env=env, stdout=subprocess.DEVNULL,
                                stderr=told, text=True)
    try:
        writer = wait_for(lambda: _writer(fifo) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, stderr.read_text()  # else writer is True
        proc.send_signal(signal.SIGHUP)
        with os.fdopen(writer, "w") as settings:
            settings.write(f"database_url: {database_url}\nlisten: 127.0.0.1:{port}\n"
                           f"secret_key: '{TEST_SECRET_KEY}'\n")
        line = "SIGHUP: the admin service has nothing to reload"
        wait_for(lambda: line in stderr.read_text() or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, f"exit {proc.returncode}: {stderr.read_text()}"
        assert _answers(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _writer(fifo: Path) -> int | None:
    """The write end of ``fifo`` once a reader opened it (None: none yet)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader yet
        return None
