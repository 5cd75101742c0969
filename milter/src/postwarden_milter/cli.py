"""`postwarden-milter [--config FILE]` and `postwarden-milter migrate`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from postwarden_store.cli import run_migrate

from .app import EXIT_CONFIG, PROG, MilterProcess, run_process
from .errors import StartupError
from .heap import keep_freed_memory
from .logcontext import configure_logging
from .settings import SettingsError, load_settings
from .spool import adopt_orphans
from .supervisor import Supervisor


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="postwarden milter: check, sanitize and audit mail passing through Postfix. "
        "Settings come from --config and POSTWARDEN_<SETTING> variables (which win). "
        f"`{PROG} migrate` applies the database migrations.",
    )
    parser.add_argument("--config", type=Path, default=os.environ.get("POSTWARDEN_CONFIG"),
                        help="YAML settings file (default: $POSTWARDEN_CONFIG, or none)")
    return parser


def serve(config: Path | None) -> int:
    try:
        settings = load_settings(config, os.environ)
    except SettingsError as exc:
        print(f"{PROG}: invalid settings:", *exc.problems, sep="\n  ", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    keep_freed_memory()
    adopt_orphans(settings.spool_dir, settings.processes)  # no worker runs yet
    if settings.processes == 1:
        return run_process(MilterProcess(settings))
    try:
        return Supervisor(settings).run()
    except StartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["migrate"]:
        return run_migrate(args[1:], prog=f"{PROG} migrate")
    options = _parser().parse_args(args)
    return serve(options.config)
