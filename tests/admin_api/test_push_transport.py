"""``policy push`` as a CI job meets the network: a URL written without its scheme, a
service behind a proxy's path prefix, a connection lost during the deploy, a key the
service refuses. Each is said once, naming the problem, with exit 1 (never a traceback),
and a push repeated after a lost answer finds everything in place. The service and the
database are real; a TCP relay on loopback stands for the proxy in between."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from postwarden_admin_api.context import Role
from tests.admin_api.test_policy_push_atomic import active, policies, push, write
from tests.fixtures.adminapp import MintKey

Client = TestClient[Any, Any]
DEPLOY = b"POST /api/v1/policies/deploy "


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: the tests compare the whole active set."""
    return fresh_database_url


class Relay:
    """Relays loopback TCP to the service. ``prefix``: removed from request lines, as a
    proxy publishing the service under a path does. ``drop_deploy``: the deploy request
    reaches the service, its answer never reaches the client (a proxy timing out)."""

    def __init__(self, port: int, prefix: bytes = b"", drop_deploy: bool = False) -> None:
        self.port, self.prefix, self.drop_deploy = port, prefix, drop_deploy

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        deploying = asyncio.Event()
        await asyncio.gather(self._requests(reader, up_writer, deploying),
                             self._answers(up_reader, writer, deploying))

    async def _requests(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter,
                        deploying: asyncio.Event) -> None:
        while chunk := await reader.read(65536):
            chunk = chunk.replace(b" " + self.prefix + b"/api/", b" /api/")
            if self.drop_deploy and DEPLOY in chunk:
                deploying.set()
            up.write(chunk)
            await up.drain()
        up.close()

    async def _answers(self, up: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       deploying: asyncio.Event) -> None:
        while chunk := await up.read(65536):
            if deploying.is_set():
                break  # the deploy was answered: the client never hears it
            writer.write(chunk)
            await writer.drain()
        writer.close()


@asynccontextmanager
async def relayed(relay: Relay) -> AsyncIterator[str]:
    server = await asyncio.start_server(relay.serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads a request to its end (else the close would be a reset) and answers nothing."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *([0-9]+)", head)
    await reader.readexactly(int(length[1]) if length else 0)
    writer.close()


async def test_a_url_without_its_scheme_is_named(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(tmp_path / "p", "a.yaml", "team-a", "rule-a")
    address = f"127.0.0.1:{admin_client.port}"  # as listen: is written
    assert await push(admin_client, admin_key, tmp_path / "p", "--url", address,
                      monkeypatch=monkeypatch) == 1
    assert capsys.readouterr().err == ("postwarden-admin: --url: expected the service's "
                                       "address as http://host:port or https://host:port\n")
    assert await active(admin_client, admin_key) == {}


async def test_a_url_with_a_user_is_named(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # aiohttp refused Basic credentials beside the key's header: a traceback, exit 1.
    write(tmp_path / "p", "a.yaml", "team-a", "rule-a")
    address = f"http://ci:s3cret@127.0.0.1:{admin_client.port}"
    assert await push(admin_client, admin_key, tmp_path / "p", "--url", address,
                      monkeypatch=monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.startswith("postwarden-admin: --url: give no user or password in it")
    assert "s3cret" not in err
    assert await active(admin_client, admin_key) == {}


async def test_a_key_with_a_line_end_is_pushed_and_one_no_header_carries_is_named(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A control character in the key stopped the push with aiohttp's traceback.
    write(tmp_path / "p", "a.yaml", "team-a", "rule-a")
    for broken in (f"{admin_key[:12]}\n{admin_key[12:]}", f"{admin_key[:12]} {admin_key[12:]}"):
        assert await push(admin_client, broken, tmp_path / "p", monkeypatch=monkeypatch) == 1
        err = capsys.readouterr().err
        assert err == ("postwarden-admin: POSTWARDEN_API_KEY: expected a key as keys create "
                       "prints it (pw_<key id>_<secret>), printable ASCII without spaces\n")
    assert await active(admin_client, admin_key) == {}
    # As a secret store or `cat` may give it.
    assert await push(admin_client, f"{admin_key}\n", tmp_path / "p",
                      monkeypatch=monkeypatch) == 0
    assert await active(admin_client, admin_key) == {"team-a": 1}


async def test_a_service_under_a_path_prefix_is_reached(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(tmp_path / "p", "a.yaml", "team-a", "rule-a")
    async with relayed(Relay(admin_client.port, prefix=b"/postwarden")) as url:
        assert await push(admin_client, admin_key, tmp_path / "p", "--url",
                          f"{url}/postwarden", monkeypatch=monkeypatch) == 0
    assert set(await active(admin_client, admin_key)) == {"team-a"}


async def test_an_answer_lost_during_the_deploy_says_so_and_a_second_push_settles_it(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path / "p"
    write(d, "a.yaml", "team-a", "rule-a")
    write(d, "b.yaml", "team-b", "rule-b")
    async with relayed(Relay(admin_client.port, drop_deploy=True)) as url:
        assert await push(admin_client, admin_key, d, "--url", url,
                          monkeypatch=monkeypatch) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("postwarden-admin: /api/v1/policies/deploy: Server disconnected; the deploy "
                   "may or may not have been applied: push again (unchanged files change "
                   "nothing)\n")
    deployed = await active(admin_client, admin_key)
    assert set(deployed) == {"team-a", "team-b"}  # this time it had been applied
    assert await push(admin_client, admin_key, d, monkeypatch=monkeypatch) == 0
    assert capsys.readouterr().out.count("(unchanged)") == 2
    assert await active(admin_client, admin_key) == deployed


async def test_a_service_gone_before_the_deploy_activates_nothing(
    tmp_path: Path, admin_client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(tmp_path / "p", "a.yaml", "team-a", "rule-a")
    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert await push(admin_client, admin_key, tmp_path / "p", "--url",
                          f"http://127.0.0.1:{port}", monkeypatch=monkeypatch) == 1
    assert capsys.readouterr().err == ("postwarden-admin: /api/v1/policies: Server "
                                       "disconnected; nothing was activated\n")


@pytest.mark.parametrize("role", [None, Role.AUDITOR])
async def test_a_refused_key_is_said_once(  # noqa: PLR0917 - fixtures
    tmp_path: Path, admin_client: Client, admin_key: str, mint_key: MintKey,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], role: Role | None,
) -> None:
    """Every file would be refused as the first was: one refusal, not one per file."""
    d = tmp_path / "p"
    for name in ("a", "b", "c"):
        write(d, f"{name}.yaml", f"team-{name}", f"rule-{name}")
    key = await mint_key(role) if role else admin_key[:-4] + "xxxx"
    assert await push(admin_client, key, d, monkeypatch=monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{d / 'a.yaml'}: refused ({403 if role else 401})\n")
    assert err.count(": refused (") == 1, err
    assert await policies(admin_client, admin_key) == set()
