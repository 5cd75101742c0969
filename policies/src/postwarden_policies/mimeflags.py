"""The flags the MIME parser sets, what each one means, and which mark a message malformed.

What the parser found wrong (:func:`postwarden_policies.mimeparse.parse_message` never
raises) is reported in ``MessageFacts.flags``:

=========================  ================================================
``malformed``              set together with every flag marked (m) below
``no_headers``             (m) the message has no header section at all
``missing_header_separator``  (m) headers end at a non-header line, no blank line
``eight_bit_headers``      a header holds raw 8-bit bytes (SMTPUTF8 or junk)
``duplicate_mime_header``  (m) Content-Type/-Transfer-Encoding/-Disposition twice
                           in one entity (the first one is used)
``duplicate_header``       (m) the message has two From or two Subject headers:
                           rules read the first, some readers show the last
``malformed_content_type``  (m) a Content-Type whose type mail readers must recover
                           (a comment, '?' or ',' in it) or cannot read at all, or
                           whose boundary is not ASCII or ends in a space (readers split
                           at it differently)
``conflicting_parameter``  (m) Content-Type gives its boundary or charset twice with
                           different values (plain and RFC 2231 forms, repeats): the
                           one Thunderbird picks (the RFC 2231 form) is used
``bare_cr``                (m) a header or delimiter line ends with a lone CR (read as
                           a line end, as Python's email package and Thunderbird do)
``missing_boundary``       (m) multipart without a boundary parameter, or with
                           no delimiter line in its body
``missing_end_boundary``   (m) a multipart's close delimiter never comes, or comes
                           with no line break of its own, right after the delimiter
                           line before it, and more follows (Python's email package
                           reads it as text of the part, and what follows as parts)
``bad_base64``             (m) base64 text with foreign characters, a bad length,
                           or more text after its ``=`` padding
``padded_encoding``        (m) a base64 or quoted-printable part whose first bytes,
                           or a mark past them (``magic.MARKS``), hide behind more
                           whitespace or soft line breaks than ``transfer.HEAD_SCAN``
                           (its detected type is unknown)
``unknown_transfer_encoding``  (m) a transfer encoding outside RFC 2045
``encoded_message``        a message/rfc822 (or message/news) part that is base64 or QP encoded,
                           which RFC 2046 forbids; readers open it all the same,
                           and so it is read (and rewritten) as a message/global,
                           which may be encoded (RFC 6532), is
``partial_message``        (m) a message/partial part: a fragment of a message
                           some readers put back together, whose parts cannot
                           be looked into here
``unscanned_text``         (m) BinHexed files in text whose reads cost more than one
                           message may (``uuencode.Budget``): those after were not
                           read (their type is unknown)
``text_truncated``         the message text is longer than ``textparts.TEXT_BUDGET``: body
                           rules did not see the rest (not malformed: a long
                           log pasted inline is well-formed mail)
``uuencoded``              a text/plain part carries uuencoded, yEncoded or BinHex files (listed as
                           attachments that cannot be stripped on their own)
``unreadable_tnef``        (m) a part declared TNEF (``winmail.dat``) that is none, or a TNEF
                           stream cut short or out of place: attachments in it may
                           not be listed (see :mod:`postwarden_policies.tnefparts`)
``unreadable_smime``       (m) an S/MIME part whose signed data is cut short or malformed:
                           what it holds may not be listed (see
                           :mod:`postwarden_policies.mimetree`)
``ambiguous_from``         (m) the From header reads as another domain to a strict
                           RFC 5322 parse than to a plain search for an address
                           (a comment or a quoted name holding ``<x@other>``, ...),
                           or the strict parse fails on it (``From: Mallory <m@``)
``bidi_override``          (m) a file name holds a bidi override (U+202D, U+202E) that
                           makes readers show its letters in another order
                           ("invoice<U+202E>fdp.exe" shows as "invoiceexe.pdf")
``ambiguous_filename``     a part names its file in more than one way (filename,
                           name, RFC 2231 forms, repeats, Content-Name and
                           X-Sun-Data-Name headers) and the names differ;
                           attachment rules test every one of them
``malformed_encoded_word``  an RFC 2047 word that does not decode
``unknown_charset``        a charset neither Python nor readers (WHATWG labels) know
                           (read as UTF-8)
``unshared_charset``       a text part in a charset mail readers may decode
                           otherwise than Python (see ``charsets.read_as_readers``):
                           body rules may not see the text the reader sees
``empty_body``             the message body is empty
``too_deep``               nesting beyond ``max_depth``, or multiparts (and S/MIME signed
                           data, encoded message/global parts) nested so that their
                           bodies add up to more than 16 times
                           the message
                           (``mimetree._SEARCH_FACTOR``): not descended further
``too_many_parts``         more than ``max_parts`` entities (containers and the
                           top-level entity count): the rest is not listed
``too_many_header_fields``  more than 10,000 header fields, or 2 MiB of them, in all
                           sections together (``headers.MAX_FIELDS``,
                           ``headers.MAX_FIELD_OCTETS``): the rest is not read
``parser_error``           (m) an internal error; facts are incomplete
=========================  ================================================
"""

from __future__ import annotations

# Every flag the parser sets (the table above): a policy's ``flag:`` may name only these.
FLAGS = frozenset({
    "ambiguous_filename", "ambiguous_from", "bad_base64", "bare_cr", "bidi_override",
    "conflicting_parameter", "duplicate_header", "duplicate_mime_header", "eight_bit_headers",
    "empty_body", "encoded_message", "malformed", "malformed_content_type",
    "malformed_encoded_word", "missing_boundary", "missing_end_boundary",
    "missing_header_separator", "no_headers", "padded_encoding", "parser_error",
    "partial_message", "too_deep", "too_many_header_fields",
    "text_truncated", "too_many_parts", "unknown_charset", "unknown_transfer_encoding",
    "unreadable_smime", "unreadable_tnef", "unscanned_text", "unshared_charset", "uuencoded",
})
# What a body that never came makes the parser say: untrue of the message.
NO_BODY = frozenset({"empty_body", "missing_boundary", "missing_end_boundary"})
MALFORMED = frozenset(
    {
        "no_headers",
        "missing_header_separator",
        "duplicate_mime_header",
        "duplicate_header",
        "bidi_override",
        "malformed_content_type",
        "conflicting_parameter",
        "bare_cr",
        "missing_boundary",
        "missing_end_boundary",
        "bad_base64",
        "padded_encoding",
        "unknown_transfer_encoding",
        "partial_message",
        "unscanned_text",
        "ambiguous_from",
        "unreadable_tnef",
        "unreadable_smime",
        "parser_error",
    }
)
