"""`postwarden-store migrate`: apply the schema migrations."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import NoReturn

import asyncpg

from postwarden_policies.redact import redact

from .dsn import dsn_problem, has_password
from .errors import DatabaseReadOnly, DatabaseUrlRefused, StoreError
from .migrations import apply_migrations, migrate_pending
from .pool import connect, connecting, unreachable
from .watch import Watch


class ArgumentParser(argparse.ArgumentParser):
    """argparse's, its errors redacted: they quote what they could not take ("unrecognized
    arguments: postgresql://u:PASSWORD@db/x", a URL given without --database-url) to a
    stderr that is often a log (a CI job's, the journal). The commands' parsers."""

    def error(self, message: str) -> NoReturn:
        super().error(redact(message))


async def _migrate(dsn: str, dry_run: bool) -> int:
    watch = Watch(dsn)  # each step, its close too, given up once the server is silent
    versions, done = await watch.watching(_migrated(dsn, dry_run, watch))
    print("\n".join(f"{done} {version}" for version in versions) or "schema is current")
    return 0


async def _migrated(dsn: str, dry_run: bool, watch: Watch) -> tuple[list[str], str]:
    with connecting(dsn):
        conn = watch.conn = await connect(dsn)
    try:
        if dry_run:
            return await migrate_pending(conn, watch.step), "pending"
        return await apply_migrations(conn, watch.step), "applied"
    except asyncpg.ReadOnlySQLTransactionError:
        raise DatabaseReadOnly from None
    finally:
        watch.step("the end of its session")
        await conn.close()


def add_migrate_options(parser: argparse.ArgumentParser, database_url_help: str,
                        instead: str) -> None:
    """``--database-url`` and ``--dry-run``; where the URL comes from without
    ``--database-url`` is each command's own (``database_url_help`` says, and
    ``instead`` says where a URL with a password goes)."""

    def database_url(text: str) -> str:
        # A command line is anyone's to read (ps, /proc/PID/cmdline).
        if has_password(text):
            raise argparse.ArgumentTypeError(
                f"a password here is visible to every local user: pass the URL without "
                f"it and keep the password in ~/.pgpass (or $PGPASSFILE), or {instead}")
        return text

    parser.add_argument("--database-url", metavar="URL", type=database_url,
                        help=f"{database_url_help}; without a password, which ps would show "
                             "(it goes in ~/.pgpass)")
    parser.add_argument("--dry-run", action="store_true", help="list pending migrations only")


def migrate(database_url: str, dry_run: bool, prog: str) -> int:
    """Apply the pending migrations, or list them; 1 with one line naming what failed
    (never the URL: it holds the password), 2 when that is database_url's own options
    (invalid settings), 130 with one line after Ctrl-C."""
    try:
        return asyncio.run(_migrate(database_url, dry_run))
    except KeyboardInterrupt:
        # asyncio.run cancelled the migration under way, whose transaction rolls back.
        print(f"{prog}: interrupted: the migrations applied so far stay, none is applied "
              "in part; run migrate again for the rest", file=sys.stderr)
        return 130
    except DatabaseUrlRefused as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # every one here is the database's
        print(f"{prog}: {unreachable(exc)}", file=sys.stderr)
        return 1
    except (StoreError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # InterfaceError: asyncpg's ClientConfigurationError too (a root certificate
        # missing for sslmode=verify-full), its hint on a line of its own; no asyncpg
        # error's text names the password.
        first_line = str(exc).split("\n", 1)[0]
        print(f"{prog}: {first_line}", file=sys.stderr)
        return 1


PROG = "postwarden-store"
MIGRATE_TEXT = "apply the pending database migrations"


def _migrate_parser(parser: ArgumentParser) -> ArgumentParser:
    add_migrate_options(parser, "PostgreSQL URL (default: $POSTWARDEN_DATABASE_URL)",
                        "set the whole URL in POSTWARDEN_DATABASE_URL instead")
    return parser


def run_migrate(argv: list[str] | None = None) -> int:
    prog = f"{PROG} migrate"
    parser = _migrate_parser(ArgumentParser(prog=prog, description=MIGRATE_TEXT))
    args = parser.parse_args(argv)
    # Not a parser default: argparse would put it through --database-url's password check.
    url = args.database_url or os.environ.get("POSTWARDEN_DATABASE_URL")
    if not url:
        parser.error("no database: pass --database-url or set POSTWARDEN_DATABASE_URL")
    problem = dsn_problem(url)
    if problem is not None:
        # Not through error()'s redaction: the problem quotes nothing of the URL, and the
        # redaction made its USER:PASSWORD@HOST USER:[REDACTED]@HOST.
        parser.print_usage(sys.stderr)
        parser.exit(2, f"{prog}: error: database url: {problem}\n")
    return migrate(url, args.dry_run, prog)


USAGE = f"usage: {PROG} migrate [--database-url URL] [--dry-run]"


def _help() -> str:
    """What --help prints: the commands, as `postwarden-milter --help` lists its own."""
    parser = ArgumentParser(
        prog=PROG, usage=USAGE.removeprefix("usage: "),
        description="postwarden's database schema in PostgreSQL (the send API and the "
        "milter use it).", epilog=f"'{PROG} migrate --help' describes its options.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", prog=PROG)
    _migrate_parser(commands.add_parser("migrate", help=MIGRATE_TEXT))
    return parser.format_help()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print(_help(), end="")
        return 0
    if not args or args[0] != "migrate":
        print(USAGE, file=sys.stderr)
        return 2
    return run_migrate(args[1:])


if __name__ == "__main__":
    sys.exit(main())
