"""The engine: message facts plus a policy set give a Verdict.

The limits are those of the message's transaction (``PolicySet.limits_for``: of the
enforce-mode policies without ``limits: when:`` or whose ``when`` holds for its
envelope); they are also the parser's caps (``PolicySet.parser_caps``).

Order of evaluation:
1. ``max_message_bytes``: a larger message is rejected with 552 5.3.4 (so is one
   that step 4's rewrite or header edits, or the caller's own header, make larger).
2. Structure: more parts than ``max_mime_parts``, nesting deeper than
   ``max_mime_depth``, or the parser's own ``too_many_parts`` / ``too_deep`` /
   ``too_many_header_fields`` flags: reject 554 5.6.0, or quarantine with
   ``on_structure_limit: quarantine`` (refused as in step 1 when its tag and the
   caller's own header make it larger than ``max_message_bytes``).
3. Rules of enforce-mode policies in order; non-terminal actions accumulate and
   the first terminal action ends evaluation (no terminal rule: accept).
   Report-mode policies are evaluated on their own and only recorded, whatever
   the enforced limits decided: each one's limits where they apply
   (``report:limit:<name>``), then its rules (``report:<rule>``).
4. A message that is delivered (accept, quarantine) then gets: recipients past
   ``max_recipients`` removed, header edits, the Subject prefix, attachments
   stripped (rules and ``max_attachment_bytes``), HTML sanitized unless a
   matched rule said ``sanitize: false``, and the X-Postwarden-Flags header
   when the parser flagged it (incoming copies of that header are removed
   whenever tagging is on, flagged or not).

Malformed messages (parser flag ``malformed``) are delivered as they are and
tagged: they are not sanitized. Attachments a rule or limit strips are still
stripped; when the rewrite cannot be done or verified (a file uuencoded in a
text part cannot be stripped or sanitized on its own) the message is
quarantined rather than delivered with what had to go.

``evaluate`` is pure and thread-safe (nothing shared is mutated) and never
raises: an internal error gives a tempfail verdict (451 4.3.0), and so does HTML
that could not be sanitized for want of a sanitizer child: none came free in time,
or they refuse to run because the package was upgraded under this process.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace

from .conditions import MatchInput
from .facts import Envelope, MessageFacts
from .headeredits import header_edits
from .mimeparse import parse_message
from .model import Limits, Policy, Rule, StructureAction
from .policyset import PARSER_MAX_DEPTH, PARSER_MAX_PARTS, PolicySet, limits_apply
from .rewrite import RewriteError, RewritePlan, RewriteResult, rewrite_body
from .sanitizer_process import SanitizerBusy, SanitizerCodeChanged
from .verdicts import (
    Accept,
    Action,
    AddHeader,
    ChangeHeader,
    Decision,
    DeleteRecipient,
    Discard,
    Edit,
    Quarantine,
    Reject,
    ReplaceBody,
    Reply,
    TempFail,
    Verdict,
)

log = logging.getLogger(__name__)

STRUCTURE_FLAGS = {"too_many_parts": "max_mime_parts", "too_deep": "max_mime_depth"}
# The parser's own cap on header fields (headers.MAX_FIELDS, MAX_FIELD_OCTETS), which no
# policy sets: it binds the enforced limits only.
FIELDS_FLAG, FIELDS_LIMIT = "too_many_header_fields", "max_header_fields"
OVERSIZE = "max_attachment_bytes"


@dataclass(slots=True)
class Outcome:
    """What the rules of one lane decided (local to one evaluation)."""

    matched: list[Rule] = field(default_factory=list)
    terminal: Rule | None = None
    strip: dict[int, str] = field(default_factory=dict)  # part index -> rule name


def run_rules(rules: tuple[Rule, ...], item: MatchInput) -> Outcome:
    outcome = Outcome()
    for rule in rules:
        selected = rule.when.match(item)
        if selected is None:
            continue
        outcome.matched.append(rule)
        if rule.then.strip_attachment:
            for index in selected:
                outcome.strip.setdefault(index, rule.name)
        if rule.then.terminal is not None:
            outcome.terminal = rule
            break
    return outcome


def _decision(rule: Rule | None) -> Decision:
    if rule is None:
        return Accept()
    action = rule.then.terminal
    if action is Action.REJECT:
        return Reject(rule.reply or Reply.REJECTED.reply)
    if action is Action.TEMPFAIL:
        return TempFail(rule.reply or Reply.TEMPFAIL.reply)
    if action is Action.DISCARD:
        return Discard()
    if action is Action.QUARANTINE:
        return Quarantine(rule.reason or f"rule {rule.name}")
    return Accept()


def _structure_limit(limits: Limits, facts: MessageFacts, *, parser_caps: bool) -> str | None:
    """The structure limit the message is past. The parser's flags say it was past
    its caps: a hit for the enforced limits (``parser_caps``: the caps are theirs),
    for a report-mode policy's only where it sets that limit."""
    for flag, limit in STRUCTURE_FLAGS.items():
        if flag in facts.flags and (parser_caps or getattr(limits, limit) is not None):
            return limit
    if parser_caps and FIELDS_FLAG in facts.flags:
        return FIELDS_LIMIT
    if limits.max_mime_parts is not None and len(facts.parts) > limits.max_mime_parts:
        return "max_mime_parts"
    depth = max((part.depth for part in facts.parts), default=0)
    if limits.max_mime_depth is not None and depth > limits.max_mime_depth:
        return "max_mime_depth"
    return None


def _limit_verdict(policy_set: PolicySet, limits: Limits, facts: MessageFacts) -> Verdict | None:
    if limits.max_message_bytes is not None and facts.size > limits.max_message_bytes:
        return Verdict(
            Reject(Reply.MESSAGE_TOO_BIG.reply),
            rules=("limit:max_message_bytes",),
            policy_hash=policy_set.content_hash,
            flags=facts.flags,
        )
    hit = _structure_limit(limits, facts, parser_caps=True)
    if hit is None:
        return None
    rules: tuple[str, ...] = (f"limit:{hit}",)
    if limits.on_structure_limit is StructureAction.QUARANTINE:
        decision: Decision = Quarantine(f"limit {hit}")
        # Held, then released to its recipients: not to those past a lowered limit.
        deleted = _recipients_past(limits, facts)
        rules += ("limit:max_recipients",) if deleted else ()
        edits = (*deleted, *header_edits(policy_set, facts, ()))  # the tag, on the held copy
    else:
        # Nothing is delivered: `eval` and the policy-test route listed the tag as an
        # edit of a refused message.
        decision, edits = Reject(Reply.TOO_MANY_PARTS.reply), ()
    return Verdict(
        decision,
        edits=edits,
        rules=rules,
        policy_hash=policy_set.content_hash,
        flags=facts.flags,
    )


def _recipients_past(limits: Limits, facts: MessageFacts) -> tuple[DeleteRecipient, ...]:
    """The recipients past ``max_recipients`` (a reload lowered it after RCPT, which
    refused those past the limit then), to remove from a message that goes on."""
    most = limits.max_recipients
    if most is None:
        return ()
    return tuple(DeleteRecipient(r) for r in facts.envelope.recipients[most:])


def _rewrite(
    policy_set: PolicySet, facts: MessageFacts, strip: dict[int, str], sanitize: bool
) -> RewriteResult:
    html = policy_set.html_options if sanitize and "malformed" not in facts.flags else None
    if not strip and html is None:
        return RewriteResult(None, ())
    plan = RewritePlan(
        strip=tuple(sorted(strip.items())), sanitize_html=html, skip_signed=policy_set.skip_signed
    )
    return rewrite_body(facts, plan)


def _limits_past(policy: Policy, item: MatchInput, measured: MessageFacts) -> tuple[str, ...]:
    """Every limit of a report-mode policy the message is past, in evaluation order;
    none where its limits do not apply (their `when` does not hold). Its structure
    limits are judged on ``measured``: the message read up to the parser's own caps."""
    if not limits_apply(policy, item):
        return ()
    limits, facts = policy.limits, item.facts
    past = []
    if limits.max_message_bytes is not None and facts.size > limits.max_message_bytes:
        past.append("max_message_bytes")
    if (structure := _structure_limit(limits, measured, parser_caps=False)) is not None:
        past.append(structure)
    if limits.max_recipients is not None and len(item.recipients) > limits.max_recipients:
        past.append("max_recipients")
    most = limits.max_attachment_bytes
    if most is not None and any(part.decoded_size > most for part in item.attachments):
        past.append(OVERSIZE)
    return tuple(past)


def _measured(policy_set: PolicySet, facts: MessageFacts) -> MessageFacts:
    """The message as report-mode structure limits measure it. The parser stopped at
    the enforced limits (its caps for this transaction), so its flag says only that the
    message is past those: a trial of a looser limit beside them was recorded as past
    for every message the enforced one refused. Read again up to the parser's own
    caps, which bound the work as for a set without limits; only such a message is."""
    caps = policy_set.parser_caps(facts.envelope)
    measuring = any(getattr(p.limits, limit) is not None
                    for p in policy_set.report_policies for limit in STRUCTURE_FLAGS.values())
    if (not measuring or caps == (PARSER_MAX_PARTS, PARSER_MAX_DEPTH)
            or not facts.flags & STRUCTURE_FLAGS.keys()):
        return facts
    return parse_message(facts.raw, facts.envelope, max_parts=PARSER_MAX_PARTS,
                         max_depth=PARSER_MAX_DEPTH)


def _reported(policy_set: PolicySet, item: MatchInput) -> tuple[str, ...]:
    """What report-mode policies would have done, to record: never applied."""
    if not policy_set.report_policies:
        return ()
    measured = _measured(policy_set, item.facts)
    return tuple(
        f"report:{name}"
        for policy in policy_set.report_policies
        for name in (
            *(f"limit:{limit}" for limit in _limits_past(policy, item, measured)),
            *(rule.name for rule in run_rules(policy.rules, item).matched),
        )
    )


REWRITE_FAILED = "rewrite_failed"  # a verdict's flag: quarantined, the body could not change
INTERNAL_ERROR = "internal_error"  # a verdict's flag: evaluating failed, the message deferred


def _evaluate(policy_set: PolicySet, facts: MessageFacts, item: MatchInput,
              reported: tuple[str, ...], own_headers: tuple[AddHeader, ...]) -> Verdict:
    limits = policy_set.limits_for(facts.envelope)
    limited = _limit_verdict(policy_set, limits, facts)
    if limited is not None:
        limited = replace(limited, rules=limited.rules + reported, report_only=bool(reported))
        held = isinstance(limited.decision, Quarantine)  # with the tag and own_headers
        if held and _grown_past(limits, facts, None, (*limited.edits, *own_headers)):
            return _too_big(limited, reported)
        return limited
    outcome = run_rules(policy_set.enforced_rules, item)
    rules = tuple(rule.name for rule in outcome.matched)
    notify = tuple(dict.fromkeys(n for rule in outcome.matched for n in rule.then.notify))
    decision = _decision(outcome.terminal)
    base = Verdict(
        decision,
        rules=rules + reported,
        policy_hash=policy_set.content_hash,
        flags=facts.flags,
        report_only=bool(reported),
        notify=notify,
    )
    if isinstance(decision, Reject | TempFail | Discard):
        return base

    edits: list[Edit] = list(_recipients_past(limits, facts))
    if edits:
        base = replace(base, rules=(*rules, "limit:max_recipients", *reported))
    edits += header_edits(policy_set, facts, outcome.matched)
    limit = limits.max_attachment_bytes
    strip = dict(outcome.strip)
    if limit is not None:
        for part in item.attachments:
            if part.decoded_size > limit:
                strip.setdefault(part.index, OVERSIZE)
    sanitize = all(rule.sanitize for rule in outcome.matched)
    try:
        rewritten = _rewrite(policy_set, facts, strip, sanitize)
    except RewriteError as exc:
        # The milter's log lines carry the queue id; a policy test has none.
        log.warning("rewrite failed (%s); quarantined", exc)
        # The reason names the cause (our own fixed text) for the hold queue's reader;
        # the flag tells the audit row's (no rule it lists holds the message).
        base = replace(base, decision=Quarantine(f"rewrite failed: {exc}"),
                       flags=base.flags | {REWRITE_FAILED})
        rewritten = RewriteResult(None, ())
    body, changes = rewritten.body, rewritten.changes
    edits += rewritten.headers
    # Held too: Postfix keeps the same file.
    if _grown_past(limits, facts, body, (*edits, *own_headers)):
        return _too_big(base, reported)
    if body is not None:
        edits.append(ReplaceBody(body))
    return replace(base, edits=tuple(edits), changes=changes)


def _too_big(verdict: Verdict, reported: tuple[str, ...]) -> Verdict:
    """``verdict`` refused by ``max_message_bytes``, which the message its changes make
    is past: refused here, not after Postfix wrote its queue file past message_size_limit
    ("message file too big"), when the audit row already said it went on."""
    kept = verdict.rules[: len(verdict.rules) - len(reported)]
    return replace(verdict, decision=Reject(Reply.MESSAGE_TOO_BIG.reply), edits=(),
                   rules=(*kept, "limit:max_message_bytes", *reported))


def _grown_past(limits: Limits, facts: MessageFacts, body: bytes | None,
                edits: tuple[Edit, ...]) -> bool:
    """Whether the changed message is past ``max_message_bytes``: sanitized HTML can
    outgrow what it replaces (nh3 quotes attribute values and writes ">" in text as
    "&gt;", a character its charset lacks becomes a reference), and header edits add
    lines (a stripped top-level file's new Content-Type too), so a message within the limit
    may not stay within. A changed header counts whole: Postfix's cleanup writes it anew
    and keeps the old one in the queue file, as it keeps a removed one."""
    most = limits.max_message_bytes
    if most is None:
        return False
    size = facts.size if body is None else facts.body_offset + len(body)
    return size + sum(map(_header_bytes, edits)) > most


def _header_bytes(edit: Edit) -> int:
    """The octets a header edit adds to the message as cleanup writes it."""
    if isinstance(edit, AddHeader | ChangeHeader):
        return len(f"{edit.name}: {edit.value}\r\n".encode("utf-8", "surrogateescape"))
    return 0


def evaluate(policy_set: PolicySet, facts: MessageFacts,
             own_headers: tuple[AddHeader, ...] = ()) -> Verdict:
    """The verdict of ``policy_set`` on one message; never raises. A message deferred
    because evaluating failed still records what report-mode policies said, when they
    were heard before the failure (a busy sanitizer, say, comes after them).

    ``own_headers``: the fields the caller adds to a message that goes on, besides the
    verdict's edits (the milter's id header): ``max_message_bytes`` counts them as it
    counts a rule's, or a message just within the limit went on past it."""
    reported: tuple[str, ...] = ()
    try:
        item = MatchInput.of(facts)
        reported = _reported(policy_set, item)
        return _evaluate(policy_set, facts, item, reported, own_headers)
    except SanitizerBusy as exc:  # overload, not a bug: no traceback
        log.warning("policy evaluation deferred for %s: %s", facts.envelope.queue_id, exc)
    except SanitizerCodeChanged as exc:  # not the part's fault (a notice would be): defer
        log.error("policy evaluation deferred for %s: %s; restart the milter after an "
                  "upgrade", facts.envelope.queue_id, exc)
    except Exception:  # a bug here must defer the message, not crash the filter
        log.exception("policy evaluation failed for %s", facts.envelope.queue_id)
    return Verdict(
        TempFail(Reply.INTERNAL_ERROR.reply),
        rules=reported,
        policy_hash=policy_set.content_hash,
        flags=facts.flags | {INTERNAL_ERROR},
        report_only=bool(reported),
    )


def parse_for(policy_set: PolicySet, raw: bytes, envelope: Envelope) -> MessageFacts:
    """Parse ``raw`` with its transaction's structure limits as the parser's caps."""
    max_parts, max_depth = policy_set.parser_caps(envelope)
    return parse_message(raw, envelope, max_parts=max_parts, max_depth=max_depth)


_BARE_LF = re.compile(rb"(?<!\r)\n")


def as_received(raw: bytes) -> bytes:
    """``raw`` as Postfix hands it to a milter: every line ended by CRLF, the last one
    too, however the client ended them (a sample file kept with LF line ends, say). The
    milter measures (``size_over``, ``max_message_bytes``) and parses that."""
    received = _BARE_LF.sub(b"\r\n", raw)
    return received if not received or received.endswith(b"\r\n") else received + b"\r\n"


def evaluate_message(policy_set: PolicySet, raw: bytes, envelope: Envelope) -> Verdict:
    """Parse with the transaction's structure limits, then evaluate."""
    return evaluate(policy_set, parse_for(policy_set, raw, envelope))
