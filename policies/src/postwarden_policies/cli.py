"""``postwarden-policy``: check, test and try policies from the command line.

postwarden-policy check [--strict] [--error-on CODE] [--format json] FILE_OR_DIR...
                                           load; print file:line:col errors
postwarden-policy test [--whole-set] [--strict] [--error-on CODE] [--format json] FILE_OR_DIR...
                                           run the tests: sections
postwarden-policy eval [--format json] --policy DIR --from A --to B message.eml
postwarden-policy schema                   print the JSON Schema of policy files

``check`` and ``test`` exit 0 when all is well, 1 when a test fails, 2 when the
policies do not load (as argparse does for a usage error; ``eval`` too): a CI gate
tells a broken file from a broken expectation; ``test`` exits 5 when no policy it
loaded has a test (pytest's "no tests ran"): a CI job pointed at the wrong
directory fails rather than passing with nothing run; 141 when the reader of the output
left (``| head``) and nothing failed, as a shell reports a process SIGPIPE ended. ``--format json``
prints one JSON document on stdout instead of text (testreport; eval: the
verdict, as the policy test API answers it; ``--json`` is its old name). Warnings (a
subdirectory not loaded) go with the errors and change no exit code, unless
``--strict`` (every warning) or ``--error-on CODE`` (those of that code) make them fail
the run: exit 3 where it would otherwise be 0 (as yamllint's and ansible-lint's
``--strict``, a CI gate that keeps new warnings out).

``check`` and ``test`` require the ``message:`` files of tests to exist; ``eval``
loads policies as a milter does, without. ``test`` runs each case against its
policy alone and shows where the whole loaded set takes another action;
``--whole-set`` fails a case the set breaks in anything it expects (for CI on
the directory that is deployed), and shows what.
``eval --output FILE`` writes the message as it would be delivered; for a
reject, tempfail or discard nothing is delivered: FILE is not written (one left
from an earlier run is removed) and stderr says so; a FILE that is the message
itself is refused (exit 2). The exit code is 0 either
way: it tells whether the message was evaluated, the verdict is on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .conditionformat import ADDRESS, address_hint
from .delivery import apply_edits
from .engine import as_received, evaluate_message
from .errors import WARNING_CODES, PolicyIssue, PolicyLoadError
from .facts import Envelope, client_ip_text
from .loader import load_policy_set
from .policytests import CaseResult, run_policy_tests
from .render import verdict_json, verdict_lines
from .schema import schema_text
from .testreport import (
    Loaded,
    case_failed,
    case_lines,
    case_warning_lines,
    check_document,
    check_line,
    fatal_line,
    issue_lines,
    results_document,
)
from .verdicts import NOT_DELIVERED, Verdict

PROG = "postwarden-policy"
EXIT_OK = 0
EXIT_FAILED = 1  # a test failed (eval: the message could not be read)
EXIT_NOT_LOADED = 2  # the policies do not load (check, test, eval); argparse's usage error too
EXIT_WARNINGS = 3  # check, test: all was well but for warnings --strict or --error-on fail
EXIT_NO_TESTS = 5  # test: the policies load, none has a case (pytest's "no tests ran")
EXIT_OUTPUT_FAILED = 74  # EX_IOERR (sysexits.h): the output could not be written
EXIT_READER_LEFT = 128 + 13  # as a shell reports a process SIGPIPE ended, when all was well
NULL_SENDER = "<>"


def _ip_address(value: str) -> str:
    try:
        return client_ip_text(value)
    except ValueError as exc:  # argparse would print its own text, not the problem
        raise argparse.ArgumentTypeError(str(exc)) from None


def _address(value: str) -> str:
    """local@domain, as a policy's tests: section takes envelope addresses."""
    if not re.fullmatch(ADDRESS, value):
        raise argparse.ArgumentTypeError(
            f"expected an address such as user@example.com, got {value!r}{address_hint(value)}"
        )
    return value


def _sender(value: str) -> str:
    return value if value == NULL_SENDER else _address(value)


def _path(value: str) -> str:
    """A path that is not empty: pathlib reads "" as the current directory, so a CI
    step's unset variable ("$POLICY_DIR") checked, tested or wrote there instead."""
    if not value:
        raise argparse.ArgumentTypeError("an empty path names no file (an unset variable?)")
    return value


def _load(paths: Sequence[str], *, check_samples: bool = False) -> Loaded:
    warnings: list[PolicyIssue] = []
    try:
        policy_set = load_policy_set(paths, check_samples=check_samples, warn=warnings.append)
    except PolicyLoadError as exc:  # a path it may not read or list too, among the others
        return Loaded(None, exc.in_order(), warnings)
    return Loaded(policy_set, (), warnings)


def _checked(args: argparse.Namespace) -> Loaded:
    """The named paths loaded for check and test, with the warnings that fail the run."""
    return _load(args.paths, check_samples=True).failing(args.strict, args.error_on)


def _with_warnings(code: int, loaded: Loaded) -> int:
    """``code``, or EXIT_WARNINGS where only failing warnings spoil an EXIT_OK."""
    return EXIT_WARNINGS if code == EXIT_OK and loaded.fatal else code


def _print_issues(loaded: Loaded) -> None:
    for line in issue_lines(loaded):
        print(line, file=sys.stderr)


def _print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2))


@contextlib.contextmanager
def _quiet(quiet: bool = True) -> Iterator[None]:
    """The package's log records kept from stderr, when ``quiet``: with ``--format json``
    nothing but the document is written (the engine's warnings, a rewrite that failed
    say, are in the verdicts it holds); ``test`` tells them with their case."""
    if not quiet:
        yield
        return
    package, silent = logging.getLogger(__package__), logging.NullHandler()
    propagating = package.propagate
    package.propagate = False
    package.addHandler(silent)  # else logging's last resort writes to stderr
    try:
        yield
    finally:
        package.removeHandler(silent)
        package.propagate = propagating


def _check(args: argparse.Namespace) -> int:
    with _quiet(args.format == "json"):
        loaded = _checked(args)
    args.outcome = _with_warnings(EXIT_NOT_LOADED if loaded.policy_set is None else EXIT_OK,
                                  loaded)
    if args.format == "json":
        _print_json(check_document(loaded))
    else:
        _print_issues(loaded)
        if loaded.ok and loaded.policy_set is not None:
            print(check_line(loaded.policy_set))
        elif loaded.fatal:
            print(fatal_line(loaded), file=sys.stderr)
    return int(args.outcome)


def _test(args: argparse.Namespace) -> int:
    with _quiet():
        loaded = _checked(args)
        results = run_policy_tests(loaded.policy_set) if loaded.policy_set is not None else []
    args.outcome = _with_warnings(_test_outcome(loaded, results, whole_set=args.whole_set),
                                  loaded)
    if args.format == "json":
        _print_json(results_document(loaded, results, whole_set=args.whole_set))
    else:
        _print_issues(loaded)
        for line in case_warning_lines(results):
            print(line, file=sys.stderr)
        if loaded.policy_set is not None:
            for line in case_lines(results, whole_set=args.whole_set):
                print(line)
        if loaded.fatal:
            print(fatal_line(loaded), file=sys.stderr)
    return int(args.outcome)


def _test_outcome(loaded: Loaded, results: Sequence[CaseResult], *, whole_set: bool) -> int:
    if loaded.policy_set is None:
        return EXIT_NOT_LOADED
    if not results:
        return EXIT_NO_TESTS
    failed = any(case_failed(r, whole_set=whole_set) for r in results)
    return EXIT_FAILED if failed else EXIT_OK


def _diff(before: bytes, after: bytes) -> str:
    # latin-1 maps every byte to one character, so the diff shows 8-bit content losslessly.
    old = before.decode("latin-1").splitlines(keepends=True)
    new = after.decode("latin-1").splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, "original", "delivered"))


def _eval(args: argparse.Namespace) -> int:
    loaded = _load(args.policy)
    _print_issues(loaded)
    policy_set = loaded.policy_set
    if policy_set is None:
        return EXIT_NOT_LOADED
    try:
        raw = _read_message(args.message)
    except OSError as exc:
        print(f"{args.message}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    envelope = Envelope(
        sender="" if args.sender == NULL_SENDER else args.sender,
        recipients=tuple(args.recipients),
        client_ip=args.client_ip,
        client_name=args.client_name,
        helo=args.helo,
        auth_user=args.auth_user or None,  # as the milter reads an empty {auth_authen}
    )
    with _quiet(args.format == "json"):
        verdict = evaluate_message(policy_set, as_received(raw), envelope)
        delivered = apply_edits(raw, verdict)  # in the file's own line ends
    # First: a reader of stdout that leaves (| head) must not leave an old FILE.
    written = _write_output(Path(args.output), verdict, delivered) if args.output else EXIT_OK
    args.outcome = written
    diff = _diff(raw, delivered) if args.diff else None
    if args.format == "json":
        # In the document: printed after it, the diff left no JSON a reader could parse.
        extra = {} if diff is None else {"diff": diff}
        print(json.dumps({**verdict_json(verdict), **extra}, indent=2))
    else:
        print("\n".join(verdict_lines(verdict)))
        if diff is not None:
            print(diff, end="")
    return written


def _read_message(name: str) -> bytes:
    if name != "-":
        return Path(name).read_bytes()
    if sys.stdin is None:  # started with it closed (<&-): Python sets no stream
        raise OSError(errno.EBADF, "standard input is closed")
    return sys.stdin.buffer.read()


def _write_output(path: Path, verdict: Verdict, delivered: bytes) -> int:
    """The delivered message; for one that is not delivered, no file at all, so that a
    file left from an earlier run is not taken for this one's."""
    try:
        if verdict.action in NOT_DELIVERED:
            path.unlink(missing_ok=True)
            print(f"not written: the message is not delivered ({verdict.action})", file=sys.stderr)
        else:
            path.write_bytes(delivered)
    except OSError as exc:
        print(f"{path}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_OUTPUT_FAILED
    return EXIT_OK


def _schema(_: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return EXIT_OK


def _add_format(command: argparse.ArgumentParser) -> None:
    command.add_argument("--format", choices=("text", "json"), default="text",
                         help="text (default), or one JSON document on stdout")


def add_strict_options(command: argparse.ArgumentParser) -> None:
    """--strict and --error-on CODE, for check and test (and postwarden-admin policy push)."""
    command.add_argument("--strict", action="store_true",
                         help="fail (exit 3) on any warning, as on an error")
    command.add_argument("--error-on", action="append", default=[], metavar="CODE",
                         choices=WARNING_CODES,
                         help="fail (exit 3) on warnings of this code (repeatable): "
                              + ", ".join(WARNING_CODES))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check, test and try postwarden policies, without a database or Postfix.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="load policies and report every error",
        epilog="exit codes: 0 the policies load; 2 they do not (or a usage error); "
               "3 they load with warnings --strict or --error-on fail; 74 the output "
               "could not be written")
    _add_format(check)
    add_strict_options(check)
    check.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", type=_path)
    check.set_defaults(run=_check)
    test = commands.add_parser(
        "test", help="run the tests: sections of policies",
        epilog="exit codes: 0 every case passed; 1 a case failed; 2 the policies do not "
               "load (or a usage error); 5 no tests ran: no policy loaded has a tests: "
               "section (the wrong directory?); 3 all else passed but for warnings "
               "--strict or --error-on fail; 74 the output could not be written")
    test.add_argument("--whole-set", action="store_true",
                      help="fail a case the whole loaded set gives another outcome")
    _add_format(test)
    add_strict_options(test)
    test.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", type=_path)
    test.set_defaults(run=_test)
    ev = commands.add_parser("eval", help="evaluate one message against policies")
    ev.add_argument("--policy", action="append", required=True, metavar="FILE_OR_DIR",
                    type=_path, help="policy file or directory (repeatable)")
    ev.add_argument("--from", dest="sender", required=True, metavar="ADDRESS", type=_sender,
                    help="envelope sender; <> for null")
    ev.add_argument("--to", dest="recipients", action="append", required=True, metavar="ADDRESS",
                    type=_address, help="envelope recipient (repeatable)")
    ev.add_argument("--client-ip", type=_ip_address, metavar="IP",
                    help="the SMTP client's address (IPv4 or IPv6)")
    ev.add_argument("--client-name", help="the client's reverse DNS name")
    ev.add_argument("--helo", help="the HELO/EHLO name")
    ev.add_argument("--auth-user",
                    help="SASL login name (the client authenticated; empty: it did not)")
    ev.add_argument("--diff", action="store_true", help="show what the filter changed")
    _add_format(ev)
    ev.add_argument("--json", dest="format", action="store_const", const="json",
                    help="the same as --format json (kept for scripts written before it)")
    ev.add_argument("--output", metavar="FILE", type=_path,
                    help="write the message as it would be delivered (none for reject, "
                         "tempfail, discard: FILE is removed)")
    ev.add_argument("message", type=_path, help="the .eml file, or - for standard input")
    ev.set_defaults(run=_eval)
    schema = commands.add_parser("schema", help="print the JSON Schema of policy files")
    schema.set_defaults(run=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if _output_is_the_message(args):
        parser.error("--output names the message file itself: it would be overwritten, "
                     "or removed for a message not delivered")
    if sys.stdout is None:  # started with it closed (>&-)
        return _output_failed("standard output is closed")
    with _escaping_stdout():
        return _run(args)


def _output_is_the_message(args: argparse.Namespace) -> bool:
    """Whether eval's --output is its message file (by another name or link too): the
    sample a reject would remove, a test's ``message:`` with it."""
    output, message = getattr(args, "output", None), getattr(args, "message", "-")
    if not output or message == "-":
        return False
    try:
        return os.path.samefile(output, message)
    except OSError:  # either is missing: eval tells of the message, writes the output
        return False


@contextlib.contextmanager
def _escaping_stdout() -> Iterator[None]:
    """A file name that is not UTF-8 reaches the labels as surrogate escapes, which a
    strict UTF-8 stdout (an en_US.UTF-8 locale) refuses: shown as \\udcXX, as stderr
    does, for this run (a caller of main() in-process keeps its stdout's own setting)."""
    stdout = sys.stdout
    if not isinstance(stdout, io.TextIOWrapper):
        yield
        return
    errors = stdout.errors
    stdout.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # closed meanwhile
            stdout.reconfigure(errors=errors)


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`... | head`): no traceback, and none again when Python
        # flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        # What check and test found before printing it stands: a reader that left
        # must not turn a failure into a code a script may take as harmless.
        return int(getattr(args, "outcome", EXIT_OK)) or EXIT_READER_LEFT
    except OSError as exc:  # a full disk, say: no test's outcome, and no traceback
        return _output_failed(exc.strerror or str(exc))
    return code


def _output_failed(why: str) -> int:
    print(f"{PROG}: cannot write the output: {why}", file=sys.stderr)
    return EXIT_OUTPUT_FAILED


if __name__ == "__main__":
    sys.exit(main())
