"""`postwarden-store migrate`: apply the schema migrations."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg

from .dsn import dsn_problem
from .errors import StoreError
from .migrations import apply_migrations, pending_migrations
from .pool import connect


async def _migrate(dsn: str, dry_run: bool) -> int:
    conn = await connect(dsn)
    try:
        if dry_run:
            for version in await pending_migrations(conn):
                print(f"pending {version}")
            return 0
        applied = await apply_migrations(conn)
        for version in applied:
            print(f"applied {version}")
        if not applied:
            print("schema is current")
        return 0
    finally:
        await conn.close()


def add_migrate_options(parser: argparse.ArgumentParser, database_url_help: str) -> None:
    """``--database-url`` and ``--dry-run``; where the URL comes from without
    ``--database-url`` is each command's own (``database_url_help`` says)."""
    parser.add_argument("--database-url", metavar="URL", help=database_url_help)
    parser.add_argument("--dry-run", action="store_true", help="list pending migrations only")


def migrate(database_url: str, dry_run: bool, prog: str) -> int:
    """Apply the pending migrations, or list them; 1 with one line naming what failed
    (never the URL: it holds the password)."""
    try:
        return asyncio.run(_migrate(database_url, dry_run))
    except (StoreError, OSError, asyncpg.PostgresError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def run_migrate(argv: list[str] | None = None) -> int:
    prog = "postwarden-store migrate"
    parser = argparse.ArgumentParser(prog=prog, description="apply database migrations")
    add_migrate_options(parser, "PostgreSQL URL (default: $POSTWARDEN_DATABASE_URL)")
    parser.set_defaults(database_url=os.environ.get("POSTWARDEN_DATABASE_URL"))
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("no database: pass --database-url or set POSTWARDEN_DATABASE_URL")
    problem = dsn_problem(args.database_url)
    if problem is not None:
        parser.error(f"database url: {problem}")
    return migrate(args.database_url, args.dry_run, prog)


USAGE = "usage: postwarden-store migrate [--database-url URL] [--dry-run]"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not args or args[0] != "migrate":
        print(USAGE, file=sys.stderr)
        return 2
    return run_migrate(args[1:])


if __name__ == "__main__":
    sys.exit(main())
