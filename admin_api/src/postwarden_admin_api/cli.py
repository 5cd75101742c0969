"""``postwarden-admin``: serve, migrate, keys, secrets and policy push.

    postwarden-admin serve [--config FILE]
    postwarden-admin migrate [--config FILE]
    postwarden-admin keys create --role ROLE --name NAME [--sender ADDR]... [--expires-at T]
    postwarden-admin keys list | revoke KEY_ID | rotate KEY_ID [--grace-seconds N]
    postwarden-admin secrets rotate --new-key-file FILE
    postwarden-admin policy push DIR [--url URL] [--comment TEXT]   (key: $POSTWARDEN_API_KEY)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from postwarden_policies.redact import log_to_stderr
from postwarden_policies.settings_source import SettingsError
from postwarden_policies.systemd_notify import SystemdNotifier
from postwarden_store import StoreError, apply_migrations, connect

from . import admin_audit
from .app import create_app
from .context import Principal, Role
from .httpserver import serve
from .keys import create_key, list_keys, revoke_key, rotate_key
from .policy_push import PushError, push_directory
from .secrets import Keyring, SecretsError, parse_key_material, rotate_secrets
from .settings import ServiceSettings, load_settings

CLI_ACTOR = Principal(key_id="cli", name="postwarden-admin", role=Role.ADMIN)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="postwarden-admin")
    parser.add_argument("--config", type=Path, help="YAML settings file")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the admin service")
    sub.add_parser("migrate", help="apply database migrations")
    keys = sub.add_parser("keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.add_argument("--sender", action="append", default=[], help="allowed sender")
    create.add_argument("--expires-at", type=dt.datetime.fromisoformat)
    keys.add_parser("list")
    revoke = keys.add_parser("revoke")
    revoke.add_argument("key_id")
    rotate = keys.add_parser("rotate")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace-seconds", type=int, default=86400)
    secrets = sub.add_parser("secrets").add_subparsers(dest="secrets_command", required=True)
    secrets_rotate = secrets.add_parser("rotate")
    secrets_rotate.add_argument("--new-key-file", type=Path, required=True)
    policy = sub.add_parser("policy").add_subparsers(dest="policy_command", required=True)
    push = policy.add_parser("push", help="upload and activate the policies of a directory")
    push.add_argument("directory", type=Path)
    push.add_argument("--url", help="service URL (default: http://<listen>)")
    push.add_argument("--comment")
    return parser


async def _with_db(settings: ServiceSettings, work: Callable[..., Awaitable[int]]) -> int:
    conn = await connect(settings.database_url.reveal())
    try:
        return await work(conn)
    finally:
        await conn.close()


async def _keys(args: argparse.Namespace, settings: ServiceSettings) -> int:
    async def work(conn: object) -> int:
        if args.keys_command == "list":
            for info in await list_keys(conn):
                state = "revoked" if info.revoked_at else "active"
                expiry = info.expires_at.isoformat() if info.expires_at else "-"
                print(f"{info.key_id}  {info.role:<8}  {state:<7}  expires {expiry}  {info.name}")
            return 0
        if args.keys_command == "create":
            key = await create_key(conn, args.role, args.name, tuple(args.sender),
                                   args.expires_at, created_by="cli")
            target, summary = key.split("_")[1], {"role": args.role, "name": args.name}
            print(key)
        elif args.keys_command == "revoke":
            if not await revoke_key(conn, args.key_id):
                print(f"no active key {args.key_id}", file=sys.stderr)
                return 1
            target, summary = args.key_id, {}
        else:
            grace = dt.timedelta(seconds=args.grace_seconds)
            new = await rotate_key(conn, args.key_id, grace, created_by="cli")
            if new is None:
                print(f"no active key {args.key_id}", file=sys.stderr)
                return 1
            target, summary = args.key_id, {"new_key_id": new.split("_")[1]}
            print(new)
        await admin_audit.write(conn, actor=CLI_ACTOR, address=None,
                                action=f"key.{args.keys_command}", target=target, summary=summary)
        return 0

    return await _with_db(settings, work)


async def _secrets_rotate(args: argparse.Namespace, settings: ServiceSettings) -> int:
    old = Keyring.from_settings(settings)
    new_key = parse_key_material(args.new_key_file.read_text(encoding="utf-8"))
    new = Keyring(new_key)

    async def work(conn: object) -> int:
        count = await rotate_secrets(conn, old, new)
        await admin_audit.write(conn, actor=CLI_ACTOR, address=None, action="secrets.rotated",
                                target=new.current_key_id, summary={"values": count})
        print(f"re-encrypted {count} value(s) under key {new.current_key_id}; "
              "now point secret_key_file at the new key")
        return 0

    return await _with_db(settings, work)


async def _migrate(settings: ServiceSettings) -> int:
    async def work(conn: object) -> int:
        applied = await apply_migrations(conn)
        print("\n".join(f"applied {v}" for v in applied) or "schema is current")
        return 0

    return await _with_db(settings, work)


def configure_logging(level: str) -> None:
    """Every record to stderr (systemd's journal), redacted, aiohttp's own included."""
    log_to_stderr("%(asctime)s %(levelname)s %(name)s %(message)s", level)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, os.environ)
        if args.command == "serve":
            configure_logging(settings.log_level.upper())
            notifier = SystemdNotifier.from_environment()
            asyncio.run(serve(create_app(settings), settings.listen_host, settings.listen_port,
                              notifier))
            return 0
        if args.command == "policy":
            url = args.url or f"http://{settings.listen}"
            return asyncio.run(push_directory(url, os.environ.get("POSTWARDEN_API_KEY", ""),
                                              args.directory, args.comment))
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command == "keys":
            return asyncio.run(_keys(args, settings))
        return asyncio.run(_secrets_rotate(args, settings))
    except SettingsError as exc:
        print("postwarden-admin: invalid settings:", *exc.problems, sep="\n  ", file=sys.stderr)
        return 1
    except (StoreError, SecretsError, PushError, OSError) as exc:
        print(f"postwarden-admin: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
