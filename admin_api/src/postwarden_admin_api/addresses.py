"""Mail addresses of the send API: parsing, IDN domains, sender patterns, masking.

Outside the ``send`` package, so that keys and the runtime settings check their
allowed senders (:func:`sender_pattern`) by the rules the send API matches them by.

Addresses are accepted as ``local@domain`` or ``Display Name <local@domain>``.
The local part must be an RFC 5322 dot-atom in ASCII (no quoted strings, no
SMTPUTF8); the domain may be internationalised and is kept in its A-label
(punycode) form, so the envelope and the headers are plain ASCII and two
spellings of one domain compare equal.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import idna

from postwarden_policies.domains import full_stops_as_dots

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
# Routing characters: Postfix rewrites "a%b@c" and "c!a@b" to a@b for a domain it
# treats as its own (mydestination covers its host name), so the address checked and
# counted here would not be the one that gets the mail.
_ROUTING = re.compile(r"[%!]")
# What a reader could take for an address in a display name: text around an "@".
_ADDRESS_SHAPED = re.compile(r"[^\s<>()\[\],;:\"@]+@[^\s<>()\[\],;:\"@]+")
_JOINING = re.compile(r'[^\S ]|"')  # white space but the plain space, and quotes
_LDH_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# A display name may quote what it holds, angle brackets too ("ACME <Billing>").
_ANGLE_FORM = re.compile(r'(?P<name>(?:"(?:[^"\\]|\\.)*+"|[^<>"])*+)<(?P<address>[^<>]*)>')
_QUOTED_STRING = re.compile(r'"(?P<text>(?:[^"\\]|\\.)*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
_LIST_SEPARATOR = re.compile(r"[,;]")
_GROUP = re.compile(r'[^<>"@,;:]*:.*;', re.DOTALL)  # RFC 5322's "Name: a@x.org, b@x.org;"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
# RFC 2047's encoded word. The email package decodes one wherever it meets it in
# header text, so through it a client could pass what the checks refused (another
# mailbox, a line break). Clients send the characters themselves; the build encodes.
# Spaces in the encoded text too: RFC 2047 forbids them, the email package decodes them.
# What either of the email package's parsers decodes as an RFC 2047 word: any
# charset (empty, or with spaces: read as ASCII), b or q, any text up to "?=".
# Only its first start is looked for: a later one could only end later. Matching
# the whole word at every start took time quadratic in the text (28 KB: 0.5 s).
_ENCODED_WORD_START = re.compile(r"=\?[^?]*\?[bq]\?", re.IGNORECASE)
MAX_ADDRESS = 254
MAX_LOCAL_PART = 64  # RFC 5321, 4.5.3.1.1
MAX_DISPLAY_NAME = 200
# The longest text a mailbox may be given as: a display name of MAX_DISPLAY_NAME
# characters, each escaped in quotes, and an address. Checked first, so that no
# check spends time on a longer one.
MAX_MAILBOX_TEXT = 2 * MAX_DISPLAY_NAME + MAX_ADDRESS + 16


class AddressError(ValueError):
    """The text is not an address we accept; the message says why (no address in it)."""


class SeveralAddresses(AddressError):
    """The text holds several addresses (``a@x.org, b@x.org``) where one goes."""

    def __init__(self) -> None:
        super().__init__("one address per string")


@dataclass(frozen=True, slots=True)
class Mailbox:
    local: str
    domain: str  # lower-case A-labels
    display_name: str = ""

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def key(self) -> str:
        """The form used for comparisons, suppressions and rate counters."""
        return self.address.lower()


def has_control(text: str) -> bool:
    """True when ``text`` holds a character that could break a header line."""
    return _CONTROL.search(text) is not None


def has_encoded_word(text: str) -> bool:
    """True when ``text`` holds what the email package decodes as an RFC 2047 encoded
    word (``=?charset?b?...?=``, also with an empty charset or one with spaces)."""
    start = _ENCODED_WORD_START.search(text)
    return start is not None and "?=" in text[start.end():]


def checked_domain(domain: str) -> str:
    """The lower-case A-label form of ``domain``; raises AddressError when invalid.

    DNS's root dot is dropped (``example.com.`` is example.com, as Postfix and the
    policy rules read it), so an address, a search and an allowed-sender pattern
    written with it are the same as without; a second one is no host name."""
    domain = full_stops_as_dots(domain).removesuffix(".")
    if "." not in domain:
        raise AddressError("domain must be a fully qualified name (a dot between labels)")
    try:
        encoded = domain.encode("ascii").decode().lower()
    except UnicodeEncodeError:
        try:
            encoded = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise AddressError("domain is not a valid internationalised name") from exc
    labels = encoded.split(".")
    if len(encoded) > 253 or not all(_LDH_LABEL.fullmatch(label) for label in labels):
        raise AddressError("domain is not a valid host name")
    if labels[-1].isdigit():
        raise AddressError("domain must be a name, not an address")
    # "--" in the 3rd and 4th places marks an A-label ("xn--") or a prefix IDNA
    # reserves: such a label must decode (IDNA 2008), or no U-label matches it.
    try:
        for label in labels:
            if label[2:4] == "--":
                idna.decode(label)
    except idna.IDNAError as exc:
        raise AddressError("domain is not a valid internationalised name") from exc
    return encoded


def _display_name(raw: str) -> str:
    """The name as given, or the text of a quoted string with its backslash escapes undone."""
    name = raw.strip()
    quoted = _QUOTED_STRING.fullmatch(name)
    if quoted is not None:
        name = _QUOTED_PAIR.sub(r"\1", quoted["text"]).strip()
    return name


def _refuse_hidden_text(text: str) -> None:
    """Refuse what would put other text in the header than the text given."""
    if has_control(text):
        raise AddressError("address contains control characters")
    if has_encoded_word(text):
        raise AddressError("RFC 2047 encoded words are not accepted: send the text itself")


def _holds_several(text: str) -> bool:
    """True when ``text`` reads as a list of addresses: two parts or more with an "@",
    split where a header's address list is (",") or a mail client's (";")."""
    return sum("@" in part for part in _LIST_SEPARATOR.split(text)) > 1


def _local_part_problem(local: str) -> str:
    """Why ``local`` is no local part we accept. A quoted one is ASCII too, so it is
    named: refused since one mailbox then has several spellings ("bob"@x is bob@x),
    which suppressions, limits and allowed senders would count apart. So is one that is
    only too long (RFC 5321's 64 octets)."""
    if '"' in local:
        return ('quoted local parts ("john doe"@example.com) are not accepted: expected '
                "local@domain with an unquoted local part")
    if len(local) > MAX_LOCAL_PART and _DOT_ATOM.fullmatch(local):
        return f"the local part is longer than {MAX_LOCAL_PART} characters"
    return "expected local@domain with a plain ASCII local part"


def parse_mailbox(text: str) -> Mailbox:
    if len(text) > MAX_MAILBOX_TEXT:
        raise AddressError(f"too long: an address is at most {MAX_ADDRESS} characters, its "
                           f"display name at most {MAX_DISPLAY_NAME}")
    _refuse_hidden_text(text)
    text = text.strip()
    if _GROUP.fullmatch(text):
        raise AddressError("groups (Name: a@x.org, b@x.org;) are not accepted: give the "
                           "addresses as a list")
    if text.endswith((",", ";")) and not _holds_several(text):  # a list as Outlook writes it
        raise AddressError("ends with , or ;: give the address alone (several as a list)")
    display_name = ""
    angle = _ANGLE_FORM.fullmatch(text)
    if angle is not None:
        display_name = _display_name(angle["name"])
        # Undone escapes can join what the check saw apart: "=\?" becomes "=?".
        _refuse_hidden_text(display_name)
        text = angle["address"].strip()
        if len(display_name) > MAX_DISPLAY_NAME:
            raise AddressError(f"display name is longer than {MAX_DISPLAY_NAME} characters")
    if not text:  # told apart: a template's unset field was told of a bad local part
        raise AddressError("empty: give an address")
    if "(" in text or ")" in text:  # an address has none; older software writes a name so
        raise AddressError("comments ((...)) are not accepted: write Name <local@domain>")
    local, sep, domain = text.rpartition("@")
    if not sep or not _DOT_ATOM.fullmatch(local) or len(local) > MAX_LOCAL_PART:
        if _holds_several(text):
            raise SeveralAddresses
        raise AddressError(_local_part_problem(local))
    if _ROUTING.search(local):
        raise AddressError("'%' and '!' are not accepted in an address: Postfix routes by "
                           "them (a%b@c goes to a@b)")
    mailbox = Mailbox(local, checked_domain(domain), display_name)
    if len(mailbox.address) > MAX_ADDRESS:  # its domain as A-labels, as Postfix sends it
        raise AddressError(f"address is longer than {MAX_ADDRESS} characters")
    return mailbox


def shows_another_address(mailbox: Mailbox) -> bool:
    """True when the display name holds an address (compatibility forms such as U+FF20
    read as "@") other than the mailbox's own: many mail readers show that name alone,
    so ``"ceo@example.com" <app@example.com>`` reads as mail from the CEO. An "@" that
    is no address (``Jane @ Acme``, ``@acme on Mastodon``) is a name like any."""
    # Spaces readers draw thin or not at all (U+200A, U+00A0: NFKC makes them plain
    # spaces) and quotes join what they stand between: "ceo\u200a@bank.com" reads as
    # an address. Only a plain space keeps "Jane @ Acme" a name.
    name = _JOINING.sub("", mailbox.display_name)
    name = unicodedata.normalize("NFKC", name)
    return not all(_is_own(shown.rstrip("."), mailbox) for shown in _ADDRESS_SHAPED.findall(name))


def _is_own(shown: str, mailbox: Mailbox) -> bool:
    """Whether ``shown`` is the mailbox's address written another way (case, U-labels);
    what reads as an address but parses as none (``ceo@bank``) is no one's own."""
    try:
        return parse_mailbox(shown).key == mailbox.key
    except AddressError:
        return False


def sender_pattern(text: str) -> str:
    """An allowed sender (``local@domain`` or ``*@domain``) as a key or the setting
    stores it, lower-cased; AddressError for one that would match no sender
    (:func:`sender_matches`): a local part or a domain no address can have."""
    local, _, domain = text.rpartition("@")
    stand_in = "any" if local == "*" else local
    # The parsed local part must be the one given: "<a@b.org>" parses, as a@b.org
    # (and " a@b.org" too: the text is stripped).
    parsed = parse_mailbox(f"{stand_in}@{domain}")
    if parsed.local != stand_in or text != text.strip():
        raise AddressError("expected local@domain or *@domain")
    return text.lower()


def sender_matches(mailbox: Mailbox, patterns: tuple[str, ...] | list[str]) -> bool:
    """True when an allowed-sender pattern (``a@b`` or ``*@domain``) covers ``mailbox``.
    A root dot on either side is the same domain (:func:`checked_domain`)."""
    for pattern in patterns:
        local, _, domain = pattern.strip().rpartition("@")
        try:
            domain = checked_domain(domain)
        except AddressError:
            continue
        if domain != mailbox.domain:
            continue
        if local == "*" or local.lower() == mailbox.local.lower():
            return True
    return False


def mask(address: str) -> str:
    """``j***@example.org``: enough to recognise a recipient in a log, not to harvest it."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else "***"
