"""The sanitizer's budget for one message: parts each within their own budget can
still cost nh3 a tenth of a second apiece (64 KB of ``</form><ul>``), and a message of
hundreds of them minutes; ordinary newsletters stay far below it."""

from __future__ import annotations

from bench.html_shapes import ORDINARY

from postwarden_policies import sanitize
from postwarden_policies.facts import Envelope, MessageFacts
from postwarden_policies.html_cost import BUDGET, estimated_cost
from postwarden_policies.mimeparse import parse_message
from postwarden_policies.rewrite import HtmlOptions, RewritePlan, rewrite_body
from postwarden_policies.sanitizer_process import ISOLATE_CHARS
from postwarden_policies.verdicts import HtmlSanitized

PLAN = RewritePlan(strip=(), sanitize_html=HtmlOptions("keep", frozenset({"https"})))
COSTLY_PART = ("</form><ul>" * 6_000)[: 64 * 1024]  # cleaned in process: 60 ms of nh3
# Cleaned, and estimated, in a child: 40 ms of nh3.
ISOLATED_PART = "<p>x</p>" * 3000 + ("</form><ul>" * 6_000)[:44_000]
NOTICE = (("too_complex", 1),)


def _message(parts: list[str]) -> MessageFacts:
    body = "".join(f"--B\r\nContent-Type: text/html\r\n\r\n{part}\r\n" for part in parts)
    return parse_message(
        b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
        + body.encode() + b"--B--\r\n", Envelope())


def _removed(facts: MessageFacts) -> list[tuple[tuple[str, int], ...]]:
    changes = rewrite_body(facts, PLAN).changes
    assert all(isinstance(change, HtmlSanitized) for change in changes)
    return [change.removed for change in changes if isinstance(change, HtmlSanitized)]


def test_parts_past_the_message_budget_get_the_notice() -> None:
    cost = estimated_cost(COSTLY_PART.lower(), BUDGET)
    assert cost <= BUDGET  # each part alone would be cleaned
    fit = sanitize.MESSAGE_BUDGET // cost
    facts = _message([COSTLY_PART] * (fit + 3))
    removed = _removed(facts)
    assert len(removed) == fit + 3
    assert NOTICE not in removed[:fit]
    assert removed[fit:] == [NOTICE] * 3
    assert _removed(facts) == removed  # the next message has a budget of its own


def test_parts_estimated_in_a_child_count_against_the_message_budget() -> None:
    cost = estimated_cost(ISOLATED_PART.lower(), BUDGET)
    assert len(ISOLATED_PART) > ISOLATE_CHARS and cost <= BUDGET
    fit = sanitize.MESSAGE_BUDGET // cost
    removed = _removed(_message([ISOLATED_PART] * (fit + 1) + [COSTLY_PART]))
    assert NOTICE not in removed[:fit]
    assert removed[fit:] == [NOTICE] * 2


def test_an_ordinary_part_after_the_costly_ones_is_still_cleaned() -> None:
    fit = sanitize.MESSAGE_BUDGET // estimated_cost(COSTLY_PART.lower(), BUDGET)
    removed = _removed(_message([COSTLY_PART] * (fit + 1) + ["<p>hi<script>x</script>"]))
    assert removed[-2:] == [NOTICE, (("script", 1),)]


def test_an_ordinary_newsletter_of_20_parts_is_cleaned_whole() -> None:
    newsletter = dict(ORDINARY)["newsletter 60 KB"] + "<script>x</script>"  # to clean
    assert _removed(_message([newsletter] * 20)) == [(("script", 1),)] * 20
