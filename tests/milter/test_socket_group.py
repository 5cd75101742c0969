"""The socket directory of contrib/systemd/README.md works with the real milter: owned
by the milter's user, group a socket group of its own, mode 2750. The milter, not in
that group, makes a socket of that group, mode 0660; Postfix's user reaches it
through that group alone. So
Postfix need not join the postwarden group, which reads the secret key.

Needs root: it runs the milter and the client as other users (setpriv).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postgres import wait_until
from tests.milter.test_reload import POLICY

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs processes as other users")

NOBODY = 65534  # the milter's user here; postwarden's in the unit


def _unused_gid() -> int:
    for gid in range(45000, 46000):
        try:
            grp.getgrgid(gid)
        except KeyError:
            return gid
    raise AssertionError("no unused gid in 45000-45999")


@pytest.fixture
def install_root() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="postwarden-socket-group-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


def _connects_as_postfix(path: Path, groups: list[int]) -> str:
    """Connect to ``path`` as user postfix with ``groups``: "ok" or the error's name."""
    postfix = pwd.getpwnam("postfix")
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\n"
             "except OSError as e:\n    print(type(e).__name__)\n"
             "else:\n    print('ok')\n")
    group_option = (f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups")
    result = subprocess.run(
        ["setpriv", f"--reuid={postfix.pw_uid}", f"--regid={postfix.pw_gid}", group_option,
         sys.executable, "-c", probe, str(path)],
        capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.strip()


def test_postfix_reaches_the_socket_through_the_directorys_group(install_root: Path) -> None:
    socket_gid = _unused_gid()
    policies, spool, directory = (install_root / name for name in
                                  ("policies", "spool", "postwarden"))
    policies.mkdir()
    (policies / "main.yaml").write_text(POLICY.format(name="main", limit=5))
    spool.mkdir(mode=0o700)
    os.chown(spool, NOBODY, NOBODY)
    directory.mkdir()
    os.chown(directory, NOBODY, socket_gid)
    directory.chmod(0o2750)  # install -d -m 2750 -o postwarden -g postwarden-socket
    sock = directory / "milter.sock"
    env = {"PATH": "/usr/bin:/bin", "POSTWARDEN_POLICY_DIR": str(policies),
           "POSTWARDEN_SPOOL_DIR": str(spool), "POSTWARDEN_MILTER_SOCKET": f"unix:{sock}"}
    log_path = install_root / "milter.log"
    with log_path.open("wb") as log:
        # setpriv execs: the process is the milter.
        milter = subprocess.Popen(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             sys.executable, "-m", "postwarden_milter"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: "listening on" in log_path.read_text()
                          or milter.poll() is not None, timeout=30)
        assert milter.poll() is None, log_path.read_text()
        made = sock.stat()
        assert stat.S_ISSOCK(made.st_mode)
        assert (made.st_uid, made.st_gid) == (NOBODY, socket_gid)
        assert stat.S_IMODE(made.st_mode) == 0o660  # milter_socket_mode's default
        assert _connects_as_postfix(sock, [socket_gid]) == "ok"
        assert _connects_as_postfix(sock, []) == "PermissionError"
    finally:
        milter.send_signal(signal.SIGTERM)
        try:
            milter.wait(timeout=30)
        except subprocess.TimeoutExpired:
            milter.kill()
            milter.wait(timeout=10)
