"""``postwarden-admin``: serve, migrate, keys, secrets and policy push.

    postwarden-admin [--config FILE] serve
    postwarden-admin [--config FILE] migrate
    postwarden-admin keys create --role ROLE --name NAME [--sender ADDR]... [--expires-at T]
    postwarden-admin keys list | revoke KEY_ID | rotate KEY_ID [--grace-seconds N]
    postwarden-admin secrets rotate --new-key-file FILE
    postwarden-admin policy push DIR [--url URL] [--comment TEXT] [--prune] [--dry-run]
                                     [--strict] [--error-on CODE]  (key: $POSTWARDEN_API_KEY)

``--config FILE`` goes before the command or after it (``serve --config FILE``).
``policy push`` talks to the service over HTTP and needs no ``database_url``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from postwarden_policies.cli import add_strict_options
from postwarden_policies.redact import log_to_stderr
from postwarden_policies.settings_source import (
    SettingsError,
    gather_settings,
    settings_file_argument,
)
from postwarden_policies.systemd_notify import SystemdNotifier
from postwarden_store import (
    DatabaseReadOnly,
    DatabaseUrlRefused,
    SchemaTooOld,
    StoreError,
    connect,
    connecting,
)
from postwarden_store import cli as store_cli

from . import admin_audit
from .app import create_app
from .bodies import decimal
from .context import Principal, Role
from .httpserver import serve
from .keys import (
    DEFAULT_GRACE_SECONDS,
    MAX_GRACE_SECONDS,
    AlreadyRotated,
    KeyInfo,
    allowed_sender,
    check_role_senders,
    create_key,
    database_time,
    key_expiry,
    key_name,
    list_keys,
    named_key_id,
    refuse_past_expiry,
    revoke_key,
    rotate_key,
    shown_name,
    why_not_revoked,
)
from .policy_push import PushError, push_directory
from .schema import NotMigrated, require_schema
from .secrets import (
    BadSecretKey,
    Keyring,
    SecretsError,
    parse_key_material,
    rotate_secrets,
)
from .settings import FIELDS, ServiceSettings, listen_of, load_settings, stray_variables
from .signals import release_reload_signals

PROG = "postwarden-admin"
log = logging.getLogger(__name__)
# Invalid settings: not retried by the systemd unit (RestartPreventExitStatus), which
# restarts on exit 1 (a database that is down at start) until it works.
EXIT_CONFIG = 2
CLI_ACTOR = Principal(key_id="cli", owner="cli", name=PROG, role=Role.ADMIN)
CONFIG_HELP = "YAML settings file (POSTWARDEN_<SETTING> variables win over it)"
_CONFIG_FILE = settings_file_argument()


def _sender(text: str) -> str:
    """Checked and lower-cased as the API does (keys.allowed_sender)."""
    try:
        return allowed_sender(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected an address or *@domain") from None


def _name(text: str) -> str:
    """As the API takes a key's name (keys.key_name)."""
    try:
        return key_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _expiry(text: str) -> dt.datetime:
    """As the API reads expires_at (keys.key_expiry): without an offset it is UTC,
    not this machine's time, and a year out of range is refused (year 1 was stored as
    -infinity, and `keys list` then failed on it), a time past too."""
    try:
        return key_expiry(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _grace_seconds(text: str) -> int:
    """The API's bound (keys.MAX_GRACE_SECONDS)."""
    seconds = decimal(text)
    if seconds is None or not 0 <= seconds <= MAX_GRACE_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a whole number of seconds from 0 to {MAX_GRACE_SECONDS}")
    return seconds


def _config_option() -> argparse.ArgumentParser:
    """--config after a command too; SUPPRESS, so that one not given there leaves
    the one given before the command."""
    option = argparse.ArgumentParser(add_help=False)
    option.add_argument("--config", type=_CONFIG_FILE, metavar="FILE", default=argparse.SUPPRESS,
                        help=CONFIG_HELP)
    return option


def _command(group: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
             text: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    return group.add_parser(name, help=text, description=text, parents=parents)


def _subcommands(parser: argparse.ArgumentParser, dest: str
                 ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    return parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")


def _parser() -> argparse.ArgumentParser:
    parser = store_cli.ArgumentParser(
        prog=PROG, description="postwarden admin service: the HTTP API, and the tools to "
        "set it up (migrations, API keys, the secrets key, policy deploys).")
    parser.add_argument("--config", type=_CONFIG_FILE, metavar="FILE", help=CONFIG_HELP)
    leaf = [_config_option()]
    top = _subcommands(parser, "command")
    _command(top, "serve", "run the admin service", leaf)
    migrate = _command(top, "migrate", "apply the database migrations", leaf)
    migrate.add_argument("--dry-run", action="store_true", help="list pending migrations only")

    keys = _subcommands(_command(top, "keys", "manage API keys", []), "keys_command")
    create = _command(keys, "create", "create a key and print it (the only time it is shown)",
                      leaf)
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True, type=_name)
    create.add_argument("--sender", action="append", default=[], type=_sender, metavar="ADDR",
                        help="an address (or *@domain) the key may send as; repeatable")
    create.add_argument("--expires-at", type=_expiry, metavar="TIME",
                        help="ISO 8601 time the key stops working (UTC without an offset)")
    _command(keys, "list", "list the keys: id, role, state (active, expired, revoked), "
             "expiry, name", leaf)
    _command(keys, "revoke", "revoke a key at once", leaf).add_argument(
        "key_id", type=named_key_id)
    rotate = _command(keys, "rotate", "replace a key by a new one (printed); the old one "
                      "keeps working for the grace period", leaf)
    rotate.add_argument("key_id", type=named_key_id)
    rotate.add_argument("--grace-seconds", type=_grace_seconds, default=DEFAULT_GRACE_SECONDS,
                        metavar="N", help=f"0 to {MAX_GRACE_SECONDS} "
                        f"(default: {DEFAULT_GRACE_SECONDS}, a day)")

    secrets = _subcommands(
        _command(top, "secrets", "the key that encrypts secrets at rest", []), "secrets_command")
    _command(secrets, "rotate", "re-encrypt the stored secrets under a new key",
             leaf).add_argument("--new-key-file", type=Path, required=True, metavar="FILE",
                                help="the new key: 32 bytes as hex or base64")

    policy = _subcommands(_command(top, "policy", "deploy policy files", []), "policy_command")
    push = _command(policy, "push", "check the policies of a directory as `postwarden-policy "
                    "check` does, upload them and activate them all in one change (the key: "
                    "$POSTWARDEN_API_KEY, an operator or admin key)", leaf)
    push.add_argument("directory", type=Path)
    push.add_argument("--url", help="service URL (default: http://<listen> of the settings)")
    push.add_argument("--comment")
    push.add_argument("--prune", action="store_true",
                      help="deactivate the active policies the directory does not hold (not "
                      "database-rules: the Rules API manages it); without --prune they stay "
                      "active, named in a warning")
    push.add_argument("--dry-run", action="store_true",
                      help="upload and activate nothing: show what the push would change "
                      "(the diff of each changed policy) and whether the service would take "
                      "the set (exit 1 if not); an auditor key will do")
    add_strict_options(push)  # a warning they make fatal: nothing uploaded, dry run or not
    return parser


def _key_state(info: KeyInfo, now: dt.datetime) -> str:
    """As authentication sees the key (keys.LIVE_KEY)."""
    if info.revoked_at is not None:
        return "revoked"
    if info.expires_at is not None and info.expires_at <= now:
        return "expired"
    return "active"


async def _with_db(settings: ServiceSettings, work: Callable[..., Awaitable[int]]) -> int:
    """Run ``work`` on a connection; first refuse a database never migrated (NotMigrated).
    A write refused as read-only is :class:`DatabaseReadOnly`, told as ``serve`` tells it:
    asyncpg's "cannot execute INSERT in a read-only transaction" did not say what to do."""
    dsn = settings.database_url.reveal()
    with connecting(dsn):
        conn = await connect(dsn)
    try:
        await require_schema(conn)
        return await work(conn)
    except asyncpg.ReadOnlySQLTransactionError:
        raise DatabaseReadOnly from None
    finally:
        await conn.close()


async def _keys(args: argparse.Namespace, settings: ServiceSettings) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        if args.keys_command == "list":
            # Expired by the database's clock, as authentication reads it, not this
            # machine's: a clock fast or slow here showed a working key as expired.
            now = await database_time(conn)
            for info in await list_keys(conn):
                state = _key_state(info, now)
                expiry = info.expires_at.isoformat() if info.expires_at else "-"
                print(f"{info.key_id}  {info.role:<8}  {state:<7}  expires {expiry}  "
                      f"{shown_name(info.name)}")
                # On stderr, as GET /api/v1/keys lists them: a script reads the lines above.
                for problem in info.problems:
                    print(f"warning: key {info.key_id}: {problem['field']}: "
                          f"{problem['message']}", file=sys.stderr)
            return 0
        # The change and its admin log entry in one transaction, a new key printed once
        # both are stored: no key without its entry, none printed that was not kept.
        async with conn.transaction():
            changed = await _change_key(conn, args)
            if changed is None:
                return 1
            target, summary, new_key = changed
            # Named as the API names them: a search by action finds both.
            action = {"create": "key.created", "revoke": "key.revoked",
                      "rotate": "key.rotated"}[args.keys_command]
            await admin_audit.write(conn, actor=CLI_ACTOR, address=None, action=action,
                                    target=target, summary=summary)
        if new_key is not None:
            print(new_key)
        return 0

    return await _with_db(settings, work)


async def _change_key(conn: asyncpg.Connection, args: argparse.Namespace,
                      ) -> tuple[str, dict[str, Any], str | None] | None:
    """Create, revoke or rotate as ``args`` say: the target's key id, the admin log
    summary and the new key if any; None once refused (told on stderr)."""
    if args.keys_command == "create":
        try:
            check_role_senders(Role(args.role), tuple(args.sender))
        except ValueError as exc:
            print(f"--sender: {exc}", file=sys.stderr)
            return None
        try:
            await refuse_past_expiry(conn, args.expires_at)
        except ValueError as exc:
            print(f"--expires-at: {exc}", file=sys.stderr)
            return None
        key = await create_key(conn, args.role, args.name, tuple(args.sender),
                               args.expires_at, created_by="cli")
        return key.split("_")[1], {"role": args.role, "name": args.name}, key
    if args.keys_command == "revoke":
        if not await revoke_key(conn, args.key_id):
            print(f"{args.key_id}: {await why_not_revoked(conn, args.key_id)}",
                  file=sys.stderr)
            return None
        return args.key_id, {}, None
    try:
        new = await rotate_key(conn, args.key_id, dt.timedelta(seconds=args.grace_seconds),
                               created_by="cli")
    except AlreadyRotated as rotated:
        print(f"key {args.key_id} was rotated to {rotated.successor}: rotate that "
              "one, or revoke this one to end its grace period", file=sys.stderr)
        return None
    if new is None:
        print(f"no active key {args.key_id}", file=sys.stderr)
        return None
    return args.key_id, {"new_key_id": new.split("_")[1]}, new


def _new_key(path: Path) -> bytes:
    """The key of --new-key-file; BadSecretKey naming the file (never its content)."""
    try:
        return parse_key_material(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, BadSecretKey):
        raise BadSecretKey(f"--new-key-file {path}: expected 32 bytes as 64 hex digits or "
                           "base64 (openssl rand -hex 32)") from None


async def _secrets_rotate(args: argparse.Namespace, settings: ServiceSettings) -> int:
    old = Keyring.from_settings(settings)
    new = Keyring(_new_key(args.new_key_file))

    async def work(conn: asyncpg.Connection) -> int:
        # The values and their admin log entry in one transaction, as for keys: a failed
        # entry left them re-encrypted with the command saying it failed.
        async with conn.transaction():
            count = await rotate_secrets(conn, old, new)
            await admin_audit.write(conn, actor=CLI_ACTOR, address=None,
                                    action="secrets.rotated", target=new.current_key_id,
                                    summary={"values": count})
        print(f"re-encrypted {count} value(s) under key {new.current_key_id}; "
              "now point secret_key_file at the new key")
        return 0

    return await _with_db(settings, work)


def configure_logging(level: str) -> None:
    """Every record to stderr (systemd's journal), redacted, aiohttp's own included."""
    log_to_stderr("%(asctime)s %(levelname)s %(name)s %(message)s", level)


def _push_url(args: argparse.Namespace) -> str:
    """--url, else the service at the settings' ``listen``. The push goes over HTTP:
    nothing else of the settings is read (no database_url: a CI machine has none)."""
    if args.url:
        return str(args.url)
    listen = listen_of(gather_settings(args.config, os.environ, FIELDS))
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    # listen takes an IPv6 address with or without brackets (::1:8025); a URL needs them.
    return f"http://[{host}]:{port}" if ":" in host else f"http://{listen}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":  # no handlers of theirs: the default actions (.signals)
        release_reload_signals()
    try:
        if args.command == "policy":
            return asyncio.run(push_directory(_push_url(args),
                                              os.environ.get("POSTWARDEN_API_KEY", ""),
                                              args.directory, args.comment,
                                              prune=args.prune, dry_run=args.dry_run,
                                              strict=args.strict, error_on=args.error_on))
        # serve and secrets rotate use the keys; a key file missing there (not yet
        # made, or on the service's host only) must not stop migrate or keys.
        settings = load_settings(args.config, os.environ,
                                 read_keys=args.command in ("serve", "secrets"))
        if args.command == "serve":
            configure_logging(settings.log_level.upper())
            for stray in stray_variables(os.environ):
                log.warning("%s", stray)
            notifier = SystemdNotifier.from_environment()
            asyncio.run(serve(create_app(settings), settings.listen_host, settings.listen_port,
                              notifier))
            return 0
        if args.command == "migrate":
            return store_cli.migrate(settings.database_url.reveal(), args.dry_run,
                                     f"{PROG} migrate")
        if args.command == "keys":
            return asyncio.run(_keys(args, settings))
        return asyncio.run(_secrets_rotate(args, settings))
    except SettingsError as exc:
        print(f"{PROG}: invalid settings:", *exc.problems, sep="\n  ", file=sys.stderr)
        return EXIT_CONFIG
    except DatabaseUrlRefused as exc:  # no outage: a restart does not mend it
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SchemaTooOld as exc:
        # serve's start-up check (app): the store's text names other commands than ours.
        print(f"{PROG}: database schema is missing {len(exc.pending)} migration(s) "
              f"({', '.join(exc.pending)}); run `{PROG} migrate`", file=sys.stderr)
        return 1
    except TimeoutError:  # serve's start-up statement (COMMAND_TIMEOUT): no text of its own
        print(f"{PROG}: the database gave no answer in time", file=sys.stderr)
        return 1
    except (StoreError, NotMigrated, SecretsError, PushError, OSError,
            asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # InterfaceError: asyncpg's ClientConfigurationError too (a root certificate
        # missing for sslmode=verify-full), its hint on a line of its own; no asyncpg
        # error's text names the password.
        first_line = str(exc).split("\n", 1)[0]
        print(f"{PROG}: {first_line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
