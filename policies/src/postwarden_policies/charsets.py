"""Charsets as mail readers know them: decoding text, and whether readers see what we see.

Python knows more codecs and labels than readers do (the WHATWG Encoding
Standard's), and readers know a few labels Python does not. Text rules must
read the text readers show, and the sanitizer may leave bytes alone only where
readers see the markup it checked.
"""

from __future__ import annotations

import codecs
import functools
import re


def _label(charset: str) -> str:
    return charset.strip().strip('"').lower()


# Codecs whose every label the WHATWG Encoding Standard reads as a superset: a byte
# past ASCII that Python reads as U+FFFD (in ASCII) or a C1 control (in ISO-8859-1)
# is a letter or a quotation mark there, in the text readers show; a Windows
# character (NEC's circled digits in Shift_JIS, Korean's UHC syllables, GBK's, Big5's
# HKSCS and ETEN ones) is U+FFFD to Python and its trail byte a letter (ASCII both),
# or another character.
_WHATWG_SUPERSETS = {
    "ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254",
    "iso8859-11": "cp874", "tis-620": "cp874",
    "shift_jis": "cp932", "euc_kr": "cp949", "gb2312": "gb18030", "gbk": "gb18030",
    "big5": "big5hkscs",
}


def _text_codec(charset: str | None) -> codecs.CodecInfo | None:
    """The text codec for ``charset`` (default UTF-8), as readers decode it; None when
    unknown."""
    try:
        info = codecs.lookup(_label(charset or "utf-8"))
    except (LookupError, ValueError):  # ValueError: a name with a NUL in it
        return None
    # codecs also holds bytes-to-bytes transforms (zlib, base64, rot13): refuse them.
    if not getattr(info, "_is_text_encoding", True):
        return None
    superset = _WHATWG_SUPERSETS.get(info.name)
    return info if superset is None else codecs.lookup(superset)


# The codecs of the WHATWG Encoding Standard, which mail readers decode by, as
# Python names them: these read the ASCII bytes (the markup) as readers do.
# Others Python knows, readers do not (EBCDIC, UTF-32, UTF-7, johab, HZ,
# ISO-2022-JP-2, unicode-escape, ...), and they read those bytes in an
# ASCII-based fallback where Python may see no markup at all. (ASCII, ISO-8859-1, -9
# and -11, Shift_JIS, EUC-KR, GB2312, GBK and Big5 are read as their supersets:
# _WHATWG_SUPERSETS.)
_SHARED_CODECS = frozenset({
    "utf-8", "utf-16", "utf-16-le", "utf-16-be", "cp866", "koi8-r", "koi8-u",
    "mac-roman", "mac-cyrillic", "cp874", "gb18030", "big5hkscs",
    "euc_jp", "iso2022_jp", "cp932", "cp949",
    *(f"iso8859-{n}" for n in range(2, 17) if n not in (9, 11, 12)),
    *(f"cp{n}" for n in range(1250, 1259)),
})
# The labels readers look a charset up by (the WHATWG Encoding Standard's, of the
# encodings above). Python knows more spellings (utf16, u16, iso2022jp, latin-1,
# ...), which readers do not: they read such a part in an ASCII-based fallback.
_WHATWG_LABELS = frozenset("""
    unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8
    866 cp866 csibm866 ibm866
    csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 iso_8859-2:1987 l2 latin2
    csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 iso_8859-3:1988 l3 latin3
    csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 iso_8859-4:1988 l4 latin4
    csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 iso_8859-5
    iso_8859-5:1988
    arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 iso-8859-6-e
    iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987
    csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 iso8859-7 iso88597
    iso_8859-7 iso_8859-7:1987 sun_eu_greek
    csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 iso8859-8 iso88598
    iso_8859-8 iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical
    csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6
    iso-8859-13 iso8859-13 iso885913 iso-8859-14 iso8859-14 iso885914
    csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9 iso-8859-16
    cskoi8r koi koi8 koi8-r koi8_r koi8-ru koi8-u
    csmacintosh mac macintosh x-mac-roman x-mac-cyrillic x-mac-ukrainian
    dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874
    cp1250 windows-1250 x-cp1250 cp1251 windows-1251 x-cp1251
    ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 iso8859-1
    iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252
    cp1253 windows-1253 x-cp1253
    cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 iso_8859-9:1989 l5
    latin5 windows-1254 x-cp1254
    cp1255 windows-1255 x-cp1255 cp1256 windows-1256 x-cp1256 cp1257 windows-1257 x-cp1257
    cp1258 windows-1258 x-cp1258
    chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk gb18030
    big5 big5-hkscs cn-big5 csbig5 x-x-big5
    cseucpkdfmtjapanese euc-jp x-euc-jp csiso2022jp iso-2022-jp
    csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis
    cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 ksc5601
    ksc_5601 windows-949
    unicodefffe utf-16be csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le
""".split())
# The WHATWG labels above that Python does not know, and the codec of the encoding
# each names there. Readers decode by them, so body rules and header rules read
# text so labelled with them (``decode_as_readers``); ``decode_bytes`` does not,
# since the sanitizer cannot write a part back under such a label.
_WHATWG_ONLY = {
    **dict.fromkeys(("unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"),
                    "utf-8"),
    **{f"iso8859{n}": f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8)},
    **{f"iso88591{n}": f"iso8859-1{n}" for n in (0, 3, 4, 5)},
    **dict.fromkeys(("csiso88596e", "csiso88596i", "iso-8859-6-e", "iso-8859-6-i"), "iso8859-6"),
    "sun_eu_greek": "iso8859-7",
    **dict.fromkeys(("csiso88598e", "iso-8859-8-e", "visual", "csiso88598i", "iso-8859-8-i",
                     "logical"), "iso8859-8"),
    "csisolatin9": "iso8859-15",
    "koi": "koi8-r", "koi8": "koi8-r", "koi8-ru": "koi8-u",
    **dict.fromkeys(("csmacintosh", "mac", "x-mac-roman"), "mac-roman"),
    **dict.fromkeys(("x-mac-cyrillic", "x-mac-ukrainian"), "mac-cyrillic"),
    **dict.fromkeys(("dos-874", "iso885911", "windows-874"), "cp874"),
    **{f"x-cp{n}": f"cp{n}" for n in range(1250, 1259)},
    "iso88591": "cp1252", "iso88599": "cp1254",
    **dict.fromkeys(("csgb2312", "gb_2312", "gb_2312-80", "x-gbk"), "gbk"),
    **dict.fromkeys(("cn-big5", "x-x-big5"), "big5hkscs"),
    **dict.fromkeys(("cseucpkdfmtjapanese", "x-euc-jp"), "euc_jp"),
    **dict.fromkeys(("windows-31j", "x-sjis"), "cp932"),
    **dict.fromkeys(("cseuckr", "csksc56011987", "iso-ir-149", "ks_c_5601-1989", "ksc_5601",
                     "windows-949"), "cp949"),
    "unicodefffe": "utf-16-be",
    **dict.fromkeys(("csunicode", "iso-10646-ucs-2", "ucs-2", "unicode", "unicodefeff"),
                    "utf-16-le"),
}
# Labels of UTF-7 that Windows' MLang (Outlook, Internet Explorer) decodes, as code page
# 65000, and neither WHATWG nor Python knows: a part so labelled may show readers
# markup (``+ADw-script+AD4-``) that an ASCII-based reading never saw.
_MLANG_UTF7 = dict.fromkeys(
    ("x-unicode-1-1-utf-7", "unicode-2-0-utf-7", "x-unicode-2-0-utf-7", "csunicode11utf7"),
    "utf-7")
# Every label readers decode and Python does not know, and the codec they decode it with.
_READERS_ONLY = {**_WHATWG_ONLY, **_MLANG_UTF7}
# The ISO-2022-JP escapes WHATWG's decoder and Python's both know. Python's also
# switches on others (ESC $ ( B, ESC $ A, ...) and reads the ASCII after them as
# kanji; WHATWG's also on ESC ( I, to half-width katakana, where '"' and ">" are
# letters, and Python's reads that as an error and goes on in ASCII.
_UNSHARED_ISO2022JP_ESCAPE = re.compile(rb"\x1b(?!\(B|\(J|\$@|\$B)")
# Two-byte mode holding anything but whole pairs of 0x21-0x7E up to the next escape.
# Decoders part there: on a lone byte before ESC ( B Python reads the escape as an
# error and the ASCII after it as kanji, WHATWG's goes back to ASCII; at a line end
# Python reads on in kanji, some readers (ICU's decoder) return to ASCII. RFC 1468
# has senders write whole pairs and switch back before a line end.
_ISO2022JP_UNEVEN_KANJI = re.compile(
    rb"\x1b\$[@B](?:[\x21-\x7e]{2})*(?:[^\x1b\x21-\x7e]|[\x21-\x7e](?:[^\x21-\x7e]|\Z))")
# An ISO-2022 designation (ESC $ B, ESC ( J, ESC $ ) C, ...). Readers guess the charset
# of a part labelled with none they know (chardetng, ICU's detector), and read one
# holding such an escape as ISO-2022-JP (or -KR, -CN), where it turns the ASCII
# after it, quotes and ">" among them, into two-byte characters.
_ISO2022_DESIGNATION = re.compile(rb"\x1b[$()]")


_ASCII = "".join(map(chr, range(128)))


@functools.cache
def _ascii_transparent(codec: str) -> bool:
    """Whether every ASCII byte reads as itself and no other byte reads as, or joins,
    ASCII (UTF-8 and the single-byte ASCII-based codecs): then any ASCII-based
    reading of the bytes, a reader's fallback say, shows the same markup."""
    if codec == "utf-8":  # its multi-byte sequences are of bytes past ASCII only
        return True
    # Single-byte (one character per byte) and stateless (no escape switches it).
    switches = b"\x1b$B<p>\x1b$)C\x0e<p>~{<p>"
    text = (bytes(range(256)) + switches).decode(codec, "replace")
    return (len(text) == 256 + len(switches) and text[:128] == _ASCII
            and all(c >= "\x80" for c in text[128:256]) and text[256:] == switches.decode())


def _bom_agrees(codec: str, data: bytes) -> bool:
    """Browsers let a byte order mark overrule the declared charset."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        order = "utf-16-le" if data.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
        return codec in ("utf-16", order)
    return not data.startswith(codecs.BOM_UTF8) or _ascii_transparent(codec)


def readers_know(charset: str) -> bool:
    """Whether mail readers decode text labelled ``charset`` (a label of the WHATWG
    Encoding Standard's) as Python does, so that what we check is what they show."""
    info = _text_codec(charset)
    return _label(charset) in _WHATWG_LABELS and info is not None and info.name in _SHARED_CODECS


def read_as_readers(charset: str | None, data: bytes) -> bool:
    """Whether mail readers see the markup of ``data`` as :func:`decode_bytes` reads it.

    HTML that the sanitizer leaves alone is delivered byte for byte, so the text
    it checked must be the text the reader sees. Not so for a codec outside the
    WHATWG set, which Python decodes and readers do not (falling back to an
    ASCII-based reading that can show a ``<script>`` we never saw), nor for a
    label Python knows and WHATWG does not (``utf16``, ``iso2022jp``) unless the
    codec reads ASCII as any fallback does; for ISO-2022-JP escapes WHATWG or
    Python does not know, or two-byte mode holding a line end or a lone byte; for
    a byte order mark that contradicts the label; or for an ISO-2022 escape in a
    part labelled with no charset readers know, which they guess is ISO-2022-JP. A
    WHATWG label Python does not know (``unicode``, ``x-sjis``), or a label of
    UTF-7 Outlook knows (``x-unicode-2-0-utf-7``), is not read alike either; any
    other unknown charset is read as UTF-8, as readers fall back to an
    ASCII-based reading too.
    """
    info = _text_codec(charset)
    if info is None and charset is not None and _label(charset) in _READERS_ONLY:
        return False  # readers decode it (as UTF-16, Shift_JIS, UTF-7...); we cannot
    codec = info.name if info is not None else "utf-8"
    if not _bom_agrees(codec, data):
        return False
    if (charset is None or _label(charset) not in _WHATWG_LABELS) and \
            _ISO2022_DESIGNATION.search(data):
        return False  # readers guess the charset: ISO-2022-JP, whose escapes hide markup
    if charset is not None and info is not None and _label(charset) not in _WHATWG_LABELS:
        # Readers do not know the label: they read ASCII-based, as Python must too.
        return codec in _SHARED_CODECS and _ascii_transparent(codec)
    if codec == "iso2022_jp":
        return not (_UNSHARED_ISO2022JP_ESCAPE.search(data)
                    or _ISO2022JP_UNEVEN_KANJI.search(data))
    return codec in _SHARED_CODECS


# A charset a <meta> tag names: ``<meta charset=X>``, or ``content="text/html;
# charset=X"`` beside ``http-equiv`` (Thunderbird's libmime reads this form alone), as
# the HTML standard's prescan finds it in an HTML part without a charset parameter.
_META = re.compile(rb"<meta[\t\n\f\r /][^>]*", re.IGNORECASE)
_ATTRIBUTE = re.compile(rb"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]*)))?""")
_CONTENT_CHARSET = re.compile(rb"""charset\s*=\s*["']?\s*([^\s"';]+)""", re.IGNORECASE)
_PRESCAN = 1024  # bytes the HTML standard's prescan reads
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _meta_charset(tag: re.Match[bytes]) -> str | None:
    """The label a <meta> tag names, lower-cased, if any (the first of each attribute)."""
    values: dict[bytes, bytes] = {}
    for attribute in _ATTRIBUTE.finditer(tag[0], 5):
        value = next((v for v in attribute.groups()[1:] if v is not None), b"")
        values.setdefault(attribute[1].lower(), value)
    label = values.get(b"charset")
    if label is None and b"http-equiv" in values:
        pragma = _CONTENT_CHARSET.search(values.get(b"content", b""))
        label = pragma[1] if pragma else None
    return label.strip().decode("ascii", "replace").lower() if label else None


def html_charset(declared: str | None, data: bytes) -> str | None:
    """The charset readers decode an HTML part by: its Content-Type's, or without one
    (and without a byte order mark, which overrules both), the WHATWG label a <meta>
    tag in its first 1024 bytes names; a UTF-16 one is read as UTF-8, as the HTML
    standard says (the tag was read ASCII-based). None when there is neither: UTF-8.
    An empty charset parameter counts as none."""
    if declared or data.startswith(_BOMS):
        return declared
    # Readers pass over a tag naming a label they do not know.
    labels = map(_meta_charset, _META.finditer(data, 0, _PRESCAN))
    label = next((label for label in labels if label in _WHATWG_LABELS), None)
    if label is None:
        return None
    codec = _READERS_ONLY.get(label) or codecs.lookup(label).name
    return "utf-8" if codec.startswith("utf-16") else label


def _jis_extension(error: UnicodeError, *, strict: bool = False) -> tuple[str, int]:
    """An error handler for Python's EUC-JP and ISO-2022-JP, which know JIS X 0208 alone:
    readers' (WHATWG's index jis0208, windows-31j's) has NEC's row 13 (①, ㈱, ㍻) and
    IBM's kanji of rows 89 to 92 too, both common in Japanese mail. A pair there reads
    as windows-31j reads the same row and cell; any other error as U+FFFD (``strict``:
    raises it)."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    pair = error.object[error.start : error.start + 2]
    high = 0x80 if error.encoding == "euc_jp" else 0  # ISO-2022-JP's pairs are 7-bit
    if len(pair) < 2 or not all(0x21 <= byte - high <= 0x7E for byte in pair):
        return _lost(error, error.end, strict=strict)
    pointer = (pair[0] - high - 0x21) * 94 + pair[1] - high - 0x21
    lead, trail = divmod(pointer, 188)
    shift_jis = bytes((lead + (0x81 if lead < 0x1F else 0xC1),
                       trail + (0x40 if trail < 0x3F else 0x41)))
    try:
        return shift_jis.decode("cp932"), error.start + 2
    except UnicodeDecodeError:  # a cell no one assigned: one character lost, as readers lose it
        return _lost(error, error.start + 2, strict=strict)


def _lost(error: UnicodeDecodeError, end: int, *, strict: bool) -> tuple[str, int]:
    """U+FFFD for the bytes up to ``end``, which no reader reads; or, ``strict``, the error."""
    if strict:
        raise error
    return "\ufffd", end


codecs.register_error("postwarden-jis-extension", _jis_extension)
codecs.register_error("postwarden-jis-extension-strict",
                      functools.partial(_jis_extension, strict=True))
_ERRORS = {"euc_jp": "postwarden-jis-extension", "iso2022_jp": "postwarden-jis-extension"}
_STRICT_ERRORS = {codec: "postwarden-jis-extension-strict" for codec in _ERRORS}


def _windows_1252(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: the bytes UTF-8 cannot read, read as windows-1252 (its five
    unassigned bytes as the C1 controls of the same value, as WHATWG's decoder has them)."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return "".join(_WINDOWS_1252[byte] for byte in error.object[error.start:error.end]), \
        error.end


_WINDOWS_1252 = [bytes([byte]).decode("cp1252", "ignore") or chr(byte) for byte in range(256)]
codecs.register_error("postwarden-windows-1252", _windows_1252)


def decode_undeclared(data: bytes, fallback: str | None = None) -> str:
    """Text no charset is declared for (a header's raw 8-bit bytes, a text part without
    a charset or with one no reader knows) as readers show it: UTF-8 where the whole is;
    else, as Thunderbird reads a header, in ``fallback`` (the charset its entity
    declares) if readers know it and it is ASCII-based (not UTF-16); else UTF-8 with each
    byte it cannot read as windows-1252, readers' usual default (mail from a
    Latin-1 mailer reads as written, not as U+FFFD)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_not_utf8(data, fallback)


def decode_not_utf8(data: bytes, fallback: str | None) -> str:
    """:func:`decode_undeclared` of bytes that are not UTF-8 as a whole, or of a piece of
    such bytes (a word of a header's value), read as the whole is: in ``fallback``, or
    UTF-8 with each byte it cannot read as windows-1252."""
    info = _text_codec(fallback) if fallback else None
    if info is not None and info.name in _SHARED_CODECS and not info.name.startswith("utf"):
        return info.decode(data, _ERRORS.get(info.name, "replace"))[0]
    return data.decode("utf-8", "postwarden-windows-1252")


def decode_bytes(data: bytes, charset: str | None, flags: set[str]) -> str:
    """Decode text in ``charset``; none, or an unknown or non-text codec, is read as
    :func:`decode_undeclared` reads it."""
    if charset is None:
        return decode_undeclared(data)
    info = _text_codec(charset)
    if info is None:
        flags.add("unknown_charset")
        return decode_undeclared(data)
    # Most text is ASCII, which such a codec reads as ASCII does, ten times as fast:
    # windows-1252's table (us-ascii's, as readers read it) took 0.13 ms per 60 KB.
    if data.isascii() and _ascii_transparent(info.name):
        return data.decode("ascii")
    try:
        return info.decode(data, _ERRORS.get(info.name, "replace"))[0]
    except (UnicodeError, ValueError, TypeError):
        flags.add("unknown_charset")
        return decode_undeclared(data)


def decode_strictly(data: bytes, charset: str) -> str:
    """``data`` as :func:`decode_bytes` reads text labelled ``charset``, in the codec
    readers decode it with (windows-1252 for ``us-ascii``, windows-31j for
    ``shift_jis``); but raising UnicodeDecodeError where that reads U+FFFD for bytes
    the charset leaves unassigned, and LookupError for a charset it does not know."""
    info = _text_codec(charset)
    if info is None:
        raise LookupError(f"unknown text charset {charset!r}")
    return info.decode(data, _STRICT_ERRORS.get(info.name, "strict"))[0]


def readers_only(charset: str | None) -> bool:
    """Whether ``charset`` is a label only mail readers know (``unicode``, ``x-sjis``,
    Outlook's ``x-unicode-2-0-utf-7``), which :func:`decode_as_readers` decodes as they do."""
    return _label(charset or "") in _READERS_ONLY and _text_codec(charset) is None


def known_alias(charset: str | None) -> str | None:
    """``charset``; but a WHATWG label Python does not know (``windows-874``, ``x-sjis``)
    as a label of the same encoding that it knows (``tis-620``, ``shift_jis``), or else
    as the codec readers decode it with: text read, cleaned and encoded by that reads as
    its own label says. Without, the sanitizer replaced Thai HTML from Outlook
    (``windows-874``) with its notice, finding the label unknown. Not a UTF-16 label
    (``unicode``), whose text a reader not knowing it reads ASCII-based, markup where
    others read CJK text; nor Outlook's UTF-7 ones, which are no WHATWG labels."""
    label = _label(charset or "")
    codec = _WHATWG_ONLY.get(label, "utf-16")
    if codec.startswith("utf-16") or _text_codec(charset) is not None:
        return charset
    return _python_label(codec)


@functools.cache
def _python_label(codec: str) -> str:
    """A WHATWG label Python knows that is read with ``codec``; else ``codec``."""
    name = codecs.lookup(codec).name
    return next((label for label in sorted(_WHATWG_LABELS)
                 if (info := _text_codec(label)) is not None and info.name == name), codec)


def decode_as_readers(data: bytes, charset: str | None, flags: set[str]) -> str:
    """:func:`decode_bytes`, but a label only readers know (:func:`readers_only`)
    decodes as they decode it: the text rules must see is the text readers show."""
    if readers_only(charset):
        return decode_bytes(data, _READERS_ONLY[_label(charset or "")], flags)
    return decode_bytes(data, charset, flags)


def is_utf16(charset: str | None) -> bool:
    """Whether text labelled ``charset`` is read as UTF-16 (by Python, or as readers
    read a label only they know, ``unicode``)."""
    if charset is None:
        return False
    label = _READERS_ONLY[_label(charset)] if readers_only(charset) else charset
    try:
        return codecs.lookup(label).name.startswith("utf-16")
    except (LookupError, ValueError):  # unknown, or holding a NUL
        return False


def readers_utf16(charset: str | None) -> str | None:
    """The codec, as Python names it, readers read text labelled ``charset`` with when
    that is UTF-16 (a WHATWG label: ``unicode`` too; ``utf16`` they read ASCII-based);
    else None."""
    label = _label(charset or "")
    if label not in _WHATWG_LABELS:
        return None
    info = _text_codec(_READERS_ONLY.get(label, label))
    return info.name if info is not None and info.name.startswith("utf-16") else None
