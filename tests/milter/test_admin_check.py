"""`postwarden-milter check` run as root (`sudo`, a deploy job) before the milter's first
start: it says whether the milter would start, and changes nothing. It created a
missing spool_dir, root's and mode 0700, which the milter (its own user) then could
not write: it refused to start."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from postwarden_milter.settings import LAST_GOOD_NAME
from tests.fixtures.postgres import wait_until
from tests.milter.test_process import _env, _run
from tests.milter.test_reload_unreadable import (  # noqa: F401 - a fixture
    AS_ROOT,
    MILTER,
    NOBODY,
    shared_dir,
)
from tests.test_contrib_postfix import MAIN_CF, main_cf


@pytest.mark.skipif(not AS_ROOT, reason="root runs check, the milter runs as nobody")
def test_check_as_root_leaves_the_spool_dir_to_the_milter(
    shared_dir: Path,  # noqa: F811 - the fixture
) -> None:
    env = _env(shared_dir, milter_socket=f"unix:{shared_dir}/milter.sock")
    spool = Path(env["POSTWARDEN_SPOOL_DIR"])
    checked = _run(["check"], env)
    assert checked.returncode == 0, checked.stderr
    assert not spool.exists()
    log = shared_dir / "milter.log"
    with log.open("wb") as output:
        milter = subprocess.Popen(MILTER, env=env, cwd=shared_dir, stdout=output,
                                  stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: "starting on" in log.read_text() or milter.poll() is not None,
                          timeout=30)
        assert milter.poll() is None, log.read_text()
        assert spool.stat().st_uid != 0  # the milter's own
    finally:
        milter.terminate()
        assert milter.wait(timeout=60) == 0, log.read_text()


def test_check_names_a_spool_dir_it_could_not_create(tmp_path: Path) -> None:
    """Not created is not unchecked: it must be possible to make it where it goes."""
    (tmp_path / "file").write_text("")
    env = _env(tmp_path, spool_dir=str(tmp_path / "file" / "spool"))
    result = _run(["check"], env)
    assert result.returncode == 2
    assert f"spool_dir: {str(tmp_path / 'file')!r} is not a directory" in result.stderr


def _root_file_in_spool(env: dict[str, str], name: str) -> Path:
    """The milter's (nobody's) spool_dir holding ``name``, root's and mode 0600: what a
    run by hand as root (the milter tried before its unit) leaves."""
    spool = Path(env["POSTWARDEN_SPOOL_DIR"])
    spool.mkdir(mode=0o700)
    os.chown(spool, NOBODY, NOBODY)
    (spool / name).write_text("[]")
    (spool / name).chmod(0o600)
    return spool / name


def _as_nobody(command: list[str], env: dict[str, str], cwd: Path
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MILTER, *command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.skipif(not AS_ROOT, reason="a file of root's, and the milter as nobody")
@pytest.mark.parametrize("name", ["audit-spool.jsonl", "audit-journal-0-1.jsonl",
                                  "local-retries"])
def test_a_spool_file_the_milter_cannot_write_is_named_by_check_and_the_start(
    shared_dir: Path, name: str,  # noqa: F811 - the fixture
) -> None:
    """The start failed with a traceback from the spool's replay, and check said ok; the
    local_retry_passes counts were only logged as not counted, at every pickup pass."""
    env = _env(shared_dir, milter_socket=f"unix:{shared_dir}/milter.sock")
    path = _root_file_in_spool(env, name)
    for command in (["check"], []):
        result = _as_nobody(command, env, shared_dir)
        assert result.returncode == 2, result.stderr
        assert f"spool_dir: cannot read and write {str(path)!r}" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.skipif(not AS_ROOT, reason="a file of root's, and the milter as nobody")
def test_a_last_good_set_the_milter_cannot_read_is_named_while_postgres_is_up(
    shared_dir: Path,  # noqa: F811 - the fixture
) -> None:
    """With policies from the database, a start in an outage of Postgres reads it: that
    start failed, saying the database was unreachable "and no last good set in
    spool_dir". With policy_dir it is never read, and nothing is said."""
    env = _env(shared_dir, milter_socket=f"unix:{shared_dir}/milter.sock",
               database_url="postgresql://postwarden@127.0.0.1:1/postwarden")
    path = _root_file_in_spool(env, LAST_GOOD_NAME)
    assert _as_nobody(["check"], env, shared_dir).returncode == 0
    del env["POSTWARDEN_POLICY_DIR"]
    for command in (["check"], []):
        result = _as_nobody(command, env, shared_dir)
        assert result.returncode == 2, result.stderr
        assert f"spool_dir: cannot read and write {str(path)!r}" in result.stderr


@pytest.mark.parametrize(("limit", "warned"), [("3", True), ("5", False), ("0", False)])
def test_check_warns_of_a_duplicate_filter_limit_below_max_recipients(
        tmp_path: Path, limit: str, warned: bool) -> None:
    """Postfix drops a repeated recipient only among the first duplicate_filter_limit: past
    them it delivers a mailbox listed again a copy per repeat, which the milter counts
    once. Nothing told an admin whose limit sits below a policy's max_recipients (5)."""
    postfix = tmp_path / "postfix"
    postfix.mkdir()
    (postfix / "main.cf").write_text(f"myhostname = mx.example.org\n"
                                     f"duplicate_filter_limit = {limit}\n")
    (postfix / "master.cf").write_text("")
    result = _run(["check"], {**_env(tmp_path), "MAIL_CONFIG": str(postfix)})
    assert result.returncode == 0, result.stderr
    warning = ("warning: policy main: max_recipients 5 is above Postfix's "
               "duplicate_filter_limit (3): past 3 recipients Postfix delivers a repeated "
               "one again, which the milter counts once; set duplicate_filter_limit to 5 or "
               "more (or 0)")
    assert (warning in result.stderr.splitlines()) == warned, result.stderr


@pytest.mark.parametrize(("macros", "warned"), [
    ("j {daemon_name} {daemon_addr} v _", True),
    ("j {daemon_name} {daemon_addr} {daemon_port} v _", False),
])
def test_check_warns_of_xclient_without_the_daemon_port_macro(
        tmp_path: Path, macros: str, warned: bool) -> None:
    """An upgrade keeps main.cf: without {daemon_port}, a client an XCLIENT proxy names at
    localhost without its port still passes for a sendmail(1) submission, unsaid."""
    postfix = tmp_path / "postfix"
    postfix.mkdir()
    (postfix / "main.cf").write_text("myhostname = mx.example.org\n"
                                     "smtpd_authorized_xclient_hosts = 127.0.0.1\n"
                                     f"milter_connect_macros = {macros}\n")
    (postfix / "master.cf").write_text("")
    result = _run(["check"], {**_env(tmp_path), "MAIL_CONFIG": str(postfix)})
    assert result.returncode == 0, result.stderr
    assert ("warning: milter_connect_macros lacks {daemon_port}" in result.stderr) == warned


SNIPPET = main_cf(MAIN_CF.read_text())
SNIPPET_MACRO = (f"milter_mail_macros = {SNIPPET['milter_mail_macros']}\n"
                 f"milter_macro_defaults = {SNIPPET['milter_macro_defaults']}\n")


@pytest.mark.parametrize(("settings", "warned"), [
    pytest.param("", True, id="neither"),
    pytest.param(f"milter_mail_macros = {SNIPPET['milter_mail_macros']}\n", True,
                 id="the-macro-without-its-default"),
    pytest.param(SNIPPET_MACRO, False, id="the-snippets"),
    pytest.param("milter_mail_macros = i {smtputf8_enable}\n"
                 "milter_macro_defaults = {{smtputf8_enable} = $smtputf8_enable}\n", False,
                 id="braced-default"),
    pytest.param("smtputf8_enable = no\n", False, id="smtputf8-off"),
])
def test_check_warns_where_postfix_does_not_say_how_it_folds_unicode_case(
        tmp_path: Path, settings: str, warned: bool) -> None:
    """An upgrade keeps main.cf: without {smtputf8_enable}, a sendmail(1) submission to
    JÖRG@ and jörg@, one recipient to Postfix, counts two against max_recipients (5)."""
    postfix = tmp_path / "postfix"
    postfix.mkdir()
    (postfix / "main.cf").write_text("myhostname = mx.example.org\n"
                                     "compatibility_level = 3.6\n" + settings)
    (postfix / "master.cf").write_text("")
    result = _run(["check"], {**_env(tmp_path), "MAIL_CONFIG": str(postfix)})
    assert result.returncode == 0, result.stderr
    warning = "warning: milter_mail_macros or milter_macro_defaults lacks {smtputf8_enable}"
    assert (warning in result.stderr) == warned, result.stderr


_SMTPD = "smtp inet n - y - - smtpd"
_CLEANUP = "cleanup unix n - y - 0 cleanup"
_PICKUP = "pickup unix n - y 60 1 pickup"


@pytest.mark.parametrize(("master", "warned"), [
    pytest.param([f"{_SMTPD} -o smtputf8_enable=no", _CLEANUP, _PICKUP],
                 "smtputf8_enable is no for smtp/inet (smtpd) but yes for cleanup/unix (its "
                 "cleanup): the milter folds Unicode case in recipients as smtpd's says, "
                 "Postfix keeps them as cleanup's, so two differing only in case count twice "
                 "against max_recipients where Postfix delivers one",
                 id="smtpd-off"),
    pytest.param([_SMTPD, "submission inet n - y - - smtpd -o cleanup_service_name=plain",
                  _CLEANUP, "plain unix n - y - 0 cleanup", "  -o smtputf8_enable=$off"],
                 "smtputf8_enable is yes for submission/inet (smtpd) but no for plain/unix "
                 "(its cleanup): the milter folds Unicode case in recipients as smtpd's says, "
                 "Postfix keeps them as cleanup's, so two differing only in case count once "
                 "against max_recipients where Postfix delivers two",
                 id="its-own-cleanup-off"),
    pytest.param([f"{_SMTPD} -o smtputf8_enable=no", f"{_CLEANUP} -o smtputf8_enable=no"],
                 None, id="both-off"),
    pytest.param([_SMTPD, _CLEANUP, f"{_PICKUP} -o smtputf8_enable=no"], None,
                 id="no-smtpd-apart"),
])
def test_check_warns_where_smtpd_and_its_cleanup_fold_unicode_case_apart(
        tmp_path: Path, master: list[str], warned: str | None) -> None:
    """The {smtputf8_enable} macro says smtpd's value, cleanup keeps the recipients by its
    own: a master.cf override setting one apart let a client list JÖRG@ and jörg@, one
    recipient to the milter, two to Postfix, one past max_recipients (5), unsaid."""
    postfix = tmp_path / "postfix"
    postfix.mkdir()
    (postfix / "main.cf").write_text("myhostname = mx.example.org\n"
                                     "compatibility_level = 3.6\noff = no\n" + SNIPPET_MACRO)
    (postfix / "master.cf").write_text("\n".join(master) + "\n")
    result = _run(["check"], {**_env(tmp_path), "MAIL_CONFIG": str(postfix)})
    assert result.returncode == 0, result.stderr
    found = [line for line in result.stderr.splitlines() if "master.cf" in line]
    assert found == ([] if warned is None else
                     [f"warning: master.cf: {warned}; give both the same smtputf8_enable"])


@pytest.mark.parametrize(("socket", "main", "master", "told"), [
    pytest.param("unix:{queue}/postwarden/milter.sock",
                 "smtpd_milters = unix:/postwarden/milter.sock", "", None, id="chroot"),
    pytest.param("unix:{queue}/postwarden/milter.sock",
                 "smtpd_milters = unix:{queue}/postwarden/milter.sock", "", None, id="full-path"),
    pytest.param("unix:{queue}/postwarden/milter.sock",
                 "smtpd_milters = unix:/postwarden/miltr.sock", "",
                 " (they name unix:/postwarden/miltr.sock): Postfix sends it no mail; name it "
                 "there as unix:/postwarden/milter.sock", id="a-typo"),
    pytest.param("unix:{queue}/postwarden/milter.sock", "", "",
                 ": Postfix sends it no mail; name it there as unix:/postwarden/milter.sock",
                 id="none"),
    pytest.param("unix:{queue}/postwarden/milter.sock", "",
                 "submission inet n - y - - smtpd -o smtpd_milters=unix:/postwarden/milter.sock",
                 None, id="master-cf"),
    pytest.param("inet:8899@127.0.0.1",
                 "smtpd_milters = { inet:localhost:8899, connect_timeout = 10s }", "", None,
                 id="inet-any-host-name"),
    pytest.param("inet:8899@127.0.0.1",
                 "non_smtpd_milters = { inet:127.0.0.1:8898, default_action = accept }", "",
                 " (they name inet:127.0.0.1:8898): Postfix sends it no mail; name it there as "
                 "inet:127.0.0.1:8899", id="another-port"),
    pytest.param("inet:8899@192.0.2.1", "", "", None, id="may-serve-another-host"),
])
def test_check_warns_where_postfix_names_no_milter_on_its_socket(
        tmp_path: Path, socket: str, main: str, master: str, told: str | None) -> None:
    """A path or port mistyped in main.cf (or the socket named without Postfix's chroot)
    passed check: Postfix then sent the milter no mail, or deferred all of it."""
    postfix, queue = tmp_path / "postfix", tmp_path / "queue"
    postfix.mkdir()
    (queue / "postwarden").mkdir(parents=True)
    (postfix / "main.cf").write_text(f"queue_directory = {queue}\nsmtputf8_enable = no\n"
                                     + main.replace("{queue}", str(queue)) + "\n")
    (postfix / "master.cf").write_text(master + "\n")
    socket = socket.replace("{queue}", str(queue))
    result = _run(["check"], {**_env(tmp_path, milter_socket=socket), "MAIL_CONFIG": str(postfix)})
    assert result.returncode == 0, result.stderr
    found = [line for line in result.stderr.splitlines() if "smtpd_milters" in line]
    assert found == ([] if told is None else [
        "warning: main.cf: neither smtpd_milters nor non_smtpd_milters names the milter's "
        f"socket {socket}{told} (README, Adding it to Postfix)"])


@pytest.mark.skipif(not AS_ROOT, reason="a directory of root's, and the milter as nobody")
def test_a_spool_dir_of_another_user_is_named_with_whose_it_is(
    shared_dir: Path,  # noqa: F811 - the fixture
) -> None:
    """What a run by hand as root leaves (its spool_dir, root's and mode 0700): the
    milter's user was told "is not writable" alone, not that it is root's."""
    env = _env(shared_dir, milter_socket=f"unix:{shared_dir}/milter.sock")
    spool = Path(env["POSTWARDEN_SPOOL_DIR"])
    spool.mkdir(mode=0o700)
    for command in (["check"], []):
        result = _as_nobody(command, env, shared_dir)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1] == (
            f"  POSTWARDEN_SPOOL_DIR: spool_dir: {str(spool)!r} is not writable by user nobody "
            "(owner root, group root, mode 0700)")
