"""contrib/systemd, checked by systemd's own tools.

No systemd runs as PID 1 here, so the units cannot be started. What can be
checked is: every directive is known and well-formed and ExecStart is
executable (``systemd-analyze verify``, ExecStart pointed at this checkout's
console scripts), the sandbox scores as hardened (``systemd-analyze security
--offline``), and the sysusers file creates the user the units run as
(``systemd-sysusers --root`` into a scratch root).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from postwarden_admin_api import cli as admin_cli
from postwarden_admin_api import httpserver, send
from postwarden_admin_api.send import relay, submit
from postwarden_admin_api.webhooks import worker
from postwarden_admin_api.webhooks.options import WebhookOptions
from postwarden_milter import cli as milter_cli
from postwarden_milter.errors import NotYet
from postwarden_milter.settings import MilterSettings
from postwarden_milter.signals import RELOAD_SIGNALS

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "contrib" / "systemd"
UNITS = sorted(SYSTEMD_DIR.glob("*.service"))
SYSUSERS = SYSTEMD_DIR / "postwarden.sysusers.conf"
INSTALLED_BIN = "/opt/postwarden/.venv/bin/"  # where contrib/systemd/README.md installs
# systemd-analyze's exposure scale is 0.0 (locked down) to 10.0; its "OK" band
# ends at 2.0, and the units score 1.2 today.
MAX_EXPOSURE = 2.0


def local_copy(unit: Path, directory: Path) -> Path:
    """The unit with ExecStart on this checkout's console scripts."""
    text = unit.read_text(encoding="utf-8")
    assert INSTALLED_BIN in text, f"{unit.name}: ExecStart no longer under {INSTALLED_BIN}"
    copy = directory / unit.name
    copy.write_text(text.replace(INSTALLED_BIN, f"{Path(sys.executable).parent}/"))
    return copy


def test_every_unit_is_checked() -> None:
    assert [u.name for u in UNITS] == ["postwarden-admin.service", "postwarden-milter.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_unit_verifies_without_a_warning(unit: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local_copy(unit, tmp_path))],
        capture_output=True, text=True, check=False,
    )
    # An unknown or misspelt directive is only a warning, with exit status 0.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_unit_is_sandboxed(unit: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(local_copy(unit, tmp_path))],
        capture_output=True, text=True, check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found is not None, result.stdout[-500:] + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_unit_is_started_once_its_main_process_says_it_is_ready(unit: Path) -> None:
    """The services say READY=1 (tests/milter/test_readiness.py,
    tests/admin_api/test_readiness.py); only the main process is heard."""
    text = unit.read_text(encoding="utf-8")
    assert re.findall(r"^(Type|NotifyAccess)=(.*)$", text, re.M) == [
        ("Type", "notify"), ("NotifyAccess", "main")]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_invalid_settings_are_not_restarted_every_two_seconds(unit: Path) -> None:
    """Restart=on-failure restarts on a database down at start (exit 1), as meant; an
    invalid setting (exit 2, both CLIs) failed the same way, every 2 s for ever (the
    admin unit has no start limit)."""
    text = unit.read_text(encoding="utf-8")
    assert re.findall(r"^RestartPreventExitStatus=(.*)$", text, re.M) == [
        str(milter_cli.EXIT_CONFIG)]
    assert admin_cli.EXIT_CONFIG == milter_cli.EXIT_CONFIG


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_a_database_not_there_yet_is_waited_for_however_long(unit: Path) -> None:
    """Both services exit 1 while the database they need at start is away or not migrated
    (milter: NotYet), and systemd restarts them every 2 s; its default start limit (5
    starts in 10 s) ended the milter's retries, leaving it down once the database came."""
    text = unit.read_text(encoding="utf-8")
    assert re.findall(r"^(StartLimitIntervalSec|Restart|RestartSec)=(.*)$", text, re.M) == [
        ("StartLimitIntervalSec", "0"), ("Restart", "on-failure"), ("RestartSec", "2s")]
    assert NotYet.exit_status not in {admin_cli.EXIT_CONFIG, milter_cli.EXIT_CONFIG}


def test_the_sysusers_file_creates_the_user_the_units_run_as(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, check=True
    )
    passwd = (tmp_path / "etc" / "passwd").read_text(encoding="utf-8").splitlines()
    entry = next(line for line in passwd if line.startswith("postwarden:"))
    name, _, uid, _, _, home, shell = entry.split(":")
    assert int(uid) < 1000  # a system user
    assert shell.endswith("nologin")
    for unit in UNITS:
        text = unit.read_text(encoding="utf-8")
        assert f"\nUser={name}\n" in text and f"\nGroup={name}\n" in text
    # The milter's spool (StateDirectory=) is the user's home.
    milter = (SYSTEMD_DIR / "postwarden-milter.service").read_text(encoding="utf-8")
    state = re.search(r"^StateDirectory=(\S+)$", milter, re.MULTILINE)
    assert state is not None and home == f"/var/lib/{state.group(1)}"
    # The socket's group (see test_postfix_joins_the_socket_group_alone) is made too,
    # apart from the user's own.
    groups = dict(line.split(":")[:3:2]
                  for line in (tmp_path / "etc" / "group").read_text().splitlines())
    socket_group = _socket_directory()[1]
    assert socket_group in groups and groups[socket_group] != groups[name]


CONTRIB = SYSTEMD_DIR.parent
README = SYSTEMD_DIR / "README.md"


def _setting(path: Path, name: str) -> str:
    """A top-level setting of a contrib example file, commented out or not."""
    found = re.search(rf"^#? ?{name}\s*[:=]\s*\"?([^\"\s]+)\"?\s*$", path.read_text(), re.M)
    assert found is not None, f"{path.name}: no {name}"
    return found.group(1)


def test_the_install_steps_make_the_virtualenv_on_debians_python() -> None:
    """A virtualenv's python links to the interpreter it was made with. The steps said
    `python3 -m venv`: where the python3 first in PATH was pyenv's, under /root, the
    units (ProtectHome=yes) could not run it, and failed at ExecStart."""
    makefile = (CONTRIB.parent / "Makefile").read_text(encoding="utf-8")
    system_python = re.search(r"^SYSTEM_PYTHON \?= (\S+)$", makefile, re.M)
    assert system_python is not None
    made = [found[1] for line in _steps()
            if (found := re.match(r"(\S+) -m venv \"\$release\"", line))]
    assert made == [system_python[1]]
    assert not made[0].startswith(("/root/", "/home/"))
    for unit in UNITS:
        assert "\nProtectHome=yes\n" in unit.read_text(encoding="utf-8")


def test_the_install_steps_build_the_package_from_a_clean_build_directory() -> None:
    """`pip install .` has setuptools copy the package into the checkout's build/lib and
    leave it there; the next version's install (an upgrade, from the same checkout after
    `git pull`) took what that still held: a module or migration file the new version
    removed or renamed went into the new release."""
    installs = [line for line in _steps() if re.search(r"\bpip\" install \.$", line)]
    assert installs and all(re.search(r"\brm -rf build && \S+pip\" install \.$", line)
                            for line in installs), installs


def test_the_install_steps_create_the_policy_dir_the_example_names() -> None:
    """The milter refuses to start when policy_dir is not a directory."""
    policy_dir = _setting(CONTRIB / "postwarden.example.yaml", "policy_dir")
    steps = README.read_text(encoding="utf-8")
    assert re.search(rf"^install -d .*{re.escape(policy_dir)}$", steps, re.M)
    assert re.search(rf"^cp -R policies/examples/\. {re.escape(policy_dir)}/", steps, re.M)


def test_one_postfix_log_path_everywhere() -> None:
    """Postfix's maillog_file, the admin service's maillog_path and the ACL name
    one file; /var/log/mail.log (syslog's: any local user writes there) is not
    what the steps follow."""
    maillog = _setting(CONTRIB / "postfix" / "main.cf.snippet", "maillog_file")
    assert _setting(CONTRIB / "postwarden-admin.example.yaml", "maillog_path") == maillog
    steps = README.read_text(encoding="utf-8")
    assert f"setfacl -m u:postwarden:r {maillog}" in steps
    assert f"maillog_path: {maillog}" in steps
    for path in [README, CONTRIB / "postfix" / "README.md",
                 CONTRIB / "postwarden-admin.example.yaml", *UNITS]:
        for line in path.read_text(encoding="utf-8").splitlines():
            assert not re.search(r"(grep|setfacl|maillog_path).*/var/log/mail\.log", line), (
                f"{path.name}: {line}")


MILTER_UNIT = SYSTEMD_DIR / "postwarden-milter.service"
POSTFIX_JOINS = re.compile(r"usermod -a -G (\S+) postfix\b")


def _steps() -> list[str]:
    """The command lines of the README's code blocks, without their comments."""
    blocks = re.findall(r"^```\n(.*?)^```$", README.read_text(encoding="utf-8"), re.M | re.S)
    return [line.partition("#")[0].strip() for block in blocks for line in block.splitlines()]


def _socket_directory() -> tuple[str, str, int]:
    """(path, group, mode) of the milter socket's directory as the install steps make it."""
    socket = _setting(CONTRIB / "postwarden.example.yaml", "milter_socket").removeprefix("unix:")
    directory = str(PurePosixPath(socket).parent)
    made = [found for line in _steps() if (found := re.fullmatch(
        rf"install -d -m (\d+) -o postwarden -g (\S+) {re.escape(directory)}", line))]
    assert len(made) == 1, f"no single install step makes {directory}"
    return directory, made[0][2], int(made[0][1], 8)


def _groups_given(path: str, steps: list[str]) -> set[str]:
    """The groups ``steps`` give ``path`` (install -g, chgrp, chown :GROUP)."""
    groups = set()
    for line in steps:
        if not line.endswith(f" {path}") and f" {path} " not in line and f" {path})" not in line:
            continue
        groups |= set(re.findall(r"^install .*-g (\S+) ", line))
        groups |= set(re.findall(r"chgrp (\S+) ", line))
        groups |= set(re.findall(r"chown \S*:(\S+) ", line))
    return groups


def test_postfix_joins_the_socket_group_alone() -> None:
    """Postfix's daemons (internet-facing, user postfix) get the milter's socket and
    nothing else: their group is not the one that reads the settings and the secret
    key, and no group reads the database password. Postfix in the postwarden group
    read /etc/postwarden/environment and secret.key."""
    steps = _steps()
    directory, socket_group, mode = _socket_directory()
    joined = {found[1] for line in steps if (found := POSTFIX_JOINS.search(line))}
    assert joined == {socket_group}
    assert socket_group != "postwarden"
    # setgid: the socket libmilter creates takes the directory's group, which
    # milter_socket_mode (0660) lets in.
    assert mode & 0o2000 and mode & 0o050 == 0o050 and mode & 0o007 == 0
    # Secrets: the database password is root's (systemd reads EnvironmentFile as root),
    # the AES key the postwarden group's.
    environment = "/etc/postwarden/environment"
    assert f"install -m 0600 /dev/null {environment}" in steps
    assert _groups_given(environment, steps) <= {"root"}
    secret_key = _setting(CONTRIB / "postwarden-admin.example.yaml", "secret_key_file")
    assert _groups_given(secret_key, steps) == {"postwarden"}
    assert _groups_given(directory, steps) == {socket_group}


@pytest.mark.parametrize("line, group", [
    ("install -m 0640 -g postwarden /dev/null /etc/postwarden/environment", "postwarden"),
    ("(umask 027; openssl rand -hex 32 > /etc/x.key) && chgrp postwarden /etc/x.key",
     "postwarden"),
    ("chown root:adm /etc/x.key", "adm"),
])
def test_the_check_reads_the_group_a_step_gives(line: str, group: str) -> None:
    assert _groups_given(line.rsplit(maxsplit=1)[-1], [line]) == {group}


def test_the_milter_starts_before_the_postfix_daemon() -> None:
    """On Debian 12 postfix.service is a oneshot /bin/true: the daemon is its default
    instance, postfix@-.service, which is ordered before postfix.service itself, so
    Before=postfix.service alone orders nothing against it."""
    text = MILTER_UNIT.read_text(encoding="utf-8")
    before = {unit for line in re.findall(r"^Before=(.*)$", text, re.M) for unit in line.split()}
    assert {"postfix.service", "postfix@-.service"} <= before


def test_the_milters_default_spool_dir_is_writable_in_its_unit() -> None:
    """ProtectSystem=strict leaves the file system read-only but for the unit's
    StateDirectory and ReadWritePaths: a default elsewhere (/var/spool/postwarden) could
    not be created, and the milter did not start without a spool_dir setting."""
    text = MILTER_UNIT.read_text(encoding="utf-8")
    writable = [PurePosixPath(f"/var/lib/{name}")
                for line in re.findall(r"^StateDirectory=(.*)$", text, re.M)
                for name in line.split()]
    writable += [PurePosixPath(path.lstrip("-"))
                 for line in re.findall(r"^ReadWritePaths=(.*)$", text, re.M)
                 for path in line.split()]
    spool = PurePosixPath(MilterSettings().spool_dir)
    assert any(spool == place or place in spool.parents for place in writable), writable


def test_the_reload_sends_a_signal_libmilter_never_takes() -> None:
    """A reload signal libmilter's own signal thread also waits for (SIGHUP) may be taken
    by it, when sent while another is handled, and stop a single-process milter."""
    unit = (SYSTEMD_DIR / "postwarden-milter.service").read_text(encoding="utf-8")
    [sent] = re.findall(r"^ExecReload=/bin/kill -(\w+) \$MAINPID$", unit, re.MULTILINE)
    signum = signal.Signals[f"SIG{sent}"]
    assert signum in RELOAD_SIGNALS
    assert signum not in {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}  # libmilter's


ADMIN_UNIT = SYSTEMD_DIR / "postwarden-admin.service"
# Beyond the stop's own bounds: the periodic jobs' cancellation and the pool's close.
STOP_MARGIN_SECONDS = 5.0


def test_the_admin_unit_waits_for_the_longest_stop() -> None:
    """Each step of the admin service's stop is bounded, one after the other: the
    requests under way (aiohttp waits, then cancels and waits as long again), the
    webhook deliveries in flight, the relay (its grace, then a cancelled batch gives
    back its rows and QUITs), the maillog follower's last read and hand-over. At 75 s
    systemd killed a stop that took its bounds (85 s): the follower's hand-over lost,
    and the unit left failed ("timeout")."""
    longest = (2 * httpserver.SHUTDOWN_SECONDS
               + WebhookOptions().timeout_seconds + worker.STOP_MARGIN_SECONDS
               + relay.STOP_GRACE_SECONDS + relay.GIVE_BACK_SECONDS + submit.QUIT_SECONDS
               + send.FOLLOWER_STOP_SECONDS)
    [timeout] = re.findall(r"^TimeoutStopSec=(\d+)s$", ADMIN_UNIT.read_text(), re.M)
    assert longest + STOP_MARGIN_SECONDS <= int(timeout), longest


ENVIRONMENT_D_GENERATOR = Path(
    "/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator")


def test_the_environment_file_reads_the_same_in_the_shell_steps_and_in_systemd(
        tmp_path: Path) -> None:
    """The install steps source /etc/postwarden/environment with the shell (migrate, the
    first key) and the units read it with systemd. Written as the steps said
    (POSTWARDEN_DATABASE_URL=...), an & in the URL's query ended the shell's line: the
    variable was not set, and migrate said no database_url was."""
    steps = (SYSTEMD_DIR / "README.md").read_text(encoding="utf-8")
    said = re.search(r"/etc/postwarden/environment .*then add (POSTWARDEN_DATABASE_URL=\S+)",
                     steps)
    assert said is not None
    sourcing = re.search(r"^(set -a; \. /etc/postwarden/environment; set \+a)$", steps, re.M)
    assert sourcing is not None
    url = "postgresql://pw:a%2Fb@db.example/pw?sslmode=verify-full&sslrootcert=/etc/db.pem"
    line = said[1].replace("...", url)
    environment = tmp_path / "environment.d" / "50-postwarden.conf"  # systemd's own parser
    environment.parent.mkdir()
    environment.write_text(line + "\n", encoding="utf-8")
    shell = subprocess.run(
        ["sh", "-c", sourcing[1].replace("/etc/postwarden/environment", str(environment))
         + '; printf %s "$POSTWARDEN_DATABASE_URL"'],
        capture_output=True, text=True, check=True)
    assert shell.stdout == url
    if ENVIRONMENT_D_GENERATOR.exists():  # EnvironmentFile='s parser, as environment.d's
        systemd = subprocess.run([str(ENVIRONMENT_D_GENERATOR)], capture_output=True,
                                 text=True, check=True,
                                 env={"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)})
        assert f'POSTWARDEN_DATABASE_URL="{url}"' in systemd.stdout.splitlines()


def test_the_files_the_units_name_are_those_the_steps_install() -> None:
    """Followed literally, the steps leave every file a unit reads where the unit looks:
    what they install from the checkout is there, the units among it, each settings file
    a unit's command names (--config) is one they install, and its programs are the
    package's scripts."""
    installed = [(found[1], found[2]) for line in _steps() if (found := re.fullmatch(
        r"install -m \d+ (?:-g \S+ )?((?:contrib|policies)/\S+) (\S+)", line))]
    for source, _ in installed:
        assert (CONTRIB.parent / source).is_file(), source
    targets = {target for _, target in installed}
    scripts = re.findall(r"^(postwarden-\w+) = ", (CONTRIB.parent / "pyproject.toml")
                         .read_text(encoding="utf-8"), re.M)
    for unit in UNITS:
        assert (f"contrib/systemd/{unit.name}", "/etc/systemd/system/") in installed
        text = unit.read_text(encoding="utf-8")
        for program, arguments in re.findall(r"^Exec(?:Start|Reload)=(\S+)(.*)$", text, re.M):
            if program.startswith(INSTALLED_BIN):
                assert program.removeprefix(INSTALLED_BIN) in scripts, program
            for config in re.findall(r"--config (\S+)", arguments):
                assert config in targets, f"{unit.name}: no step installs {config}"
