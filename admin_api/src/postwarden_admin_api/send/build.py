"""Turn a validated :class:`SendRequest` into the bytes handed to Postfix.

Built with ``email.message.EmailMessage`` under the SMTP policy (CRLF line
ends) with 7-bit transfer encodings, so the message passes any relay. The
header names of the result are split out the way an MTA reads them and
compared with the ones we set: a
header that appeared from nowhere (an injection through some field) stops
the build instead of reaching Postfix. Address headers are written here, not
by the email package, whose folding of a long display name with ":", ";" or
"@" in it read back as other mailboxes, or as no header at all: a printable
ASCII name that is not plain words goes out as one quoted string, any other
as RFC 2047 encoded words (UTF-8, base64), folded between words and mailboxes.
They are read back all the same, strictly and the way ``parseaddr`` reads
them: a display name that would show another mailbox is refused
(:class:`AmbiguousAddresses`), and so is one a parser cannot read back.

Parsing a header value into the registry's objects and folding it again is
most of the build's time, and for the common case, a short ASCII value
with nothing to quote or encode, it changes nothing. Such values are set
raw (:func:`_plain`), and the policy writes them out exactly as given (a test
holds both ways to the same bytes); longer text is folded, and encoded, here
too (:func:`_set_text`): the registry's folding lost spaces. The content
headers of text parts are always short and plain: they skip the registry too
(:func:`_set_text_content`).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import re
import uuid
from collections.abc import Sequence
from email import policy
from email.contentmanager import (  # type: ignore[attr-defined] # _encode_text: private
    _encode_text,
    raw_data_manager,
)
from email.errors import MessageError
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import Policy
from email.utils import format_datetime, getaddresses

from postwarden_admin_api.addresses import Mailbox, has_encoded_word

from .request_model import Attachment, SendRequest


class _CachingRegistry(HeaderRegistry):
    """HeaderRegistry builds a new class on every lookup (a quarter of a millisecond
    each, most of the build time); the classes are kept here, for a bounded set of names."""

    MAX_CACHED = 256

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        found = self._classes.get(key)
        if found is None:
            found = super().__getitem__(name)
            if len(self._classes) < self.MAX_CACHED:
                self._classes[key] = found
        return found


class _Unparsed(str):
    """A header value the registry would write out unchanged, as a header object (the
    policy's protocol: a ``name`` and a ``fold``), so it is neither parsed when read
    nor folded again when written."""

    name: str

    def __new__(cls, name: str, value: str) -> _Unparsed:
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


def _set_text_content(part: EmailMessage, text: str, subtype: str = "plain") -> None:
    """What the email package's ``set_text_content`` and ``EmailMessage.set_content``
    do as we call them (UTF-8 text, nothing but a subtype), with their short, plain
    headers unparsed: parsing them (again at every read) and folding them again took
    three quarters of the build's time (a test holds both ways to the same bytes)."""
    cte, payload = _encode_text(text, "utf-8", None, part.policy)
    part.set_raw("Content-Type", _Unparsed("Content-Type", f'text/{subtype}; charset="utf-8"'))
    part.set_payload(payload)
    part.set_raw("Content-Transfer-Encoding", _Unparsed("Content-Transfer-Encoding", cte))
    if "MIME-Version" not in part:  # added after the content, as set_content does
        part.set_raw("MIME-Version", _Unparsed("MIME-Version", "1.0"))


_CONTENT = copy.deepcopy(raw_data_manager)  # its handlers, in tables of its own
_CONTENT.add_set_handler(str, _set_text_content)
POLICY = policy.SMTP.clone(cte_type="7bit", header_factory=_CachingRegistry(),
                           content_manager=_CONTENT)
# Words of letters and digits: a display name that needs no quoting and no encoding.
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_ENCODED_WORD_EDGE = re.compile(r"=\?|\?=")  # where an encoded word starts or ends
_LINE_LENGTH = POLICY.max_line_length or 78  # SMTP's policy folds at 78
_MOST_LINE = 998  # RFC 5322's limit of a line, CRLF aside
# 56 characters of base64, 68 with "=?utf-8?b?" and "?=": within RFC 2047's 75, and
# within 78 a line after "Reply-To: ", the longest of our address headers' names.
_ENCODED_WORD_BYTES = 42


class BuildError(RuntimeError):
    """The built message does not have exactly the headers we set (a bug, never a client error)."""


class AmbiguousAddresses(ValueError):
    """An address header does not read back as the mailboxes set: a display name the
    email package cannot write unambiguously (it drops the quotes of a long one it folds)."""

    def __init__(self, header: str) -> None:
        super().__init__(header)
        self.header = header


_STRICT_HEADERS = BytesHeaderParser(policy=policy.default)
_LEGACY_HEADERS = BytesHeaderParser(policy=policy.compat32)


def new_message_id(sender: Mailbox, message: uuid.UUID) -> str:
    """The Message-ID header: the outbox id, so Postfix's log names our row (.receipts)."""
    return f"<{message.hex}@{sender.domain}>"


def _plain(name: str, value: str) -> str | None:
    """``value`` when the policy would write ``name: value`` unchanged: one short line
    of printable ASCII with nothing that reads as an RFC 2047 encoded word (the
    registry decodes and re-encodes those)."""
    if len(name) + 2 + len(value) > _LINE_LENGTH or "=?" in value:
        return None
    return value if _PRINTABLE_ASCII.fullmatch(value) else None


def _plain_mailboxes(mailboxes: Sequence[Mailbox]) -> str | None:
    # Local parts are dot-atoms and domains A-labels (see .addresses): only the
    # display name can need quoting or encoding.
    shown = []
    for mailbox in mailboxes:
        if not mailbox.display_name:
            shown.append(mailbox.address)
        elif _PLAIN_PHRASE.fullmatch(mailbox.display_name):
            shown.append(f"{mailbox.display_name} <{mailbox.address}>")
        else:
            return None
    return ", ".join(shown)


def _set_addresses(message: EmailMessage, name: str, mailboxes: Sequence[Mailbox]) -> bool:
    """Set the header; True when it is not one short plain line (and must be read back)."""
    joined = _plain_mailboxes(mailboxes)
    raw = _plain(name, joined) if joined is not None else None
    if raw is not None:
        message.set_raw(name, raw)
        return False
    message.set_raw(name, _Unparsed(name, _folded_mailboxes(name, mailboxes)))
    return True


def _folded_mailboxes(name: str, mailboxes: Sequence[Mailbox]) -> str:
    """The header's value, folded (a quoted string is one word: folded inside, parseaddr
    misreads it)."""
    words = []
    for number, mailbox in enumerate(mailboxes):
        words += _display_words(mailbox.display_name)
        words.append(f"<{mailbox.address}>" if mailbox.display_name else mailbox.address)
        if number < len(mailboxes) - 1:
            words[-1] += ","
    return _folded(name, words)


def _folded(name: str, words: Sequence[str]) -> str:
    """``words`` joined by spaces, folded before a word that would take its line past 78
    characters; a longer word stays whole on a line of its own (as a Message-ID or a URL
    must: an encoded word is neither), which RFC 5322 allows up to 998."""
    lines = [f"{name}:"]
    for word in words:
        if len(lines[-1]) + 1 + len(word) > _LINE_LENGTH and lines[-1] != f"{name}:" and word:
            lines.append("")
        lines[-1] += " " + word
    return POLICY.linesep.join(lines)[len(name) + 2:]  # each next line starts with a space


def _display_words(display: str) -> list[str]:
    """Plain words as they are; other printable ASCII as one quoted string (as mail
    clients write "Smith, John": spam filters score names base64-encoded for no
    need); anything else as RFC 2047 encoded words."""
    if not display:
        return []
    if _PLAIN_PHRASE.fullmatch(display):
        return display.split(" ")
    if _PRINTABLE_ASCII.fullmatch(display):
        return ['"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return _encoded_words(display)


def _encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 encoded words (UTF-8, base64), no character split across two."""
    words: list[bytes] = [b""]
    for char in text:
        data = char.encode("utf-8")
        if len(words[-1]) + len(data) > _ENCODED_WORD_BYTES:
            words.append(b"")
        words[-1] += data
    return [f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words]


def _set_text(message: EmailMessage, name: str, value: str) -> None:
    raw = _plain(name, value)
    if raw is not None:
        message.set_raw(name, raw)
        return
    folded = _folded_text(name, value)
    if folded is None:
        folded = _folded(name, _text_words(name, value))
    message.set_raw(name, _Unparsed(name, folded))


def _text_words(name: str, value: str) -> list[str]:
    """``value`` as words to fold: printable ASCII words as they are, each run of the
    others (non-ASCII, holding "=?" or "?=", too long for a line) as RFC 2047 encoded
    words with the spaces of the run inside them (readers drop the spaces between two
    encoded words, lenient ones, the milter's among them, those between any "?=" and
    "=?"). The email package's folding lost such a space, doubled one, or wrote text
    right after an encoded word ("?=]@"), which no strict reader decodes."""
    longest = _MOST_LINE - len(name) - 2
    words: list[str] = []
    run: list[str] = []
    for word in value.split(" "):
        plain = (_PRINTABLE_ASCII.fullmatch(word) and not _ENCODED_WORD_EDGE.search(word)
                 and len(word) <= longest)
        if plain and not (run and not word):  # a run keeps the spaces it is followed by
            if run:
                words += _encoded_words(" ".join(run))
                run = []
            words.append(word)
        else:
            run.append(word)
    if run:
        words += _encoded_words(" ".join(run))
    return words


def _folded_text(name: str, value: str) -> str | None:
    """Longer printable ASCII, folded at its spaces rather than encoded: the registry
    encodes a word past a line's length, and an In-Reply-To, a References or a
    List-Unsubscribe made of encoded words is no msg-id or URL to a reader. An "=?"
    that starts no encoded word (request_model refuses those) is text like any: a URL's
    "?t=?x" went out encoded. None for other text, or a word too long for a line even
    alone."""
    if has_encoded_word(value) or not _PRINTABLE_ASCII.fullmatch(value):
        return None
    folded = _folded(name, value.split(" "))
    longest = max(len(line) for line in f"{name}: {folded}".split(POLICY.linesep))
    return folded if longest <= _MOST_LINE else None


def _attach(message: EmailMessage, request: SendRequest) -> None:
    """The files: inline ones (with a content_id) in a multipart/related around the html
    body, which shows them (request_model refuses them without one), the others in a
    multipart/mixed around all."""
    inline = [a for a in request.attachments if a.content_id is not None]
    if inline:
        # The html body: the second alternative, after the text, or the message itself.
        html = message if request.text is None else list(message.iter_parts())[1]
        html.make_related()
        html.set_param("type", "text/html")  # the root's type, which RFC 2387 requires
        for attachment in inline:
            html.attach(_file_part(attachment))
    attached = [a for a in request.attachments if a.content_id is None]
    if attached:
        message.make_mixed()
        for attachment in attached:
            message.attach(_file_part(attachment))


def _file_part(attachment: Attachment) -> EmailMessage:
    """The part of a file, named in its Content-Type too (:func:`_name_parameter`); an
    inline one with its Content-ID, unfolded: the registry would encode one too long
    for a line, which no reader then finds for its cid: URL."""
    maintype, _, subtype = attachment.content_type.partition("/")
    params = {name: value for name, value in (("charset", attachment.charset),
                                              ("method", attachment.method)) if value}
    inline = attachment.content_id is not None
    part = EmailMessage(policy=POLICY)
    part.set_content(attachment.content, maintype=maintype, subtype=subtype,
                     disposition="inline" if inline else "attachment",
                     filename=attachment.filename, params=params)
    named = f"{part['Content-Type']};{POLICY.linesep} {_name_parameter(attachment.filename)}"
    part.replace_header("Content-Type", _Unparsed("Content-Type", named))
    if inline:
        part.set_raw("Content-ID", _Unparsed("Content-ID", f"<{attachment.content_id}>"))
    return part


def _name_parameter(filename: str) -> str:
    """Content-Type's ``name`` parameter, beside Content-Disposition's ``filename``, as
    Thunderbird, Gmail and Outlook write both: the email package writes a long or
    non-ASCII name in RFC 2231 only (filename*0*=), which Outlook does not read: it
    showed such a file as ATT00001.bin. A non-ASCII name in RFC 2047 words within
    the quotes, as those clients write it and readers decode it (RFC 2047 has none in
    a quoted string, but no reader knows RFC 2231 and not this), folded between words;
    an ASCII one as it is, on a line of its own (255 characters at most: request_model,
    which also refuses the quote, the backslash and control characters in it)."""
    if filename.isascii():
        return f'name="{filename}"'
    return 'name="' + f"{POLICY.linesep} ".join(_encoded_words(filename)) + '"'


def build_message(request: SendRequest, message_id: str, now: dt.datetime) -> bytes:
    message = EmailMessage(policy=POLICY)
    address_headers = [("From", [request.sender]), ("To", request.to), ("Cc", request.cc),
                       ("Reply-To", request.reply_to)]
    if request.sender_header is not None:
        address_headers.append(("Sender", [request.sender_header]))
    read_back = {
        name: [m.key for m in mailboxes] for name, mailboxes in address_headers
        if mailboxes and _set_addresses(message, name, mailboxes)
    }
    _set_text(message, "Subject", request.subject)
    _set_text(message, "Date", format_datetime(now))
    _set_text(message, "Message-ID", message_id)
    for name, value in request.headers:
        _set_text(message, name, value)
    if request.text is not None:
        message.set_content(request.text)
        if request.html is not None:
            message.add_alternative(request.html, subtype="html")
    elif request.html is not None:
        message.set_content(request.html, subtype="html")
    _attach(message, request)
    _mime_version_at_top(message)
    expected = [name.lower() for name in message]
    data = message.as_bytes()
    _check_headers(data, expected)
    _check_parts(data, message)
    _check_addresses(data, read_back)
    return data


def _mime_version_at_top(message: EmailMessage) -> None:
    """MIME-Version in the message's header alone, as RFC 2045 has it: set_content adds
    it to every EmailMessage, and add_alternative and the file parts are ones."""
    for part in message.walk():
        if part is not message:
            del part["MIME-Version"]


def header_names(data: bytes) -> list[str]:
    """The top-level header names as a receiving MTA splits them (folded lines excluded)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode("ascii", "replace").lower()
        for line in head.split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    ]


def _check_headers(data: bytes, expected: list[str]) -> None:
    head = data.split(b"\r\n\r\n", 1)[0]
    bare_breaks = b"\r" in head.replace(b"\r\n", b"") or b"\n" in head.replace(b"\r\n", b"")
    if header_names(data) != expected or bare_breaks or b"\r\n\r\n" not in data:
        raise BuildError("the built message has headers that were not set")


def _part_heads(data: bytes, boundary: str) -> list[bytes] | None:
    """The header block of each part between ``boundary``'s delimiter lines; None
    unless the last delimiter closes the multipart."""
    delimiter = b"\r\n--" + boundary.encode("ascii")
    heads: list[bytes] = []
    at = data.find(delimiter)
    while at >= 0:
        start = at + len(delimiter)
        if data.startswith(b"--", start):
            return heads if data.find(delimiter, start) < 0 else None
        end = data.find(b"\r\n\r\n", start)
        if not data.startswith(b"\r\n", start) or end < 0:
            return None
        heads.append(data[start + 2 : end + 4])
        at = data.find(delimiter, start)
    return None


def _check_parts(data: bytes, message: EmailMessage) -> None:
    """Each multipart holds exactly the parts we built, each with exactly its headers: a
    line break that reached a part's header (a file name, a content type) through some
    field, however it got past the request checks, stops the build."""
    for part in message.walk():
        if not part.is_multipart():
            continue
        boundary = part.get_boundary()
        heads = _part_heads(data, boundary) if boundary else None
        built = [[name.lower() for name in sub.keys()] for sub in part.iter_parts()]
        if heads is None or [header_names(head) for head in heads] != built:
            raise BuildError("the built message has parts or part headers that were not set")


def _check_addresses(data: bytes, read_back: dict[str, list[str]]) -> None:
    """Each header in ``read_back`` holds exactly its addresses, in order, for the
    strict parser and for the legacy one (``parseaddr``) alike: what any reader
    sees is what the sender checks passed."""
    if not read_back:
        return
    head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    strict, legacy = _STRICT_HEADERS.parsebytes(head), _LEGACY_HEADERS.parsebytes(head)
    for name, addresses in read_back.items():
        try:
            seen_strict = [a.addr_spec.lower() for a in strict[name].addresses]
            seen_legacy = [a.lower() for _, a in getaddresses([str(legacy[name])])]
        except (MessageError, AttributeError, IndexError, TypeError, ValueError):
            # The email package's parser raises these on values it cannot read back:
            # none of ours should be one, and a reader would not show ours either.
            raise AmbiguousAddresses(name) from None
        if seen_strict != addresses or seen_legacy != addresses:
            raise AmbiguousAddresses(name)
