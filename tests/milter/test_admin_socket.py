"""A unix socket the milter cannot make: the start (and ``check``, where settings alone
tell) fails with one line saying why, not just that libmilter could not open it."""

from __future__ import annotations

import getpass
import os
import subprocess
from pathlib import Path

import pytest

from postwarden_milter.settings import MAX_UNIX_SOCKET_PATH
from tests.fixtures.postgres import wait_until
from tests.milter.test_process import _env, _run, _serving
from tests.milter.test_reload_unreadable import (  # noqa: F401 - a fixture
    AS_ROOT,
    MILTER,
    shared_dir,
)


def _refused(spec: str, reason: str) -> str:
    return f"postwarden-milter: milter_socket: cannot serve on {spec}: {reason}"


@pytest.mark.parametrize(("processes", "command"), [("1", []), ("2", []), ("1", ["check"])])
def test_a_file_that_is_no_socket_is_named_and_kept(tmp_path: Path, processes: str,
                                                    command: list[str]) -> None:
    """libmilter replaces only a socket: `check` says so too (it passed, and the start
    failed)."""
    taken = tmp_path / "milter.sock"
    taken.write_text("not a socket\n")
    result = _run(command, _env(tmp_path, milter_socket=f"unix:{taken}", processes=processes))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"  POSTWARDEN_MILTER_SOCKET: milter_socket: {taken} is there and is not a socket")
    assert taken.read_text() == "not a socket\n"


def test_a_directory_at_the_socket_path_is_named(tmp_path: Path) -> None:
    taken = tmp_path / "milter.sock"
    taken.mkdir()
    result = _run(["check"], _env(tmp_path, milter_socket=f"unix:{taken}"))
    assert result.returncode == 2, result.stderr
    assert f"milter_socket: {taken} is there and is not a socket" in result.stderr


CANNOT = {"milter_socket": "milter_socket: cannot serve on",
          "metrics_listen": "metrics_listen: cannot listen on"}


@pytest.mark.parametrize(("processes", "command"), [("1", []), ("2", []), ("1", ["check"])])
@pytest.mark.parametrize(("setting", "value"), [
    ("milter_socket", "inet:8899@no-such-host.invalid"),
    ("metrics_listen", "no-such-host.invalid:9899"),
])
def test_a_host_that_does_not_resolve_is_named(tmp_path: Path, processes: str,
                                               command: list[str], setting: str,
                                               value: str) -> None:
    """`check` resolves the host as the start's bind does: it passed one that does not
    resolve, and the start failed."""
    result = _run(command, _env(tmp_path, processes=processes, **{setting: value}))
    assert result.returncode == 2, result.stderr
    told = [line for line in result.stderr.splitlines() if line.startswith("postwarden-milter:")]
    assert len(told) == 1 and told[0].startswith(
        f"postwarden-milter: {CANNOT[setting]} {value}: no-such-host.invalid does not resolve ("
    ), result.stderr


@pytest.mark.parametrize(("processes", "command"), [("1", []), ("2", []), ("1", ["check"])])
def test_a_directory_of_someone_else_is_named(shared_dir: Path,  # noqa: F811 - the fixture
                                              processes: str, command: list[str]) -> None:
    """The socket's directory is root's (0755) and the milter runs as nobody: what an
    install that skipped `install -d -o postwarden ...` meets. `check` says so too (it
    passed, and the start failed)."""
    theirs = shared_dir / "theirs"
    theirs.mkdir(mode=0o755)
    if AS_ROOT:
        os.chown(theirs, 0, 0)
    else:
        theirs.chmod(0o555)  # ours, but closed to us all the same
    spec = f"unix:{theirs}/milter.sock"
    env = _env(shared_dir, milter_socket=spec, processes=processes)
    result = subprocess.run([*MILTER, *command], env=env, cwd=shared_dir, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    # Whose it is, and who the milter runs as: a run as the wrong user tells itself.
    whose = ("by user nobody (owner root, group root, mode 0755)" if AS_ROOT else
             f"by user {getpass.getuser()} (owner {getpass.getuser()}")
    assert result.stderr.splitlines()[-1].startswith(
        f"  POSTWARDEN_MILTER_SOCKET: milter_socket: directory {theirs} is not writable "
        f"{whose}")
    assert result.stderr.endswith(": the milter creates the socket there\n")


@pytest.mark.parametrize("command", [[], ["check"]])
def test_a_path_too_long_for_a_socket_is_a_setting_problem(tmp_path: Path,
                                                           command: list[str]) -> None:
    """sun_path holds 108 bytes: libmilter refuses a longer path without a reason, and
    ``check`` passed it."""
    deep = tmp_path / ("d" * max(1, MAX_UNIX_SOCKET_PATH - len(str(tmp_path))))
    deep.mkdir()
    spec = f"unix:{deep}/milter.sock"
    result = _run(command, _env(tmp_path, milter_socket=spec))
    length = len(os.fsencode(f"{deep}/milter.sock"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "postwarden-milter: invalid settings:",
        f"  POSTWARDEN_MILTER_SOCKET: milter_socket: the path is {length} bytes long, "
        f"a unix socket's at most {MAX_UNIX_SOCKET_PATH}",
    ]


WORLD_WRITABLE = ("warning: milter_socket_mode {mode} lets every local user connect to the "
                  "milter (have it log, hold transactions, spend its CPU), not only Postfix: "
                  "use 0660 and put Postfix in the socket's group (contrib/systemd/README.md)")


OWNER_ONLY = ("warning: milter_socket_mode {mode} lets no user but the milter's connect "
              "(connecting takes write permission): Postfix, run as another, is refused and "
              "applies milter_default_action to all mail; use 0660 and put Postfix in the "
              "socket's group (contrib/systemd/README.md)")


@pytest.mark.parametrize(("mode", "warning"), [
    ("0666", WORLD_WRITABLE), ("0662", WORLD_WRITABLE), ("0777", WORLD_WRITABLE),
    # A file's mode by habit: Postfix could not connect, all its mail deferred, unsaid.
    ("0644", OWNER_ONLY), ("0600", OWNER_ONLY), ("0000", OWNER_ONLY),
    ("0660", None), ("0664", None), ("0620", None)])
def test_check_warns_of_a_socket_mode_that_lets_every_local_user_or_none_in(
        tmp_path: Path, mode: str, warning: str | None) -> None:
    """Connecting to a unix socket takes write permission: 0666 let any local user talk to
    the milter, 0644 none but the milter's own, unsaid."""
    env = _env(tmp_path, milter_socket=f"unix:{tmp_path}/milter.sock",
               milter_socket_mode=mode)
    result = _run(["check"], env)
    assert result.returncode == 0, result.stderr
    told = [line for line in result.stderr.splitlines() if "milter_socket_mode" in line]
    assert told == ([] if warning is None else [warning.format(mode=mode)])


def test_the_start_logs_a_socket_mode_that_lets_every_local_user_in(tmp_path: Path) -> None:
    env = _env(tmp_path, milter_socket=f"unix:{tmp_path}/milter.sock",
               milter_socket_mode="0666")
    log = tmp_path / "milter.log"
    with _serving(env, log) as milter:
        assert wait_until(lambda: "starting on" in log.read_text() or milter.poll() is not None,
                          timeout=30)
        milter.terminate()
        assert milter.wait(timeout=60) == 0, log.read_text()
    told = WORLD_WRITABLE.format(mode="0666").removeprefix("warning: ")
    assert f"WARNING postwarden_milter.cli [- -] {told}" in log.read_text()


def test_an_inet_socket_mode_is_not_warned_of(tmp_path: Path) -> None:
    """It is not used (a loopback port is open to every local user whatever it says)."""
    result = _run(["check"], _env(tmp_path, milter_socket_mode="0666"))
    assert result.returncode == 0 and "milter_socket_mode" not in result.stderr
