"""Header edits of a delivered message: rule headers, the Subject prefix, the flags tag.

Edits are only emitted when they change something, so a message that no rule
touches keeps its header section byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable

from .facts import Header, MessageFacts
from .headers import header_fields
from .model import Rule
from .policyset import PolicySet
from .rawwords import encode_raw_words
from .verdicts import AddHeader, ChangeHeader, Edit, RemoveHeader

FLAGS_HEADER = "X-Postwarden-Flags"


def _with_subject_prefix(facts: MessageFacts, edits: list[Edit], prefixes: list[str]) -> list[Edit]:
    """``edits`` with the prefixes put on the first Subject they leave: the message's
    own unless a rule removed it, else the first a rule added after that, else a new
    one. Never a change to a Subject a removal deleted: Postfix would add it back
    (or change a rule's added copy) with the text the removal was for. The message's own
    is the first Postfix counts (its first Subject index): one after a lone CR is text
    of the field before to it, and the prefix, with that one's text, replaced the next."""
    prefixes = list(dict.fromkeys(prefixes))  # rules (or policies) sharing a prefix add it once
    removed = max((i for i, edit in enumerate(edits)
                   if isinstance(edit, RemoveHeader) and edit.name.lower() == "subject"),
                  default=None)
    subjects = [h for h in facts.headers if h.name.lower() == "subject" and not h.inline]
    if removed is None and subjects:
        missing = _missing(subjects[0].raw_value.lstrip(), prefixes)
        if not missing:
            return edits
        value = _joined([*missing, _readable(facts, _folded(facts, subjects[0]))])
        return [*edits, ChangeHeader("Subject", 1, value)]
    start = 0 if removed is None else removed + 1
    for at in range(start, len(edits)):
        added = edits[at]
        if isinstance(added, AddHeader) and added.name.lower() == "subject":
            missing = _missing(added.value, prefixes)
            if not missing:
                return edits
            return [*edits[:at], AddHeader(added.name, _joined([*missing, added.value])),
                    *edits[at + 1:]]
    return [*edits, AddHeader("Subject", _joined(prefixes[::-1]).rstrip())]


def _folded(facts: MessageFacts, header: Header) -> str:
    """``header``'s value with the folding it was received with (line breaks as the
    message's own), so that prefixing a long Subject does not make it one line; the
    unfolded value where the raw section does not give back exactly that value."""
    if not header.folded:  # nearly every Subject: no need to read the section again
        return header.raw_value
    pieces: list[str] = []
    for line in _field_lines(facts, header.name):
        text = line.decode("utf-8", "surrogateescape")
        if pieces and not (pieces[-1].strip(" \t") and text.strip(" \t")):
            pieces[-1] += text  # no line of blanks alone (nor a break after an empty first)
        else:
            pieces.append(text)
    unfolded = header.raw_value.lstrip()
    folded = facts.newline.decode("ascii").join(pieces).strip(" \t")
    return folded if "".join(pieces).strip(" \t") == unfolded else unfolded


def _readable(facts: MessageFacts, value: str) -> str:
    """``value`` with its raw 8-bit words as encoded words of the text readers showed,
    read in the charset the message declares, as ``Header.value`` reads them: pymilter
    cannot send them raw."""
    return encode_raw_words(value, facts.parts[0].charset if facts.parts else None)


def _field_lines(facts: MessageFacts, name: str) -> list[bytes]:
    """The first ``name`` field of the message's header section that Postfix counts (not
    inline): its value's first line and its continuation lines, as the parser read them."""
    wanted = name.lower().encode("ascii", "replace")
    fields, _, _, _ = header_fields(facts.raw, 0, facts.body_offset)
    return next((lines for field, lines, inline in fields
                 if field.lower() == wanted and not inline), [])


def _missing(subject: str, prefixes: list[str]) -> list[str]:
    """The prefixes ``subject`` does not start with yet, in the order they go in front."""
    present = _leading_prefixes(subject, prefixes)
    return [prefix for prefix in reversed(prefixes) if prefix not in present]


def _joined(texts: list[str]) -> str:
    """``texts`` one after the other, a space between two where one side is an encoded
    word and no blank parts them: RFC 2047 readers decode a word only with blanks (or the
    value's ends) around it, so ``[EXT]=?utf-8?q?...?=`` showed the word undecoded."""
    out = texts[0]
    for text in texts[1:]:
        touching = out[-1:].strip(" \t") and text[:1].strip(" \t")
        out += " " + text if touching and (out.endswith("?=") or text.startswith("=?")) else text
    return out


def _leading_prefixes(subject: str, prefixes: list[str]) -> set[str]:
    """Which of ``prefixes`` the Subject already starts with, in any order.

    Never twice, judged on the raw value: an encoded word that Python alone
    decodes to the prefix (UTF-7, an unknown charset) must not keep it off. A
    prefix may end the Subject without its trailing space: what we write for a
    missing or empty Subject, seen again on the next hop.
    """
    present: set[str] = set()
    rest = subject
    while found := next((p for p in prefixes if p not in present
                         and (rest.startswith(p) or rest.rstrip() == p.rstrip())), None):
        present.add(found)
        rest = rest[len(found):].lstrip()
    return present


def header_edits(policy_set: PolicySet, facts: MessageFacts, rules: Iterable[Rule]) -> list[Edit]:
    present = {h.name.lower() for h in facts.headers}
    edits: list[Edit] = []
    if policy_set.drop_forged_flags and FLAGS_HEADER.lower() in present:
        # A sender must not forge our tag, on a message we do not flag either.
        edits.append(RemoveHeader(FLAGS_HEADER))
        present.discard(FLAGS_HEADER.lower())
    prefixes: list[str] = []
    added: set[tuple[str, str]] = set()  # since its last removal: two rules adding one go once
    for rule in rules:
        for name in rule.then.remove_headers:
            if name.lower() in present:
                edits.append(RemoveHeader(name))
                present.discard(name.lower())
                added = {a for a in added if a[0] != name.lower()}
        for name, value in rule.then.add_headers:
            if (name.lower(), value) not in added:
                edits.append(AddHeader(name, value))
                added.add((name.lower(), value))
            present.add(name.lower())
        if rule.then.subject_prefix:
            prefixes.append(rule.then.subject_prefix)
    if prefixes:
        edits = _with_subject_prefix(facts, edits, prefixes)
    if policy_set.tag_flags and facts.flags:
        edits.append(AddHeader(FLAGS_HEADER, ", ".join(sorted(facts.flags))))
    return edits
