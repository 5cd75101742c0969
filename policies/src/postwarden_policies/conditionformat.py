"""The `when:` part of the policy format: condition keys, their types and their compiled form.

Domain lists match a domain exactly; write ".example.com" or "*.example.com"
to match its subdomains (not example.com itself: list both for both).
Domains may be written in Unicode or as A-labels (xn--...); both sides compare
in the A-label form. Address lists hold whole addresses: "*@example.com" is
refused (sender_domain and the like say that).
``helo`` and ``client_name`` globs are read as domains are (lower case,
A-labels, no trailing dot); a non-ASCII label in them must be whole (no
``*``, ``?`` or ``[...]``), since only a whole label has an A-label.
Address, domain and user lists compare case-insensitively; globs follow
fnmatch and are case-insensitive; regular expressions are RE2 and
case-sensitive unless they start with "(?i)".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

import yaml

from . import conditions as c
from .domains import ascii_domain, caseless, normal_address
from .errors import (
    ASCII_ONLY_CLASS,
    BLOCK_LINE_END,
    BRACKETED_WORD,
    CASE_FOLDING,
    LIST_IN_GLOB,
    MATCHES_EVERY_TEXT,
    REGEX_IN_GLOB,
    SINGLE_LABEL_DOMAIN,
)
from .facts import address_literal
from .mappingspecs import Field, MapOf, Obj, ObjectContext
from .mimeflags import FLAGS
from .patterns import (
    Pattern,
    ascii_only_warning,
    bracketed_word_warning,
    case_folding_warning,
    compile_globs,
    compile_regex,
    empty_alternative_warning,
    glob_to_re2,
    list_in_glob_warning,
    regex_in_glob_warning,
)
from .spec import (
    INVALID,
    Convert,
    Invalid,
    JsonSchema,
    Lazy,
    ListOf,
    Size,
    Spec,
    SpecError,
    boolean,
    choice,
    text,
)
from .yamlnodes import Reader, bracketed_texts

ADDRESS = r"[^@\s<>]+@[^@\s<>]+"
_LABEL = r"(?:[A-Za-z0-9_-]|[^\x00-\x7f])+"  # letters of any script: IDN labels too
DOMAIN = rf"(\*?\.)?{_LABEL}(\.{_LABEL})*\.?"
HEADER_NAME = r"[!-9;-~]+"  # RFC 5322 field name: printable ASCII except ":"


def header_name_hint(value: str) -> str:
    """What to say of a header name written as in a message (``X-Spam:``)."""
    return " (the name without its colon)" if value.rstrip().endswith(":") else ""


_BRACKETED = re.compile(f"<({ADDRESS})>")


def address_hint(value: str) -> str:
    """What to say of an address written as a message's header shows it (``<a@b.test>``,
    ``Ann <a@b.test>``): the address alone is what is compared."""
    found = _BRACKETED.search(value)
    return f" (the address alone, without angle brackets: {found[1]!r})" if found else ""


def _domain_hint(value: str) -> str:
    """What to say of a domain written with the @ before it (``@example.com``), or as a
    glob (``*example.com``), which a domain list does not take."""
    if value.startswith("@") and re.fullmatch(DOMAIN, value[1:]):
        return " (the domain without its @)"
    bare = value.lstrip("*")
    if bare != value and not bare.startswith(".") and re.fullmatch(DOMAIN, bare):
        return (f" (no glob here: write {bare!r} for the domain itself, {'.' + bare!r} for its "
                "subdomains, both for all)")
    return ""


# A comma or semicolon: blanks alone would split a mistyped one ("exa mple.com").
_SEPARATORS = re.compile(r"\s*[,;]\s*")
SEVERAL_HINT = " (several in one text: write each as an item of a list, as in [a, b])"


def several_in_one(value: str) -> list[str]:
    """The items of several written as one text ("a.test, b.test"), split at its commas
    or semicolons; one item when there is none."""
    return _SEPARATORS.split(value.strip(" ,;"))


def list_hint(pattern: str, single: Callable[[str], str]) -> Callable[[str], str]:
    """The hint of an item of a list of ``pattern``: ``single``'s, or, for several
    written as one text ("a.test, b.test"), to write each as an item of its own."""
    compiled = re.compile(pattern)

    def hint(value: str) -> str:
        if told := single(value):
            return told
        parts = several_in_one(value)
        if len(parts) > 1 and all(compiled.fullmatch(part) for part in parts):
            return SEVERAL_HINT
        return ""

    return hint

# Legal in an address, but written in a policy's address list they are meant as globs.
_GLOB_CHARS = "*?"
_WHOLE_ADDRESS = ADDRESS.replace("<>", f"<>{_GLOB_CHARS}")  # for an editor: no glob
_MAPPED_PREFIX = "an IPv4-mapped range needs /96 or longer (::ffff:a.b.c.d/96+n is a.b.c.d/n)"


def _glob(value: str) -> str:
    glob_to_re2(value)  # raises SpecError for a bad glob, naming this item
    return value


def _host_glob(value: str) -> str:
    """A glob on host names in the form they are compared in (conditions.MatchInput):
    lower case, A-labels, no trailing dot; else it could never match. An address
    literal (``[192.0.2.1]``) names that literal: its brackets are no character class."""
    if (literal := address_literal(value)) is not None:
        return literal.translate({ord("["): "[[]", ord("]"): "[]]"})
    try:
        normal = ascii_domain(value, strict=True)
    except UnicodeError as exc:  # a non-ASCII label with * ? [ ] has no A-label
        raise SpecError(
            f"invalid internationalised host name glob {value!r}: {exc} (write a non-ASCII "
            "label whole, or as its A-label xn--...)"
        ) from None
    return _glob(normal)


def _compile_error(glob: str) -> str | None:
    try:
        compile_globs((glob,))
    except SpecError as exc:
        return str(exc)
    return None


def _warn_block_line_end(node: yaml.Node, reader: Reader, kind: str, values: str) -> None:
    """A pattern or glob written as a block (subject: |, then it below) ends with its line
    break, which a match then needs: a Subject or header value, read on one line, never
    has it (body text only where a line ends right after the words), nor does a file
    name, a type or a host name (``values``: what it is matched against)."""
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">") \
            and node.value.endswith("\n"):
        reader.warn(node, f"this {kind} ends with the line break its block (| or >) keeps, "
                          f"which a match then needs ({values} has none): write |- or >- "
                          f"to leave it out, or the {kind} on the key's line",
                    code=BLOCK_LINE_END)


class GlobList(Spec):
    """Globs, each checked where it is written, compiled together into one pattern; a
    warning at one written as a regular expression, holding ß (case_folding_warning), as
    a block that ends with its line break, or as several in one text (``names_hold_blanks``:
    see list_in_glob_warning)."""

    def __init__(self, what: str, item: Callable[[str], str] = _glob, *,
                 names_hold_blanks: bool = True) -> None:
        self.items = ListOf(Convert(text(what=what), item))
        self.names_hold_blanks = names_hold_blanks

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        items = self.items.read_each(node, reader)
        if items is None:
            return INVALID
        # The globs that read are compiled even beside one that did not, so that one RE2
        # refuses is told with it: all issues at once.
        read = [(item_node, glob) for item_node, glob in items if glob is not INVALID]
        listed = {glob.lower() for _, glob in read}  # once: a list may hold 200,000
        for item_node, glob in read:
            if why := case_folding_warning(glob, listed):
                reader.warn(item_node, why, code=CASE_FOLDING)
            if why := regex_in_glob_warning(glob):
                reader.warn(item_node, why, code=REGEX_IN_GLOB)
            if why := list_in_glob_warning(glob, names_hold_blanks=self.names_hold_blanks):
                reader.warn(item_node, why, code=LIST_IN_GLOB)
            _warn_block_line_end(item_node, reader, "glob", "a file name, type or host name")
        try:
            pattern = compile_globs(glob for _, glob in read)
        except SpecError as exc:
            # Name the glob RE2 refuses (a range such as [z-a]) at its own line.
            errors = [(item_node, _compile_error(glob)) for item_node, glob in read]
            failing = [(item_node, error) for item_node, error in errors if error is not None]
            for item_node, error in failing or [(node, str(exc))]:
                reader.error(item_node, error)
            return INVALID
        return pattern if len(read) == len(items) else INVALID

    def schema(self, defs: dict[str, JsonSchema]) -> JsonSchema:
        return self.items.schema(defs)


def _network(value: str) -> c.IpNetwork:
    """The network; an IPv4-mapped range is its IPv4 range, the form client addresses take."""
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        reason = _MAPPED_PREFIX if _short_mapped(value) else str(exc)
        raise SpecError(f"invalid CIDR {value!r}: {reason}") from None
    return c.unmapped(network)


def _short_mapped(value: str) -> bool:
    try:
        interface = ipaddress.IPv6Interface(value)
    except ValueError:
        return False
    return interface.ip.ipv4_mapped is not None and interface.network.prefixlen < 96


def _domain(value: str) -> str:
    """A domain as conditions compare it (see domains.ascii_domain), "." or "*." kept."""
    bare = value.removeprefix("*").lstrip(".")
    try:
        return value[: len(value) - len(bare)] + ascii_domain(bare, strict=True)
    except UnicodeError as exc:
        raise SpecError(f"invalid internationalised domain name {value!r}: {exc}") from None


def _address(domain_key: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        domain = value.rpartition("@")[2]
        if any(char in value for char in _GLOB_CHARS):
            raise SpecError(
                f"{value!r} is a glob, but address lists hold whole addresses: "
                f"use {domain_key} for every address at a domain (here {domain!r})"
            )
        try:
            return normal_address(value, strict=True)
        except UnicodeError as exc:
            raise SpecError(f"invalid internationalised domain name {domain!r}: {exc}") from None

    return convert


def _values(item: Spec, make: Callable[[tuple[Any, ...]], c.Condition], doc: str) -> Convert:
    return Convert(ListOf(item), make, doc)


def _addresses(get: c.Getter, domain_key: str, *, null_ok: bool = False) -> Convert:
    null = "<>|" if null_ok else ""
    return _values(
        Convert(text(pattern=null + ADDRESS, what="an e-mail address",
                     hint=list_hint(null + ADDRESS, address_hint),
                     schema_pattern=null + _WHOLE_ADDRESS), _address(domain_key)),
        lambda v: c.ValueIn(get, v),
        "addresses",
    )


class Domain(Convert):
    """A domain, converted; a warning for one of a single label (``partners``), as a
    name meant for a list reads: no mail domain is one."""

    def __init__(self) -> None:
        super().__init__(text(pattern=DOMAIN, what="a domain such as example.com or .example.com",
                              hint=list_hint(DOMAIN, _domain_hint)), _domain)

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        domain = super().read(node, reader)
        if domain is not INVALID and "." not in domain.rstrip("."):
            reader.warn(node, f"domain {domain!r} has no dot, as no mail domain has: a "
                              "policy names no lists, so a list's name is read as a domain; "
                              "to share a list, write it once under an x- key as an anchor "
                              "(x-partners: &partners [a.example, b.example]) and alias it "
                              "(sender_domain: *partners)", code=SINGLE_LABEL_DOMAIN)
        return domain


def _domains(get: c.Getter) -> Convert:
    return _values(Domain(), lambda v: c.DomainIn(get, c.DomainSet.of(v)), "domains")


def _host_globs(get: c.Getter) -> Convert:
    return Convert(
        GlobList("a glob on host names", _host_glob, names_hold_blanks=False),
        lambda pattern: c.PatternMatch(get, pattern),
        "globs",
    )


class Regex(Convert):
    """An RE2 regular expression, compiled; a warning where RE2's ASCII-only classes
    likely miss words outside ASCII, or its simple case folding a spelling (ß, SS), or
    an empty alternative makes it match every text: valid, so not refused (a policy that
    loaded before keeps filtering mail)."""

    def __init__(self) -> None:
        super().__init__(text(what="an RE2 regular expression"), compile_regex)

    def read(self, node: yaml.Node, reader: Reader) -> Any:
        if isinstance(node, yaml.SequenceNode):  # as address and glob lists are written
            hint = _bracketed_tag_hint(node) or ("a pattern is one (write a|b for either), "
                                                 "or give each its condition under any:")
            reader.error(node, f"expected an RE2 regular expression, got a list: {hint}")
            return INVALID
        pattern = super().read(node, reader)
        if pattern is INVALID:
            return pattern
        if why := ascii_only_warning(pattern.source):
            reader.warn(node, why, code=ASCII_ONLY_CLASS)
        if why := case_folding_warning(pattern.source):
            reader.warn(node, why, code=CASE_FOLDING)
        if why := empty_alternative_warning(pattern):
            reader.warn(node, why, code=MATCHES_EVERY_TEXT)
        if why := bracketed_word_warning(pattern.source):
            reader.warn(node, why, code=BRACKETED_WORD)
        _warn_block_line_end(node, reader, "pattern",
                            "a Subject or header value, read on one line,")
        return pattern


_TAG = re.compile(r"[\w -]+")  # a Subject tag's text: [SPAM], [EXT], [Phishing Alert]


def _bracketed_tag_hint(node: yaml.SequenceNode) -> str:
    """For ``subject: [SPAM]``, a tag meant as text: how to write it as a pattern, whose
    brackets quoted alone would make a class of one character (S, P, A or M); or ""."""
    texts = bracketed_texts(node)
    if texts is None or len(texts) != 1 or not _TAG.fullmatch(text := texts[0]):
        return ""
    return (f"YAML reads [{text}] unquoted as a list of {text}: write {text} for that "
            f"text, or '\\[{text}\\]' for [{text}] with its brackets")


def _regex(get: c.Getter) -> Convert:
    return Convert(Regex(), lambda pattern: c.PatternMatch(get, pattern))


def _predicate(test: Callable[[c.MatchInput], bool]) -> Convert:
    return Convert(boolean(), lambda wanted: c.Predicate(test, wanted))


def _type_globs() -> GlobList:
    return GlobList("a glob such as application/*", names_hold_blanks=False)


def _attachment(values: dict[str, Any], _: object) -> c.Condition:
    return c.AttachmentMatch(c.AttachmentTest(**values))


ATTACHMENT = Obj(
    "attachment condition",
    "True when one attachment satisfies every sub-condition given ({} = any attachment).",
    {
        "filename": Field(
            GlobList("a glob such as *.exe"),
            "Globs on the decoded file name (RFC 2231/2047), case-insensitive.",
        ),
        "content_type": Field(_type_globs(), "Globs on the declared type, e.g. application/*."),
        "detected_type": Field(
            _type_globs(), "Globs on the type detected from the content's magic bytes."
        ),
        "size_over": Field(Size(), "Decoded size larger than this many bytes."),
    },
    _attachment,
    def_name="attachment",
)


def _headers(values: dict[str, Pattern]) -> c.Condition:
    return c.AllOf(c.HeaderMatch(name, pattern) for name, pattern in values.items())


def _condition_list(make: Callable[[tuple[c.Condition, ...]], c.Condition]) -> Convert:
    return Convert(ListOf(Lazy(lambda: CONDITION), single_ok=False), make)


def _all_keys(values: dict[str, c.Condition], context: ObjectContext) -> c.Condition | Invalid:
    if not values:  # "when: {}" would hold for every message, unlikely what was meant
        context.error(None, "an empty condition holds for every message; "
                            "leave 'when' out to mean that")
        return INVALID
    return c.all_of(values)


CONDITION: Obj = Obj(
    "condition",
    "Conditions; all keys given must hold (AND). Nest with any / all / not.",
    {
        "sender": Field(
            _addresses(c.get_sender, "sender_domain", null_ok=True),
            "Envelope sender addresses (<> = null sender).",
        ),
        "sender_domain": Field(_domains(c.get_sender_domain), "Envelope sender domains."),
        "from": Field(_addresses(c.get_from, "from_domain"), "Addresses in the From header."),
        "from_domain": Field(_domains(c.get_from_domain), "Domains of the From header address."),
        "recipient": Field(
            _addresses(c.get_recipients, "recipient_domain"), "True when any recipient is listed."
        ),
        "recipient_domain": Field(
            _domains(c.get_recipient_domains), "True when any recipient's domain is listed."
        ),
        "client_ip": Field(
            _values(Convert(text(what="a CIDR"), _network), c.NetworkIn, "CIDRs"),
            "Client address in one of these networks (IPv4 or IPv6, e.g. 203.0.113.0/24).",
        ),
        "client_name": Field(
            _host_globs(c.get_client_name), "Globs on the client's reverse DNS name."
        ),
        "helo": Field(_host_globs(c.get_helo), "Globs on the HELO/EHLO name."),
        "authenticated": Field(_predicate(c.is_authenticated), "SMTP AUTH was used (or not)."),
        "auth_user": Field(
            _values(
                text(what="a SASL login name"),
                lambda v: c.ValueIn(c.get_auth_user, map(caseless, v)),
                "users",
            ),
            "SASL login names.",
        ),
        "size_over": Field(Convert(Size(), c.SizeOver), "Message larger than this many bytes."),
        "header": Field(
            Convert(
                MapOf(
                    text(pattern=HEADER_NAME, what="a header name", hint=header_name_hint),
                    Regex(),
                    "header patterns",
                ),
                _headers,
            ),
            "Header name -> RE2 regex searched in each (decoded) value, as written and as "
            "readers read it; all entries must match.",
        ),
        "subject": Field(
            _regex(c.get_subject),
            "RE2 regex searched in the decoded Subject, as written and as readers read it.",
        ),
        "body": Field(_regex(c.get_text), "RE2 regex searched in the decoded text parts."),
        "has_html": Field(
            _predicate(c.has_html),
            "The message has HTML: a text/html part, or an inline part named *.html.",
        ),
        "attachment": Field(ATTACHMENT, "An attachment matching every sub-condition."),
        "duplicate": Field(_predicate(c.is_duplicate), "The milter saw this message before."),
        "flag": Field(
            _values(choice(*sorted(FLAGS)), c.FlagIn, "flags"),
            "Parser flags, any of: malformed, too_many_parts, too_deep, ...",
        ),
        "any": Field(_condition_list(c.AnyOf), "At least one of these conditions."),
        "all": Field(_condition_list(c.AllOf), "Every one of these conditions."),
        "not": Field(Convert(Lazy(lambda: CONDITION), c.Not), "The condition does not hold."),
    },
    _all_keys,
    def_name="condition",
    elsewhere={**dict.fromkeys(("filename", "content_type", "detected_type"),
                               "under attachment:, as in attachment: {filename: [...]}"),
               # indented under when: as its keys are
               **dict.fromkeys(("then", "code", "message", "sanitize"),
                               "in the rule, indented as when: is")},
    # when: [subject: a, body: b], as other filters write a list of tests
    as_list=" (a condition is one mapping, all its keys holding: for a list of conditions "
            "write all: [...] or any: [...])",
)
