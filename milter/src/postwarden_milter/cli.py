"""`postwarden-milter [--config FILE]` serves; `postwarden-milter [--config FILE] check`
and `postwarden-milter [--config FILE] migrate [--database-url URL] [--dry-run]` (the
commands take --config after them too)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from postwarden_policies import (
    PoliciesError,
    PolicySet,
    gather_settings,
    load_policy_set_from_sources,
)
from postwarden_policies.settings_source import settings_file_argument
from postwarden_policies.systemd_notify import SystemdNotifier
from postwarden_store import cli as store_cli

from .app import EXIT_CONFIG, PROG, MilterProcess, run_process
from .errors import NotYet, StartupError
from .heap import keep_freed_memory, one_arena
from .journal import adopt_orphan_journals
from .logcontext import configure_logging
from .postfix_config import postfix_warnings
from .reload import NO_ACTIVE_POLICY
from .settings import (
    SETTING_NAMES,
    MilterSettings,
    Secret,
    SettingsError,
    convert,
    load_settings,
    settings_warnings,
)
from .signals import release_signals
from .spool import adopt_orphans
from .startup_checks import (
    SILENT,
    DatabaseCheck,
    claim_spool_dir,
    last_good_runs,
    no_policy_source,
    policies_refused,
    preflight,
    refuse_unresolved_hosts,
    refused_start,
)
from .supervisor import Supervisor

log = logging.getLogger(__name__)

CONFIG_HELP = "YAML settings file (default: $POSTWARDEN_CONFIG, or none)"
USAGE = "%(prog)s [-h] [--config FILE] [check | migrate [--database-url URL] [--dry-run]]"


_config_file = settings_file_argument("POSTWARDEN_CONFIG")


def _parser() -> argparse.ArgumentParser:
    parser = store_cli.ArgumentParser(
        prog=PROG, usage=USAGE,
        description="postwarden milter: check, sanitize and audit mail passing through Postfix; "
        "without a command it serves. Settings come from --config and POSTWARDEN_<SETTING> "
        "variables (which win).",
    )
    # argparse passes a default given as text through type too: the variable is checked.
    parser.add_argument("--config", type=_config_file, metavar="FILE",
                        default=os.environ.get("POSTWARDEN_CONFIG"), help=CONFIG_HELP)
    # --config after a command too; SUPPRESS, so that one not given there leaves the
    # one given before the command.
    after = store_cli.ArgumentParser(add_help=False)
    after.add_argument("--config", type=_config_file, metavar="FILE", default=argparse.SUPPRESS,
                       help=CONFIG_HELP)
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND",
                                     prog=PROG)
    text = "say whether the milter would start with these settings, without serving"
    commands.add_parser("check", parents=[after], help=text, description=text)
    text = "apply the database migrations to the settings' database_url"
    migrate_command = commands.add_parser("migrate", parents=[after], help=text,
                                          description=text)
    store_cli.add_migrate_options(
        migrate_command, "PostgreSQL URL (default: the settings' database_url)",
        "set the whole URL as database_url in --config FILE or POSTWARDEN_DATABASE_URL instead")
    return parser


def _refused(exc: SettingsError) -> int:
    print(f"{PROG}: invalid settings:", *exc.problems, sep="\n  ", file=sys.stderr)
    return EXIT_CONFIG


def _settings(config: Path | None, create_spool_dir: bool = True) -> MilterSettings | None:
    """The settings, or None once their problems are printed."""
    try:
        return load_settings(config, os.environ, create_spool_dir=create_spool_dir)
    except SettingsError as exc:
        _refused(exc)
        return None


def check(config: Path | None) -> int:
    """What start-up checks before the socket opens, for a deployment or a reload to run
    first: the settings, the policies of policy_dir, the database's schema. Exits 2 for
    what the admin must fix, 1 when a start would have no policy set yet (and exit 1)."""
    settings = _settings(config, create_spool_dir=False)
    if settings is None:
        return EXIT_CONFIG
    print(f"settings: ok ({config or 'environment only'})")
    for warning in settings_warnings(settings, os.environ):
        print(f"warning: {warning}", file=sys.stderr)
    try:
        refuse_unresolved_hosts(settings)
        found = preflight(settings)
    except StartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    policies: PolicySet | None = None  # the set a start would run, where it is known
    if found.policies is not None:
        policies = found.policies.policy_set
        print(f"policies: {len(policies.policies)} from {settings.policy_dir}, "
              f"set {policies.content_hash[:12]}")
    elif found.database is not None and found.database.active is not None:
        try:
            policies = _active_policies(settings, found.database.active)
        except PoliciesError as exc:
            print(f"{PROG}: {policies_refused(exc)}", file=sys.stderr)
            return EXIT_CONFIG
    else:
        print("policies: the set active in the database (not read: see below)")
    for warning in postfix_warnings(policies, settings.milter_socket):
        print(f"warning: {warning}", file=sys.stderr)
    database = found.database
    if database is not None and database.refusal is not None:
        print(f"{PROG}: database_url: the server refuses it ({database.refusal}); "
              f"{refused_start(_no_policy_source(settings))}", file=sys.stderr)
        return EXIT_CONFIG
    if database is not None and not database.reachable and _no_policy_source(settings):
        # A start's status (NotYet), for a deployment's gate. A reload fails too, which
        # loses nothing: the running milter could not read the database's set either.
        print(f"{PROG}: database: {_unreached(database)}, and no usable last good policy set "
              "in spool_dir; the milter would not start (exit 1) until it is back", file=sys.stderr)
        return NotYet.exit_status
    if database is not None:
        print(_database_state(database))
    return 0


def _database_state(database: DatabaseCheck) -> str:
    """A check's line on a database that refuses nothing of database_url."""
    if not database.reachable:
        return f"database: {_unreached(database)}; the milter would start and spool audit events"
    if database.read_only:  # as for an outage: a failover's end, or the admin, mends it
        return ("database: schema up to date, but it refuses writes (read-only: a standby, "
                "or default_transaction_read_only on); the milter would start and spool "
                "audit events until it takes them")
    return "database: schema up to date"


def _unreached(database: DatabaseCheck) -> str:
    """Why the schema could not be asked."""
    return SILENT if database.silent else "unreachable"


def _active_policies(settings: MilterSettings, active: list[tuple[str, str]]
                     ) -> PolicySet | None:
    """What a start would run of the policies active in the database, as it loads them,
    said; None where that is the last good set in spool_dir (the database's refused);
    PoliciesError when it could not start (they do not load, and spool_dir keeps no last
    good set to run instead)."""
    try:
        policy_set = load_policy_set_from_sources(active)
    except PoliciesError as exc:
        if not last_good_runs(settings, _warn):
            raise
        print(f"warning: {policies_refused(exc)}; the milter would start on the last good "
              "set in spool_dir", file=sys.stderr)
        print("policies: the last good set in spool_dir (the database's is refused)")
        return None
    if not policy_set.policies:
        print(f"warning: {NO_ACTIVE_POLICY}", file=sys.stderr)
    print(f"policies: {len(policy_set.policies)} active in the database, "
          f"set {policy_set.content_hash[:12]}")
    return policy_set


def _no_policy_source(settings: MilterSettings) -> bool:
    """no_policy_source, said: why spool_dir's last good set cannot run."""
    return no_policy_source(settings, _warn)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def serve(config: Path | None) -> int:
    notifier = SystemdNotifier.from_environment()  # first: no process we fork inherits it
    settings = _settings(config)
    if settings is None:
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    for warning in settings_warnings(settings, os.environ):
        log.warning("%s", warning)
    keep_freed_memory()
    one_arena()  # before any thread starts
    try:
        claim_spool_dir(settings.spool_dir)
        adopt_orphans(settings.spool_dir, settings.processes)  # no worker runs yet
        adopt_orphan_journals(settings.spool_dir, settings.processes,
                              audit_log=settings.database_url is None)
        if settings.processes == 1:
            return run_process(MilterProcess(settings, notifier))
        return Supervisor(settings, notifier).run()
    except StartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_status


def _database_url(config: Path | None, given: str | None) -> str:
    """``given`` (--database-url), else the settings' database_url; SettingsError when
    neither is usable. Of the settings only database_url is checked, as a start checks
    it (the file still is for unknown or repeated names): load_settings would create
    spool_dir as whoever migrates, and want policy_dir."""
    raw = gather_settings(config, os.environ, SETTING_NAMES)
    if given is not None:
        raw.values["database_url"], raw.sources["database_url"] = given, "--database-url"
    try:  # told without the URL: it holds the password
        url: Secret | None = convert("database_url", raw.values.get("database_url"))
    except ValueError as exc:
        raise SettingsError(raw.problem("database_url", str(exc))) from None
    if url is None:
        raise SettingsError("database_url: not set (set it in --config FILE or "
                            "POSTWARDEN_DATABASE_URL, or pass --database-url)")
    return url.reveal()


def migrate(config: Path | None, database_url: str | None, dry_run: bool) -> int:
    try:
        url = _database_url(config, database_url)
    except SettingsError as exc:
        return _refused(exc)
    return store_cli.migrate(url, dry_run, f"{PROG} migrate")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is not None:  # no handlers of ours: the default actions (.__main__)
        release_signals()
    if args.command == "check":
        return check(args.config)
    if args.command == "migrate":
        return migrate(args.config, args.database_url, args.dry_run)
    return serve(args.config)
