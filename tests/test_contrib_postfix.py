"""contrib/postfix: every service that uses the milter finds its socket.

main.cf.snippet names the milter's unix socket relative to Postfix's chroot
(``unix:/postwarden/milter.sock``): Postfix resolves that path under
``queue_directory`` only in a service whose master.cf chroot column is ``y``.
A service that is not chrooted looks for ``/postwarden/milter.sock`` on the
real filesystem, never reaches the milter, and ``milter_default_action =
tempfail`` defers every message it receives. So for each master.cf entry
contrib ships or shows (live or as a commented example), and for the Debian
defaults the snippet relies on, the milter list the service uses (its own
``-o`` override, or main.cf's, with ``$name`` expanded) must name the socket
the milter listens on (``milter_socket`` in contrib/postwarden.example.yaml).
Appended to Debian's default main.cf and master.cf, the files pass Postfix's own
checks, and the send API's listener serves loopback clients alone.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from tests.fixtures.milterproc import MilterProcess
from tests.fixtures.ports import free_port
from tests.fixtures.postfix import CaptureServer, send_message

REPO = Path(__file__).resolve().parent.parent
POSTFIX_DIR = REPO / "contrib" / "postfix"
MAIN_CF = POSTFIX_DIR / "main.cf.snippet"
MASTER_CFS = [POSTFIX_DIR / "master.cf.snippet", POSTFIX_DIR / "master.cf.send-api"]
MILTER_SETTINGS = REPO / "contrib" / "postwarden.example.yaml"
QUEUE_DIRECTORY = "/var/spool/postfix"  # Debian's; a chrooted service's root
# Which milter list a daemon uses: smtpd's for SMTP, cleanup's for sendmail(1).
MILTER_PARAMETER = {"smtpd": "smtpd_milters", "cleanup": "non_smtpd_milters"}
# The entries of Debian 12's default master.cf that use main.cf's milters.
DEBIAN_DEFAULTS = """\
smtp      inet  n       -       y       -       -       smtpd
cleanup   unix  n       -       y       -       0       cleanup
"""
_TYPES = {"inet", "unix", "unix-dgram", "fifo", "pass"}
_COLUMN = re.compile(r"(?:[yn-]|\d+\??)")


@dataclass
class Entry:
    where: str
    service: str
    chroot: bool
    command: str
    options: dict[str, str] = field(default_factory=dict)


def main_cf(text: str) -> dict[str, str]:
    """``name = value`` lines (a line starting with whitespace continues one)."""
    params: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and name is not None:
            params[name] += " " + line.strip()
            continue
        name, equals, value = line.partition("=")
        assert equals, f"not a main.cf parameter: {line!r}"
        name = name.strip()
        params[name] = value.strip()
    return params


def master_entries(text: str, where: str) -> list[Entry]:
    """The entries of a master.cf file, live or shown in comments (``#`` removed):
    a line `service type private unpriv chroot wakeup maxproc command` and the
    ``-o name=value`` lines after it (``...`` stands for lines left out)."""
    entries: list[Entry] = []
    current: Entry | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip("#").strip()
        fields = line.split()
        if len(fields) >= 8 and fields[1] in _TYPES and all(
                _COLUMN.fullmatch(column) for column in fields[2:7]):
            # Since Postfix 3.0 a `-` in the chroot column means `n`.
            current = Entry(f"{where}:{number}", fields[0], fields[4] == "y", fields[7])
            entries.append(current)
        elif current is not None and line.startswith("-o "):
            name, _, value = line[3:].strip().partition("=")
            current.options[name] = value
        elif line != "..." and not line.startswith("... "):
            current = None
    return entries


def expand(value: str, params: dict[str, str]) -> str:
    """Expand ``$name``, ``${name}`` and ``$(name)`` from `params`."""
    pattern = re.compile(r"\$(?:\{(\w+)\}|\((\w+)\)|(\w+))")
    for _ in range(10):
        expanded = pattern.sub(lambda m: params.get(m[1] or m[2] or m[3], m[0]), value)
        if expanded == value:
            return value
        value = expanded
    raise AssertionError(f"{value!r}: recursive parameter")


def milter_socket() -> str:
    found = re.search(r'^milter_socket:\s*"?unix:([^"\s]+)"?\s*$',
                      MILTER_SETTINGS.read_text(), re.MULTILINE)
    assert found is not None, f"{MILTER_SETTINGS.name}: no unix milter_socket"
    return found[1]


def all_entries() -> list[Entry]:
    entries = master_entries(DEBIAN_DEFAULTS, "Debian's master.cf")
    for path in MASTER_CFS:
        entries += master_entries(path.read_text(), path.name)
    return entries


def socket_problems(entry: Entry, params: dict[str, str], socket: str) -> list[str]:
    parameter = MILTER_PARAMETER.get(entry.command)
    if parameter is None:
        return []
    milters = expand(entry.options.get(parameter, params.get(parameter, "")),
                     {**params, **entry.options})
    problems = []
    for milter in re.split(r"[\s,]+", milters.strip()):
        if not milter.startswith("unix:"):
            continue  # inet: (another milter, e.g. a DKIM signer)
        path = milter.removeprefix("unix:")
        seen = QUEUE_DIRECTORY + path if entry.chroot else path
        if seen != socket:
            problems.append(
                f"{entry.where}: {entry.service} (chroot {'y' if entry.chroot else 'n'}) "
                f"connects to {milter}, which is {seen} on the real filesystem; "
                f"the milter listens on {socket}")
    return problems


def test_the_parsers_find_the_entries() -> None:
    entries = all_entries()
    services = [(entry.where.split(":")[0], entry.service) for entry in entries]
    assert ("master.cf.send-api", "127.0.0.1:10026") in services
    assert ("master.cf.snippet", "submission") in services  # the commented example
    send_api = next(e for e in entries if e.service == "127.0.0.1:10026")
    assert send_api.command == "smtpd"
    assert send_api.options["mynetworks"] == "127.0.0.0/8"
    params = main_cf(MAIN_CF.read_text())
    assert params["smtpd_milters"].startswith("unix:")
    assert expand(params["non_smtpd_milters"], params) == params["smtpd_milters"]


def test_every_service_using_the_milter_reaches_its_socket() -> None:
    params = main_cf(MAIN_CF.read_text())
    socket = milter_socket()
    problems = [problem for entry in all_entries()
                for problem in socket_problems(entry, params, socket)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("chroot, milters, ok", [
    ("y", None, True),  # inherits unix:/postwarden/milter.sock, inside the chroot
    ("n", None, False),  # the same path on the real filesystem
    ("-", None, False),  # `-` is `n`
    ("n", "unix:/var/spool/postfix/postwarden/milter.sock", True),
    ("y", "unix:/var/spool/postfix/postwarden/milter.sock", False),  # doubled
    ("n", "inet:127.0.0.1:8899", True),
    ("n", "", True),  # no milter at all
])
def test_the_check_tells_a_chrooted_path_from_a_full_one(
        chroot: str, milters: str | None, ok: bool) -> None:
    text = f"127.0.0.1:10026 inet n - {chroot} - - smtpd\n  -o syslog_name=x\n"
    if milters is not None:
        text += f"  -o smtpd_milters={milters}\n"
    [entry] = master_entries(text, "test")
    params = {"smtpd_milters": "unix:/postwarden/milter.sock"}
    problems = socket_problems(entry, params, "/var/spool/postfix/postwarden/milter.sock")
    assert (not problems) == ok, problems


def test_the_readme_shows_the_send_api_entry_as_it_is() -> None:
    """README.md quotes the start of master.cf.send-api."""
    readme = (REPO / "README.md").read_text()
    shown = re.search(r"it starts with\n\n```\n(.*?)\n```", readme, re.DOTALL)
    assert shown is not None
    live = [line for line in (POSTFIX_DIR / "master.cf.send-api").read_text().splitlines()
            if line and not line.startswith("#")]
    lines = shown[1].splitlines()
    assert lines == live[:len(lines)]


def test_the_snippet_puts_postfix_in_the_socket_group_the_install_steps_make() -> None:
    """main.cf.snippet says how Postfix gets to the socket: by the group of the
    socket's directory (contrib/systemd/README.md), never by the postwarden group,
    which reads the secret key."""
    comment = " ".join(line.lstrip("#").strip() for line in MAIN_CF.read_text().splitlines()
                       if line.startswith("#"))
    told = set(re.findall(r"usermod -a -G (\S+) postfix\b", comment))
    directory = milter_socket().rpartition("/")[0]
    steps = (REPO / "contrib" / "systemd" / "README.md").read_text()
    made = re.search(rf"^install -d -m \d+ -o postwarden -g (\S+) {re.escape(directory)}$",
                     steps, re.MULTILINE)
    assert made is not None, f"contrib/systemd/README.md makes no {directory}"
    assert told == {made[1]} != {"postwarden"}


# Debian 12's defaults, as the postfix package installs them in /etc/postfix (this
# machine's own, never read here).
DEBIAN_MAIN_CF = Path("/usr/share/postfix/main.cf.debian")
DEBIAN_MASTER_CF = Path("/usr/share/postfix/master.cf.dist")


@pytest.fixture
def debian_with_snippets() -> Iterator[Path]:
    """A config directory holding Debian's main.cf and master.cf with main.cf.snippet
    and master.cf.send-api appended, as the READMEs say; its queue and data beside it,
    in a directory Postfix's daemons (user postfix) may reach, unlike pytest's. Root's:
    Postfix takes another directory than /etc/postfix from root alone."""
    if os.geteuid() != 0 or not DEBIAN_MAIN_CF.exists():
        pytest.skip("needs root and Debian's postfix package")
    root = Path(tempfile.mkdtemp(prefix="pw-contrib-"))
    root.chmod(0o755)
    try:
        yield _debian_config(root)
    finally:
        shutil.rmtree(root)


def _debian_config(root: Path) -> Path:
    etc, queue, data = root / "etc", root / "queue", root / "data"
    for directory in (etc, queue, data):
        directory.mkdir()
    shutil.chown(data, "postfix")
    # Its log on stdout: without a syslog here, what `postfix check` finds went nowhere.
    (etc / "main.cf").write_text(
        DEBIAN_MAIN_CF.read_text() + f"queue_directory = {queue}\n"
        f"data_directory = {data}\nmaillog_file = /dev/stdout\n" + MAIN_CF.read_text())
    (etc / "master.cf").write_text(
        DEBIAN_MASTER_CF.read_text() + (POSTFIX_DIR / "master.cf.send-api").read_text())
    return etc


def _postfix_tool(argv: list[str]) -> str:
    """What ``argv`` prints on stdout; it must say nothing on stderr (a warning: an
    unused or repeated parameter, a malformed entry)."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stdout + result.stderr
    return result.stdout


@pytest.mark.postfix
def test_the_snippets_in_debians_config_pass_postfixs_own_checks(
        debian_with_snippets: Path) -> None:
    config = str(debian_with_snippets)
    _postfix_tool(["postfix", "-c", config, "check"])
    set_here = _postfix_tool(["postconf", "-c", config, "-n"])
    assert "smtpd_milters = unix:/postwarden/milter.sock" in set_here.splitlines()
    services = _postfix_tool(["postconf", "-c", config, "-M"]).splitlines()
    [send_api] = [line.split() for line in services if line.startswith("127.0.0.1:10026 ")]
    assert send_api[1:8] == ["inet", "n", "-", "y", "-", "-", "smtpd"]


@pytest.mark.postfix
def test_the_send_listener_relays_for_loopback_clients_alone(
        debian_with_snippets: Path) -> None:
    """It listens on a loopback address, and what it takes from a client not in its
    mynetworks (loopback's) is refused, whatever main.cf's mynetworks says."""
    prefix = "127.0.0.1:10026/inet/"
    options = {name.strip(): value.strip() for line in _postfix_tool(
                   ["postconf", "-c", str(debian_with_snippets), "-P"]).splitlines()
               if line.startswith(prefix)
               for name, _, value in [line.removeprefix(prefix).partition("=")]}
    assert ipaddress.ip_network(options["mynetworks"]).subnet_of(
        ipaddress.ip_network("127.0.0.0/8"))
    for name in ("smtpd_client_restrictions", "smtpd_relay_restrictions",
                 "smtpd_recipient_restrictions"):
        assert options[name] == "permit_mynetworks,reject", name


def _postfix(config: Path, command: str) -> None:
    done = subprocess.run(["postfix", "-c", str(config), command], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.postfix
def test_mail_reaches_the_milter_through_the_snippets_in_postfixs_chroot(
        debian_with_snippets: Path) -> None:
    """Debian's smtpd, chrooted, and the send listener find the milter where the example
    settings put its socket (under the queue directory, as /var/spool/postfix), in a
    setgid directory of Postfix's group: the milter's verdict is what the client hears."""
    etc = debian_with_snippets
    root, queue = etc.parent, etc.parent / "queue"
    smtp_port, send_port = free_port(), free_port()
    capture = CaptureServer()
    # Debian's port 25 and the send listener's 10026 on free ports; mail relayed to the
    # capture server.
    master = (etc / "master.cf").read_text()
    master = master.replace("\nsmtp      inet", f"\n127.0.0.1:{smtp_port} inet", 1)
    (etc / "master.cf").write_text(master.replace("127.0.0.1:10026 ", f"127.0.0.1:{send_port} "))
    _postfix_tool(["postconf", "-c", str(etc), "-e", "myhostname=mx.postwarden.test",
                   "mydestination=", "inet_interfaces=loopback-only",
                   f"relayhost=[127.0.0.1]:{capture.port}", "smtp_dns_support_level=disabled",
                   # /dev/stdout is for `postfix start-fg` alone.
                   f"maillog_file={root / 'maillog'}", f"maillog_file_prefixes={root}"])
    socket_dir = queue / PurePosixPath(milter_socket()).relative_to(QUEUE_DIRECTORY).parent
    socket_dir.mkdir(mode=0o750)
    socket_dir.chmod(0o2750)  # contrib/systemd/README.md's, Postfix's group standing in
    shutil.chown(socket_dir, group="postfix")
    milter = MilterProcess(REPO / "policies" / "examples", unix_socket=True)
    milter.socket_path = socket_dir / "milter.sock"
    milter.env |= {"POSTWARDEN_MILTER_SOCKET": f"unix:{milter.socket_path}",
                   "POSTWARDEN_MILTER_SOCKET_MODE": "0660"}
    capture.start()
    try:
        milter.start()
        _postfix(etc, "start")
        try:
            executable = (REPO / "contrib" / "demo" / "messages" / "executable.eml").read_bytes()
            clean = (REPO / "contrib" / "demo" / "messages" / "clean.eml").read_bytes()
            for port in (smtp_port, send_port):
                refused = send_message(port, executable, "a@outside.test", ["b@example.org"])
                assert (refused.code, refused.stage) == (550, "data"), refused
                taken = send_message(port, clean, f"c{port}@outside.test", ["d@example.org"])
                assert taken.code == 250, taken
                delivered = capture.wait_for_message(
                    lambda m, port=port: m.mail_from == f"c{port}@outside.test")
                assert b"\r\nX-Postwarden-Id: " in delivered.data.split(b"\r\n\r\n", 1)[0]
        finally:
            _postfix(etc, "stop")
    finally:
        milter.destroy()
        capture.stop()
