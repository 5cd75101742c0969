"""`postwarden-milter [--config FILE]`, `postwarden-milter check [--config FILE]` and
`postwarden-milter migrate`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from postwarden_policies.systemd_notify import SystemdNotifier
from postwarden_store.cli import run_migrate

from .app import EXIT_CONFIG, PROG, MilterProcess, preflight, run_process
from .errors import StartupError
from .heap import keep_freed_memory
from .logcontext import configure_logging
from .settings import MilterSettings, SettingsError, load_settings, stray_variables
from .spool import adopt_orphans
from .supervisor import Supervisor

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="postwarden milter: check, sanitize and audit mail passing through Postfix. "
        "Settings come from --config and POSTWARDEN_<SETTING> variables (which win). "
        f"`{PROG} check` says whether the milter would start with them, without serving; "
        f"`{PROG} migrate` applies the database migrations.",
    )
    parser.add_argument("--config", type=Path, default=os.environ.get("POSTWARDEN_CONFIG"),
                        help="YAML settings file (default: $POSTWARDEN_CONFIG, or none)")
    return parser


def _settings(config: Path | None) -> MilterSettings | None:
    """The settings, or None once their problems are printed."""
    try:
        return load_settings(config, os.environ)
    except SettingsError as exc:
        print(f"{PROG}: invalid settings:", *exc.problems, sep="\n  ", file=sys.stderr)
        return None


def check(config: Path | None) -> int:
    """What start-up checks before the socket opens, for a deployment or a reload to run
    first: the settings, the policies of policy_dir, the database's schema."""
    settings = _settings(config)
    if settings is None:
        return EXIT_CONFIG
    print(f"settings: ok ({config or 'environment only'})")
    for stray in stray_variables(os.environ):
        print(f"warning: {stray}", file=sys.stderr)
    try:
        found = preflight(settings)
    except StartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if found.policies is not None:
        policy_set = found.policies.policy_set
        print(f"policies: {len(policy_set.policies)} from {settings.policy_dir}, "
              f"set {policy_set.content_hash[:12]}")
    else:
        print("policies: the set active in the database (not checked here)")
    if found.database_reachable is True:
        print("database: schema up to date")
    elif found.database_reachable is False:
        print("database: unreachable; the milter would start and spool audit events")
    return 0


def serve(config: Path | None) -> int:
    notifier = SystemdNotifier.from_environment()  # first: no process we fork inherits it
    settings = _settings(config)
    if settings is None:
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    for stray in stray_variables(os.environ):
        log.warning("%s", stray)
    keep_freed_memory()
    adopt_orphans(settings.spool_dir, settings.processes)  # no worker runs yet
    if settings.processes == 1:
        return run_process(MilterProcess(settings, notifier))
    try:
        return Supervisor(settings, notifier).run()
    except StartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["migrate"]:
        return run_migrate(args[1:], prog=f"{PROG} migrate")
    if args[:1] == ["check"]:
        return check(_parser().parse_args(args[1:]).config)
    options = _parser().parse_args(args)
    return serve(options.config)
