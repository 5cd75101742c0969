"""``postwarden-policy``: check, test and try policies from the command line.

postwarden-policy check FILE_OR_DIR...     load; print file:line:col errors, exit 1
postwarden-policy test [--whole-set] FILE_OR_DIR...
                                           run the tests: sections, exit 1 on a failure
postwarden-policy eval --policy DIR --from A --to B message.eml
postwarden-policy schema                   print the JSON Schema of policy files

``check`` and ``test`` require the ``message:`` files of tests to exist; ``eval``
loads policies as a milter does, without. ``test`` runs each case against its
policy alone and shows where the whole loaded set takes another action;
``--whole-set`` fails a case the set breaks in anything it expects (for CI on
the directory that is deployed), and shows what.
``eval --output FILE`` writes the message as it would be delivered; for a
reject, tempfail or discard nothing is delivered: FILE is not written (one left
from an earlier run is removed) and stderr says so. The exit code is 0 either
way: it tells whether the message was evaluated, the verdict is on stdout.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from .conditionformat import ADDRESS
from .delivery import apply_edits
from .engine import evaluate_message
from .errors import PolicyLoadError
from .facts import Envelope, client_ip_text
from .loader import load_policy_set
from .policyset import PolicySet
from .policytests import CaseResult, run_policy_tests
from .render import verdict_json, verdict_lines
from .schema import schema_text
from .verdicts import Action, Verdict

EXIT_OK = 0
EXIT_FAILED = 1
NULL_SENDER = "<>"
NOT_DELIVERED = frozenset({Action.REJECT, Action.TEMPFAIL, Action.DISCARD})


def _ip_address(value: str) -> str:
    try:
        return client_ip_text(value)
    except ValueError as exc:  # argparse would print its own text, not the problem
        raise argparse.ArgumentTypeError(str(exc)) from None


def _address(value: str) -> str:
    """local@domain, as a policy's tests: section takes envelope addresses."""
    if not re.fullmatch(ADDRESS, value):
        raise argparse.ArgumentTypeError(
            f"expected an address such as user@example.com, got {value!r}"
        )
    return value


def _sender(value: str) -> str:
    return value if value == NULL_SENDER else _address(value)


def _load(paths: Sequence[str], *, check_samples: bool = False) -> PolicySet | None:
    try:
        return load_policy_set(paths, check_samples=check_samples)
    except PolicyLoadError as exc:
        for issue in exc.in_order():
            print(issue, file=sys.stderr)
        return None
    except OSError as exc:  # a directory it may not list
        print(f"{exc.filename}: cannot read: {exc.strerror}", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    policy_set = _load(args.paths, check_samples=True)
    if policy_set is None:
        return EXIT_FAILED
    rules = sum(len(p.rules) for p in policy_set.policies)
    print(
        f"ok: {len(policy_set.policies)} policies, {rules} rules ({policy_set.content_hash[:12]})"
    )
    return EXIT_OK


def _rules(verdict: Verdict) -> str:
    return ", ".join(verdict.rules) or "(none)"


def _test(args: argparse.Namespace) -> int:
    policy_set = _load(args.paths, check_samples=True)
    if policy_set is None:
        return EXIT_FAILED
    results = run_policy_tests(policy_set)
    for result in results:
        rules = _rules(result.verdict) if result.verdict else "-"
        passed = result.passed and not (args.whole_set and result.whole_set)
        at = result.case.where[0]  # file:line: where an editor or a CI annotation goes
        print(f"{'PASS' if passed else 'FAIL'} {result.policy.source}:{at}: "
              f"{result.case.name} [rules: {rules}]")
        for problem in result.problems:
            print(f"    {problem}")
        if not passed and result.verdict and result.verdict.flags:
            # What the parser made of the message: often why no rule matched.
            print(f"    message flags: {', '.join(sorted(result.verdict.flags))}")
        for line in _whole_set_lines(result, failing=args.whole_set):
            print(line)
    differing = sum(r.other_action for r in results)
    if differing and not args.whole_set:
        print(f"{differing} case(s) get another action from the whole set "
              "(--whole-set makes that a failure)")
    failed = sum(not r.passed or bool(args.whole_set and r.whole_set) for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return EXIT_FAILED if failed else EXIT_OK


def _whole_set_lines(result: CaseResult, *, failing: bool) -> Iterator[str]:
    """The whole set's verdict and what it breaks; without ``failing`` (--whole-set) only
    another action, as a notice."""
    whole, alone = result.whole_set, result.verdict
    if whole is None or alone is None or not (failing or result.other_action):
        return
    differs = f" where this policy alone gives {alone.action}" if result.other_action else ""
    yield f"    whole set: {whole.action} [rules: {_rules(whole)}]{differs}"
    if failing:
        yield from (f"    whole set: {problem}" for problem in result.whole_set_problems)


def _diff(before: bytes, after: bytes) -> str:
    # latin-1 maps every byte to one character, so the diff shows 8-bit content losslessly.
    old = before.decode("latin-1").splitlines(keepends=True)
    new = after.decode("latin-1").splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, "original", "delivered"))


def _eval(args: argparse.Namespace) -> int:
    policy_set = _load(args.policy)
    if policy_set is None:
        return EXIT_FAILED
    try:
        raw = sys.stdin.buffer.read() if args.message == "-" else Path(args.message).read_bytes()
    except OSError as exc:
        print(f"{args.message}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    envelope = Envelope(
        sender="" if args.sender == NULL_SENDER else args.sender,
        recipients=tuple(args.recipients),
        client_ip=args.client_ip,
        client_name=args.client_name,
        helo=args.helo,
        auth_user=args.auth_user,
    )
    verdict = evaluate_message(policy_set, raw, envelope)
    delivered = apply_edits(raw, verdict)
    # First: a reader of stdout that leaves (| head) must not leave an old FILE.
    written = _write_output(Path(args.output), verdict, delivered) if args.output else EXIT_OK
    if args.json:
        print(json.dumps(verdict_json(verdict), indent=2))
    else:
        print("\n".join(verdict_lines(verdict)))
    if args.diff:
        print(_diff(raw, delivered), end="")
    return written


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
        return EXIT_FAILED
    return EXIT_OK


def _schema(_: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postwarden-policy",
        description="Check, test and try postwarden policies, without a database or Postfix.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="load policies and report every error")
    check.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    check.set_defaults(run=_check)
    test = commands.add_parser("test", help="run the tests: sections of policies")
    test.add_argument("--whole-set", action="store_true",
                      help="fail a case the whole loaded set gives another outcome")
    test.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    test.set_defaults(run=_test)
    ev = commands.add_parser("eval", help="evaluate one message against policies")
    ev.add_argument("--policy", action="append", required=True, metavar="FILE_OR_DIR",
                    help="policy file or directory (repeatable)")
    ev.add_argument("--from", dest="sender", required=True, metavar="ADDRESS", type=_sender,
                    help="envelope sender; <> for null")
    ev.add_argument("--to", dest="recipients", action="append", required=True, metavar="ADDRESS",
                    type=_address, help="envelope recipient (repeatable)")
    ev.add_argument("--client-ip", type=_ip_address, metavar="IP",
                    help="the SMTP client's address (IPv4 or IPv6)")
    ev.add_argument("--client-name", help="the client's reverse DNS name")
    ev.add_argument("--helo", help="the HELO/EHLO name")
    ev.add_argument("--auth-user", help="SASL login name (the client authenticated)")
    ev.add_argument("--diff", action="store_true", help="show what the filter changed")
    ev.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    ev.add_argument("--output", metavar="FILE",
                    help="write the message as it would be delivered (none for reject, "
                         "tempfail, discard: FILE is removed)")
    ev.add_argument("message", help="the .eml file, or - for standard input")
    ev.set_defaults(run=_eval)
    schema = commands.add_parser("schema", help="print the JSON Schema of policy files")
    schema.set_defaults(run=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`... | head`): no traceback, and none again when Python
        # flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
