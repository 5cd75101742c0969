"""The JSON body of ``POST /api/v1/send-email``, validated into a :class:`SendRequest`.

Every problem is collected with its field name before anything is refused,
so a client sees all of them at once. Nothing that could become a header
(addresses, display names, subject, extra headers, file names, tags) may
hold a control character: a CR or LF never reaches a header line.

``null`` for an optional field is that field left out, the common JSON
convention; ``from`` and ``subject`` stay required, and inside a list or
object (an address, a tag, a header's value) ``null`` is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from postwarden_admin_api.addresses import (
    AddressError,
    Mailbox,
    SeveralAddresses,
    has_control,
    has_encoded_word,
    parse_mailbox,
    shows_another_address,
)
from postwarden_admin_api.bodies import more_unknown, unknown_names
from postwarden_policies import uuencode
from postwarden_policies.charsets import (
    decode_strictly,
    known_alias,
    read_as_readers,
    readers_know,
)
from postwarden_policies.entityheaders import BIDI_OVERRIDE

from . import attachments
from .refusals import FieldProblem, Refusal, refuse

FIELDS = frozenset({
    "from", "to", "cc", "bcc", "reply_to", "subject", "text", "html", "headers",
    "attachments", "tags", "metadata",
})
OPTIONAL_FIELDS = FIELDS - {"from", "subject"}
ADDRESS_FIELDS = frozenset({"to", "cc", "bcc", "reply_to"})  # an address or a list of them
ATTACHMENT_FIELDS = frozenset({"filename", "content_type", "content", "content_id"})
# Extra headers a client may set; every other name (From, To, Bcc, Received,
# DKIM-Signature, Message-ID, Content-*, ...) is ours or Postfix's to write.
ALLOWED_HEADERS = frozenset({
    "sender", "in-reply-to", "references", "list-id", "list-unsubscribe",
    "list-unsubscribe-post", "list-help", "list-subscribe", "list-owner", "list-archive",
    "list-post", "auto-submitted", "precedence", "keywords", "comments", "importance",
    "priority", "x-priority", "organization", "feedback-id",
})
# Headers of URLs (RFC 2369) and message ids: RFC 2047 encodes text, so in these a
# character outside ASCII became an encoded word no reader takes for a URL or an id
# (List-Unsubscribe's mailto: to an IDN domain left mail with no unsubscribe link).
# List-Id's too, in its <list-id> alone: the name before it is a phrase.
_BRACKETED = re.compile(r"<[^<>]*>?")
ASCII_HEADERS = frozenset({
    "in-reply-to", "references", "list-unsubscribe", "list-unsubscribe-post", "list-help",
    "list-subscribe", "list-owner", "list-archive", "list-post",
})
# Lists of message ids, in which any white space (a fold too) is one separator: a parsed
# message's References, as Python's email package (compat32) and others give it, keeps
# its folding, which a reply copies.
MESSAGE_ID_HEADERS = frozenset({"in-reply-to", "references"})
_FOLDED_BLANKS = re.compile(r"(?:\r?\n)?[ \t]+")
ASCII_HEADER_DETAIL = ("URLs and message ids must be ASCII: write an internationalised "
                       "domain as its A-label (xn--...), other characters percent-encoded")
RESERVED_HEADER_PREFIXES = ("x-postwarden-",)
# "_" too (X-Campaign_Id): RFC 5322 allows it, and clients' own X- headers have it. A
# reserved prefix is read with "_" as "-" (X-Postwarden_Id): software that folds one
# into the other, as CGI does header names, would take it for ours.
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,75}")
MAX_TAG = 64
TAG = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_TAG}}}")
TAG_DETAIL = f"1 to {MAX_TAG} of A-Z a-z 0-9 _ . : - (case told apart)"
# type/subtype, and for a text or XML type its charset (a text file in UTF-8 went out with
# none, which readers take for their default, windows-1252 say, and show garbled), for a
# calendar its method (RFC 5546: Outlook shows an invitation's Accept and Decline by it).
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}")
_PARAMETER = re.compile(r'(?P<name>charset|method)=(?P<q>"?)(?P<value>[a-z0-9_.:()+-]{1,40})(?P=q)')
CONTENT_TYPE_DETAIL = ("not a type/subtype, with at most a text or XML type's ; charset=NAME "
                       "and text/calendar's ; method=NAME")
CALENDAR_METHODS = ("PUBLISH", "REQUEST", "REPLY", "ADD", "CANCEL", "REFRESH", "COUNTER",
                    "DECLINECOUNTER")
MAX_SUBJECT = 998
MAX_HEADERS = 20
MAX_HEADER_VALUE = 900
# A reply's References is its parent's and the parent's id (RFC 5322 3.6.4), as long as
# its thread: 900 characters are 15 ids. Each word stays within MAX_HEADER_VALUE, so
# that it folds between its ids (one too long for a line would be encoded).
MAX_REFERENCES = 8000
REFERENCES_WORD_DETAIL = (f"at most {MAX_HEADER_VALUE} characters between spaces: separate "
                          "the message ids with spaces")
SHOWN_NAME = 80  # characters of an invalid header name given back (a valid one has 76)
MAX_ATTACHMENTS = 20
MAX_FILENAME = 255
# An inline file's Content-ID, without its angle brackets: what the html names as
# "cid:logo". RFC 5322's atext with "." and "@" (a msg-id's), no "%", which a cid: URL
# reads as an escape.
MAX_CONTENT_ID = 255
CONTENT_ID = re.compile(rf"[A-Za-z0-9!#$&'*+/=?^_`{{|}}~.@-]{{1,{MAX_CONTENT_ID}}}")
CONTENT_ID_DETAIL = (f"1 to {MAX_CONTENT_ID} of A-Z a-z 0-9 . @ and !#$&'*+/=?^_`{{|}}~-, "
                     "without <>, cid: or %")
MAX_TAGS = 10
MAX_METADATA_BYTES = 2048
ENCODED_WORD_DETAIL = "RFC 2047 encoded words are not accepted: send the text itself"
# "=" only completes the last group of four: more is a client's bug (two encodings
# joined, a length miscounted), whose content may not be what was meant.
EXCESS_PADDING_DETAIL = "not valid base64: \"=\" after a complete group of 4 characters"
SHOWN_ADDRESS_DETAIL = ("the display name holds an address that is not this one: "
                        "readers would show it as the sender")


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str  # type/subtype, lower case
    content: bytes
    charset: str | None = None  # a text type's, as given
    content_id: str | None = None  # an inline file's, shown in the html body
    method: str | None = None  # a calendar's (text/calendar), upper case


@dataclass(frozen=True, slots=True)
class Caps:
    """The limits of the runtime settings that validation needs."""

    max_recipients: int
    max_message_bytes: int
    max_attachment_bytes: int


@dataclass(frozen=True, slots=True)
class SendRequest:
    sender: Mailbox
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    bcc: tuple[Mailbox, ...]
    reply_to: tuple[Mailbox, ...]
    subject: str
    text: str | None
    html: str | None
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    sender_header: Mailbox | None = None  # the Sender entry of headers, parsed (not in headers)
    lone: frozenset[str] = frozenset()  # address fields given as one string, not a list

    def place(self, name: str, index: int) -> str:
        """The field of address ``index`` of ``name``, as the request gave it."""
        return address_place(name, index, self.lone)

    @property
    def recipients_by_field(self) -> tuple[tuple[Mailbox, str], ...]:
        """Every envelope recipient once (by address, case-insensitively), in order
        (to, cc, bcc), as first given, with the field that named it first."""
        seen: dict[str, tuple[Mailbox, str]] = {}
        for field_name, mailboxes in (("to", self.to), ("cc", self.cc), ("bcc", self.bcc)):
            for mailbox in mailboxes:
                seen.setdefault(mailbox.key, (mailbox, field_name))
        return tuple(seen.values())

    @property
    def recipients(self) -> tuple[Mailbox, ...]:
        """Every envelope recipient once, in order (to, cc, bcc)."""
        return tuple(mailbox for mailbox, _ in self.recipients_by_field)


def address_place(name: str, index: int, lone: frozenset[str]) -> str:
    """``to[3]``; ``to`` alone for a field given as one string, which has no index."""
    return name if name in lone else f"{name}[{index}]"


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
        return False
    return True


def _storable(value: Any) -> bool:
    """A metadata scalar Postgres's jsonb takes: no NUL in text, no NaN or infinity
    (which Python's JSON parser accepts)."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int | bool | None)


def _embedded_reason(text: str, budget: uuencode.Budget) -> str | None:
    """Why a file uuencoded (or yEncoded, BinHexed) in the text body is refused: the
    milter and Thunderbird list it as an attachment. Its lines as the build ends them
    and the milter reads them, decoded (bytes.splitlines: a bare CR ends one too; CRLF
    after each, which the BinHex reads count)."""
    return attachments.embedded_reason(
        b"".join(line + b"\r\n" for line in text.encode().splitlines()), budget)


def _outside_ascii_where_only_ascii_reads(name: str, text: str) -> bool:
    """Whether ``text``, the value of header ``name`` (lower case), holds a character
    outside ASCII where only ASCII reads (see ASCII_HEADERS)."""
    if name == "list-id":
        return not all(found.isascii() for found in _BRACKETED.findall(text))
    return name in ASCII_HEADERS and not text.isascii()


# Types besides text/* that define a charset parameter: XML's (RFC 7303), an e-invoice's.
_XML_TYPES = frozenset({"application/xml", "application/xml-dtd",
                        "application/xml-external-parsed-entity"})


def _takes_charset(media_type: str) -> bool:
    return media_type.startswith("text/") or media_type in _XML_TYPES or media_type.endswith(
        "+xml")


def _media_type(text: str) -> tuple[str, dict[str, str]] | None:
    """``text`` (lower case) as its type/subtype and parameters; None unless it is
    one, with charset and method at most once each."""
    media_type, *given = (part.strip(" \t") for part in text.split(";"))
    parameters: dict[str, str] = {}
    for parameter in given:
        found = _PARAMETER.fullmatch(parameter)
        if found is None or found["name"] in parameters:
            return None
        parameters[found["name"]] = found["value"]
    return (media_type, parameters) if _MEDIA_TYPE.fullmatch(media_type) else None


def _parameters_problem(media_type: str, parameters: dict[str, str],
                        content: bytes) -> str | None:
    """Why ``parameters`` cannot be given to this attachment (None: they can)."""
    method = parameters.get("method")
    if method is not None and media_type != "text/calendar":
        return "a method is a parameter of text/calendar only"
    if method is not None and method.upper() not in CALENDAR_METHODS:
        return f"method is not one of RFC 5546's: {', '.join(CALENDAR_METHODS)}"
    charset = parameters.get("charset")
    return None if charset is None else _charset_problem(media_type, charset, content)


def _charset_problem(media_type: str, charset: str, content: bytes) -> str | None:
    """Why ``charset`` cannot label this attachment (None: it can)."""
    if not _takes_charset(media_type):
        return "a charset is a parameter of text and XML types only"
    # windows-874 (which Python does not know) as a label of it Python knows.
    label = known_alias(charset) or charset
    if not readers_know(label):
        return f"charset {charset} is not one mail readers decode as we do"
    try:
        decode_strictly(content, label)  # as readers decode it: us-ascii as windows-1252
    except UnicodeDecodeError:
        return f"the content is not {charset} text"
    if not read_as_readers(label, content):  # ISO-2022-JP two-byte runs, as a text body's
        return f"mail readers do not read the content as {charset} text as we do"
    return None


class _Reader:
    """Reads fields of the body, noting a problem for every bad one."""

    def __init__(self, body: dict[str, Any], caps: Caps, lone: frozenset[str]) -> None:
        self.body = body
        self.caps = caps
        self.lone = lone  # address fields given as one string: named without an index
        self.problems: list[FieldProblem] = []
        self.sender_header: Mailbox | None = None  # the Sender header, once it parsed
        self.sender_field = "headers.Sender"  # its field, named as the request names it
        self.content_ids: dict[str, str] = {}  # the field of each, by its lower case
        self.binhex = uuencode.Budget()  # the request's BinHex reads, as the message's

    def unknown(self, data: dict[str, Any], known: frozenset[str], prefix: str = "") -> None:
        """A problem for each field of ``data`` not in ``known`` (named after ``prefix``), as
        :func:`~postwarden_admin_api.bodies.unknown_names` lists them; the rest counted in
        one more, on the object (``prefix`` without its dot, "body" at the top)."""
        listed, more = unknown_names(data, known)
        for name in listed:
            self.problem(prefix + name, Refusal.INVALID_FIELD, "unknown field")
        if more:
            self.problem(prefix.rstrip(".") or "body", Refusal.INVALID_FIELD, more_unknown(more))

    def problem(self, name: str, refusal: Refusal, detail: str) -> None:
        self.problems.append(FieldProblem(name, refusal, detail))

    def string(self, name: str, value: Any, refusal: Refusal = Refusal.INVALID_FIELD) -> str | None:
        if not isinstance(value, str) or not _encodable(value):
            self.problem(name, refusal, "expected a string")
            return None
        return value

    def mailbox(self, where: str, text: str, refusal: Refusal, *, shown: bool,
                list_hint: str = "") -> Mailbox | None:
        """``text`` parsed; None when refused. ``shown``: a field readers take as who
        the mail is from (From, Sender, Reply-To), whose display name must not hold
        another address."""
        try:
            mailbox = parse_mailbox(text)
        except SeveralAddresses as exc:
            self.problem(where, refusal, f"{exc}{list_hint}")
        except AddressError as exc:
            self.problem(where, refusal, str(exc))
        else:
            if not (shown and shows_another_address(mailbox)):
                return mailbox
            self.problem(where, refusal, SHOWN_ADDRESS_DETAIL)
        return None

    def mailboxes(self, name: str, refusal: Refusal, too_many: Refusal, *,
                  shown: bool = False) -> tuple[Mailbox, ...]:
        items = self.body.get(name, [])  # a lone address is a list of one (read_fields)
        if not isinstance(items, list):
            self.problem(name, refusal, "expected an address or a list of addresses")
            return ()
        # Counted as listed, before parsing: duplicates are sent once but each is
        # written to the header, and writing tens of thousands took minutes of CPU.
        if len(items) > self.caps.max_recipients:
            self.problem(name, too_many, f"at most {self.caps.max_recipients} addresses")
            return ()
        found: list[Mailbox] = []
        for index, item in enumerate(items):
            where = address_place(name, index, self.lone)
            text = self.string(where, item, refusal)
            mailbox = None if text is None else self.mailbox(
                where, text, refusal, shown=shown, list_hint=": give a list")
            if mailbox is not None:
                found.append(mailbox)
        return tuple(found)

    def sender(self) -> Mailbox | None:
        text = self.string("from", self.body.get("from"))
        return None if text is None else self.mailbox("from", text, Refusal.INVALID_FIELD,
                                                      shown=True)

    def subject(self) -> str:
        subject = self.string("subject", self.body.get("subject"), Refusal.INVALID_SUBJECT)
        if subject is None:
            return ""
        if not subject.strip():
            self.problem("subject", Refusal.INVALID_SUBJECT, "the subject is empty")
        elif len(subject) > MAX_SUBJECT:
            self.problem("subject", Refusal.INVALID_SUBJECT, "longer than 998 characters")
        elif has_control(subject):
            self.problem("subject", Refusal.INVALID_SUBJECT, "contains control characters")
        elif has_encoded_word(subject):
            self.problem("subject", Refusal.INVALID_SUBJECT, ENCODED_WORD_DETAIL)
        return subject

    def bodies(self) -> tuple[str | None, str | None]:
        parts: list[str | None] = []
        found = len(self.problems)
        for name in ("text", "html"):
            value = self.body.get(name)
            text = None if value is None else self.string(name, value)
            if text is not None and len(text.encode()) > self.caps.max_message_bytes:
                self.problem(name, Refusal.BODY_TOO_LARGE, "larger than the message size limit")
            elif name == "text" and text and (
                    reason := _embedded_reason(text, self.binhex)) is not None:
                self.problem(name, Refusal.ATTACHMENT_NOT_ALLOWED, reason)
            parts.append(text or None)
        # One that is no string is not empty: "expected a string" says what is wrong.
        # White space alone is empty too: it went out as a blank message.
        if all(not part or part.isspace() for part in parts) and len(self.problems) == found:
            given = "text" in self.body or "html" in self.body
            self.problem("text", Refusal.EMPTY_BODY, "text and html are empty or white space "
                         "alone" if given else "give text, html or both")
        return _without_blank(parts[0], parts[1])

    def headers(self) -> tuple[tuple[str, str], ...]:
        raw = self.body.get("headers", {})
        if not isinstance(raw, dict) or len(raw) > MAX_HEADERS:
            self.problem("headers", Refusal.INVALID_HEADER, "expected at most 20 name: value")
            return ()
        found: list[tuple[str, str]] = []
        seen: set[str] = set()
        for name, value in raw.items():
            where = f"headers.{name}"
            lower = name.lower()
            if not _HEADER_NAME.fullmatch(name):  # the field stays "headers", as it was
                self.problem("headers", Refusal.INVALID_HEADER,
                             f"not a valid header name: {json.dumps(name[:SHOWN_NAME])}")
            elif lower in seen:  # JSON keys differ in case only: one header, given twice
                self.problem(where, Refusal.INVALID_HEADER, "this header is given twice")
            elif lower.replace("_", "-").startswith(RESERVED_HEADER_PREFIXES) or not (
                lower in ALLOWED_HEADERS or lower.startswith("x-")
            ):
                self.problem(where, Refusal.INVALID_HEADER, "this header is reserved")
            elif (text := self.string(where, value, Refusal.INVALID_HEADER)) is not None:
                if lower in MESSAGE_ID_HEADERS:
                    text = _FOLDED_BLANKS.sub(" ", text).strip(" ")
                if problem := _header_value_problem(lower, text):
                    self.problem(where, Refusal.INVALID_HEADER, problem)
                elif lower == "sender":  # kept parsed, as sender_header
                    self.sender_field = where
                    self.sender_header = self.mailbox(where, text, Refusal.INVALID_HEADER,
                                                      shown=True)
                else:
                    found.append((name, text))
            seen.add(lower)
        return tuple(found)

    def attachments(self, html: bool) -> tuple[Attachment, ...]:
        """The attachments; ``html``: whether the request has an html body, which alone
        shows inline files."""
        raw = self.body.get("attachments", [])
        if not isinstance(raw, list) or len(raw) > MAX_ATTACHMENTS:
            self.problem("attachments", Refusal.INVALID_FIELD, "expected at most 20 attachments")
            return ()
        found = []
        for index, item in enumerate(raw):
            attachment = self._attachment(f"attachments[{index}]", item, html)
            if attachment is not None:
                found.append(attachment)
        return tuple(found)

    def _attachment(self, where: str, item: Any, html: bool) -> Attachment | None:
        if not isinstance(item, dict):
            self.problem(where, Refusal.INVALID_FIELD, "expected filename, content_type, content")
            return None
        self.unknown(item, ATTACHMENT_FIELDS, f"{where}.")
        filename = self.string(f"{where}.filename", item.get("filename"))
        ctype = self.string(f"{where}.content_type", item.get("content_type"))
        encoded = self.string(f"{where}.content", item.get("content"))
        if filename is not None and (problem := _filename_problem(filename)):
            self.problem(f"{where}.filename", Refusal.INVALID_FIELD, problem)
            filename = None
        media = _media_type(ctype.lower()) if ctype is not None else None
        if ctype is not None and media is None:
            self.problem(f"{where}.content_type", Refusal.INVALID_FIELD, CONTENT_TYPE_DETAIL)
        content = self._base64(f"{where}.content", encoded)
        content_id = self._content_id(f"{where}.content_id", item, html)
        if filename is None or media is None or content is None or content_id == "":
            return None
        ctype, parameters = media
        if problem := _parameters_problem(ctype, parameters, content):
            self.problem(f"{where}.content_type", Refusal.INVALID_FIELD, problem)
            return None
        if len(content) > self.caps.max_attachment_bytes:
            self.problem(where, Refusal.MESSAGE_TOO_LARGE, "larger than the attachment limit")
            return None
        reason = attachments.refusal_reason(filename, ctype, content, self.binhex)
        if reason is not None:
            self.problem(where, Refusal.ATTACHMENT_NOT_ALLOWED, reason)
            return None
        method = parameters.get("method")
        return Attachment(filename, ctype, content, parameters.get("charset"), content_id,
                          method and method.upper())

    def _content_id(self, where: str, item: dict[str, Any], html: bool) -> str | None:
        """The attachment's content_id: None if it has none, "" if it is refused."""
        if "content_id" not in item:
            return None
        content_id = self.string(where, item["content_id"])
        if content_id is None:
            return ""
        if not CONTENT_ID.fullmatch(content_id):
            self.problem(where, Refusal.INVALID_FIELD, CONTENT_ID_DETAIL)
        elif (first := self.content_ids.setdefault(content_id.lower(), where)) != where:
            # Readers may compare them in any case: "Logo" and "logo" are one.
            shown = first.removesuffix(".content_id")
            self.problem(where, Refusal.INVALID_FIELD, f"{shown} has this content_id too")
        elif not html:
            self.problem(where, Refusal.INVALID_FIELD,
                         "an inline file is shown by the html body (cid:): give html")
        else:
            return content_id
        return ""

    def _base64(self, where: str, encoded: str | None) -> bytes | None:
        if encoded is None:
            return None
        # Line breaks, as MIME encoders wrap it (`base64`, Python's encodebytes,
        # Java's MIME encoder: 76-character lines); anything else is refused.
        text = encoded.replace("\r", "").replace("\n", "")
        try:
            content = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.problem(where, Refusal.INVALID_FIELD, "not valid base64")
            return None
        # Strict decoding still takes "YWJj=" and "YWJj====" for "abc".
        if len(text) % 4 or len(text) - len(text.rstrip("=")) > 2:
            self.problem(where, Refusal.INVALID_FIELD, EXCESS_PADDING_DETAIL)
            return None
        return content

    def tags(self) -> tuple[str, ...]:
        """The tags, each named by its place when refused. Tags are told apart by case,
        as the search matches them; one given twice is refused (it was stored, and
        counted toward MAX_TAGS, twice)."""
        raw = self.body.get("tags", [])
        if not isinstance(raw, list) or len(raw) > MAX_TAGS:
            self.problem("tags", Refusal.INVALID_FIELD, f"expected a list of at most {MAX_TAGS} "
                         "tags")
            return ()
        first: dict[str, str] = {}
        for index, tag in enumerate(raw):
            where = f"tags[{index}]"
            if not isinstance(tag, str) or not TAG.fullmatch(tag):
                self.problem(where, Refusal.INVALID_FIELD, TAG_DETAIL)
            elif (earlier := first.setdefault(tag, where)) != where:
                self.problem(where, Refusal.INVALID_FIELD, f"{earlier} has this tag too")
        return tuple(first)

    def metadata(self) -> dict[str, Any]:
        raw = self.body.get("metadata", {})
        if not isinstance(raw, dict):
            self.problem("metadata", Refusal.INVALID_FIELD, "expected an object")
            return {}
        if problem := _metadata_problem(raw):
            self.problem("metadata", Refusal.INVALID_FIELD, problem)
            return {}
        return raw


def _metadata_problem(raw: dict[str, Any]) -> str | None:
    """Why ``raw`` cannot be the metadata, naming the key at fault."""
    for key, value in raw.items():
        shown = json.dumps(key[:SHOWN_NAME])
        if not _storable(key):
            return f"the key {shown} holds a NUL character"
        if isinstance(value, dict | list):
            return (f"the value of {shown} is a list or object: give a string, number, "
                    "boolean or null")
        if not _storable(value):
            return f"the value of {shown} holds a NUL character, or is no finite number"
    # As compact JSON, as clients write it (Python's ", " separators added a byte or two
    # a key to what the client sent)
    size = len(json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
               .encode("utf-8", "replace"))
    if size > MAX_METADATA_BYTES:
        return f"at most {MAX_METADATA_BYTES} bytes as compact JSON in UTF-8 ({size} given)"
    return None


def _without_blank(text: str | None, html: str | None) -> tuple[str | None, str | None]:
    """``text`` and ``html``, one that is white space alone left out beside one that is
    not: a template rendered blank went out as an alternative of its own, which readers
    showed as a blank message (most show html; text-preferring ones and previews, text)."""
    if text and html and text.isspace() != html.isspace():
        return (None, html) if text.isspace() else (text, None)
    return text, html


def _header_value_problem(lower: str, text: str) -> str | None:
    """Why ``text`` cannot be the value of header ``lower`` (lower case), each case told
    apart."""
    if not text.strip():
        return "empty: give a value, or leave the header out"
    most = MAX_REFERENCES if lower == "references" else MAX_HEADER_VALUE
    if len(text) > most:
        return f"at most {most} characters"
    if has_control(text):
        return "holds a control character (a line break among them)"
    if has_encoded_word(text):
        return ENCODED_WORD_DETAIL
    if _outside_ascii_where_only_ascii_reads(lower, text):
        return ASCII_HEADER_DETAIL
    if lower == "references" and max(map(len, text.split(" "))) > MAX_HEADER_VALUE:
        return REFERENCES_WORD_DETAIL
    return None


def _filename_problem(filename: str) -> str | None:
    """Why ``filename`` is no plain file name, each case told apart."""
    if not filename:
        return "empty: give the file's name"
    if not filename.replace(".", "").strip():
        # "..": no file a reader could save (a path's step up where one is joined)
        return "dots and blanks alone are no file name"
    if len(filename) > MAX_FILENAME:
        return f"at most {MAX_FILENAME} characters"
    if has_control(filename):
        return "holds a control character"
    if has_encoded_word(filename):
        return ENCODED_WORD_DETAIL
    if any(c in filename for c in '/\\"'):
        return "holds /, \\ or \": give the file's name alone, without a path or quotes"
    if BIDI_OVERRIDE.search(filename):
        # "invoice\u202efdp.txt" shows as invoicetxt.pdf: the milter flags it
        # bidi_override (embeddings and isolates, in right-to-left names, pass).
        return "holds a bidi override, which shows its letters in another order"
    return None


def read_fields(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as :func:`parse_request` reads it: an optional field given as null
    left out, a lone address (``"to": "a@x"``) a list of one. The Idempotency-Key
    digest is taken over this, so such a difference makes no other request. A walk over
    the top-level keys only: it costs nothing worth sparing twice."""
    return {name: [value] if name in ADDRESS_FIELDS and isinstance(value, str) else value
            for name, value in body.items()
            if value is not None or name not in OPTIONAL_FIELDS}


def parse_request(
    body: Any, caps: Caps, sender_allowed: Callable[[Mailbox], bool],
    found: Sequence[FieldProblem] = (),
) -> SendRequest:
    """Validate ``body``; raise one ApiError
    listing every problem found, ``found`` (those of the request's HTTP headers) first."""
    if not isinstance(body, dict):
        not_object = FieldProblem("body", Refusal.INVALID_FIELD, "expected a JSON object")
        raise refuse([*found, not_object])
    lone = frozenset(name for name in ADDRESS_FIELDS if isinstance(body.get(name), str))
    reader = _Reader(read_fields(body), caps, lone)
    reader.problems.extend(found)
    reader.unknown(body, FIELDS)
    sender = reader.sender()
    if sender is not None and not sender_allowed(sender):
        reader.problem("from", Refusal.SENDER_NOT_ALLOWED, "not an allowed sender for this key")
    to, cc, bcc = (reader.mailboxes(name, Refusal.INVALID_RECIPIENT, Refusal.TOO_MANY_RECIPIENTS)
                   for name in ("to", "cc", "bcc"))
    reply_to = reader.mailboxes("reply_to", Refusal.INVALID_FIELD, Refusal.INVALID_FIELD,
                                shown=True)
    count = len({m.key for m in (*to, *cc, *bcc)})
    recipient_refusals = (Refusal.INVALID_RECIPIENT, Refusal.TOO_MANY_RECIPIENTS)
    if count == 0 and not any(p.refusal in recipient_refusals for p in reader.problems):
        reader.problem("to", Refusal.INVALID_RECIPIENT, "at least one recipient is required")
    elif count > caps.max_recipients:
        # Named "to" however they are spread: say that cc and bcc count too.
        reader.problem("to", Refusal.TOO_MANY_RECIPIENTS,
                       f"at most {caps.max_recipients} different recipients in to, cc and "
                       f"bcc together ({count} given)")
    subject = reader.subject()
    text, html = reader.bodies()
    headers = reader.headers()
    sender_header = reader.sender_header
    if sender_header is not None and not sender_allowed(sender_header):
        reader.problem(reader.sender_field, Refusal.SENDER_NOT_ALLOWED, "not an allowed sender")
    request_attachments = reader.attachments(html is not None)
    tags = reader.tags()
    metadata = reader.metadata()
    if reader.problems or sender is None:
        raise refuse(reader.problems)
    return SendRequest(
        sender, to, cc, bcc, reply_to, subject, text, html, headers,
        request_attachments, tags, metadata, sender_header, lone,
    )
