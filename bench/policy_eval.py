"""Policy evaluation and sanitizer benchmark.

Prints the evaluation time per message (median and p99) against a generated
1,000-rule policy for a few kinds of message, the time to parse and evaluate a
body rule that does not match the 60 KB HTML newsletter of
bench/milter_throughput.py (its text as written, then rendered as readers show
it: hidden text left out), the sanitizer's throughput
on a 60 KB HTML message that needs nh3, the time to check one already
within the allowlist (html_precheck, no nh3), and the time to redact a
100 KB sender-chosen Subject of "a-a-a-..." (what the audit row and log
lines do; Python's engine took seconds on it), and the slowest message known
of the size up to which the milter decides on libmilter's thread
(postwarden_milter.decider.INLINE_BYTES): HTML tables nested in each other,
under a body rule and the sanitizer. Bounded: a fixed number of rounds,
stopped early after DEADLINE seconds.

    .venv/bin/python bench/policy_eval.py
"""

from __future__ import annotations

import base64
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.milter_throughput import html_60k

from postwarden_milter.decider import INLINE_BYTES
from postwarden_policies import (
    Envelope,
    PolicyIssue,
    PolicySet,
    evaluate,
    load_policy_set_from_sources,
    parse_message,
    redact,
)

RULES = 1000
ROUNDS = 300
DEADLINE = 20.0  # seconds per measurement at most
ENVELOPE = Envelope(
    "someone@elsewhere.test", ("alice@example.com", "bob@example.com"), "198.51.100.7"
)
BODY_RULE = (
    "version: 1\nname: body\nrules:\n"
    "  - {name: phrase, when: {body: '(?i)wire transfer urgently'}, then: quarantine}\n"
)


def generated_policy(rules: int) -> str:
    """Realistic rule shapes; none matches the sample messages until the last one."""
    lines = ["version: 1", "name: bench", "rules:"]
    for i in range(rules):
        kind = i % 5
        lines.append(f"  - name: rule-{i}")
        if kind == 0:
            lines.append(
                f"    when: {{sender_domain: [spam{i}.test, .bulk{i}.test], size_over: 100}}"
            )
        elif kind == 1:
            lines.append(f"    when: {{subject: '(?i)lottery winner {i}'}}")
        elif kind == 2:
            lines.append(f"    when: {{attachment: {{filename: ['*.x{i}', '*.y{i}z']}}}}")
        elif kind == 3:
            lines.append(f"    when: {{client_ip: [10.{i % 250}.0.0/16, '2001:db8:{i:x}::/48']}}")
        else:
            lines.append(
                f"    when: {{header: {{X-Campaign: '^c{i}$'}}, not: {{authenticated: true}}}}"
            )
        lines.append("    then: reject")
    lines += ["  - name: tag", "    then: {add_header: {X-Scanned: 'yes'}}"]
    return "\n".join(lines) + "\n"


def mime(text: str, attachments: int) -> bytes:
    head = (
        "From: someone@elsewhere.test\r\nTo: alice@example.com\r\nSubject: Quarterly numbers\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
    )
    body = f"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    for n in range(attachments):
        data = base64.encodebytes(bytes(range(256)) * 40).decode().replace("\n", "\r\n")
        body += (
            "--B\r\nContent-Type: application/pdf\r\n"
            f'Content-Disposition: attachment; filename="r{n}.pdf"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n{data}"
        )
    return (head + body + "--B--\r\n").encode()


HOSTILE_ROW = (
    '<tr><td class="c" style="color:#333;padding:4px" onclick="t()">Item <b>bold</b> '
    '<a href="https://example.test/p?id=1">link</a> <img src="https://img.test/p.gif">'
    "<script>track()</script></td></tr>\n"
)
# The same row already within the allowlist: html_precheck proves it, nh3 never runs.
CLEAN_ROW = HOSTILE_ROW.replace(' onclick="t()"', "").replace("<script>track()</script>", "")


def html_message(size: int, row: str = HOSTILE_ROW) -> bytes:
    html = "<html><body><table>" + row * (size // len(row)) + "</table></body></html>"
    return (
        "From: news@elsewhere.test\r\nTo: bob@example.com\r\nSubject: Digest\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n"
    ).encode()


def timings(run: Callable[[], object], rounds: int = ROUNDS) -> list[float]:
    results: list[float] = []
    stop = time.perf_counter() + DEADLINE
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        results.append(time.perf_counter() - start)
        if start > stop:
            break
    return results


def report(label: str, results: list[float]) -> None:
    ordered = sorted(results)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{label:<34} median {statistics.median(ordered) * 1000:7.3f} ms   "
        f"p99 {p99 * 1000:7.3f} ms   (n={len(ordered)})"
    )


def _unsaid(_: PolicyIssue) -> None:
    """A warning of a policy made to time the sanitizer (it holds no malformed mail, its
    messages are well formed): not printed among the figures."""


def main() -> None:
    started = time.perf_counter()
    policy_set: PolicySet = load_policy_set_from_sources([("bench", generated_policy(RULES))])
    print(f"loaded {len(policy_set.enforced_rules)} rules in {time.perf_counter() - started:.2f} s")
    messages = {
        "plain text (1 KB)": mime("hello " * 150, 0),
        "3 attachments (33 KB)": mime("see attached", 3),
        "long text (200 KB)": mime("lorem ipsum dolor sit amet " * 7500, 0),
    }
    for label, raw in messages.items():
        facts = parse_message(raw, ENVELOPE)
        verdict = evaluate(policy_set, facts)
        assert verdict.rules == ("tag",), verdict.rules
        report(f"evaluate: {label}", timings(lambda f=facts: evaluate(policy_set, f)))
        report(
            f"parse+evaluate: {label}",
            timings(lambda r=raw: evaluate(policy_set, parse_message(r, ENVELOPE))),
        )

    body_rule = load_policy_set_from_sources([("body", BODY_RULE)])
    newsletter = html_60k().replace("\n", "\r\n").encode()
    assert not evaluate(body_rule, parse_message(newsletter, ENVELOPE)).rules
    # Parsed each time: a message renders its HTML once, for the first body rule.
    results = timings(lambda: evaluate(body_rule, parse_message(newsletter, ENVELOPE)))
    print(f"body rule, 60 KB HTML newsletter, no match: {statistics.median(results) * 1000:.2f} ms")

    sanitizing = load_policy_set_from_sources(
        [("s", "version: 1\nname: s\nsanitize: {html: true}\n")], warn=_unsaid
    )
    raw = html_message(60 * 1024)
    facts = parse_message(raw, ENVELOPE)
    assert evaluate(sanitizing, facts).body_changed
    results = timings(lambda: evaluate(sanitizing, facts))
    report("sanitize: 60 KB HTML", results)
    median = statistics.median(results)
    print(
        f"sanitizer throughput: {len(raw) / median / 1e6:.1f} MB/s ({median * 1000:.2f} ms/message)"
    )
    clean = parse_message(html_message(60 * 1024, CLEAN_ROW), ENVELOPE)
    assert not evaluate(sanitizing, clean).body_changed
    report("check: 60 KB HTML within allowlist", timings(lambda: evaluate(sanitizing, clean)))
    hostile = "a-" * 50_000
    report("redact: 100 KB Subject 'a-a-a-...'", timings(lambda: redact(hostile)))

    both = load_policy_set_from_sources([("both", BODY_RULE + "sanitize: {html: true}\n")],
                                        warn=_unsaid)
    nested = html_message(INLINE_BYTES, row="<table><tr><td>")
    report(f"worst known, {len(nested) // 1024} KiB: nested tables",
           timings(lambda: evaluate(both, parse_message(nested, ENVELOPE)), rounds=10))


if __name__ == "__main__":
    main()
