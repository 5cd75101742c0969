"""S/MIME-signed mail as Outlook writes it: a multipart/alternative of text and Word's
HTML (its <o:p> marks, <meta> tags, Office namespaces, style sheet and shape defaults),
quoted-printable, in a multipart/related with the images it shows (a signature's logo),
signed by a detached signature (a real one, of a throwaway key)."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import quopri
import struct
import zlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

_HEAD = """<html xmlns:v="urn:schemas-microsoft-com:vml" \
xmlns:o="urn:schemas-microsoft-com:office:office" \
xmlns:w="urn:schemas-microsoft-com:office:word" \
xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" \
xmlns="http://www.w3.org/TR/REC-html40">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=us-ascii">
<meta name="Generator" content="Microsoft Word 15 (filtered medium)">
<style><!--
/* Font Definitions */
@font-face
\t{font-family:"Cambria Math";
\tpanose-1:2 4 5 3 5 4 6 3 2 4;}
@font-face
\t{font-family:Calibri;
\tpanose-1:2 15 5 2 2 2 4 3 2 4;}
/* Style Definitions */
p.MsoNormal, li.MsoNormal, div.MsoNormal
\t{margin:0cm;
\tfont-size:11.0pt;
\tfont-family:"Calibri",sans-serif;
\tmso-ligatures:standardcontextual;
\tmso-fareast-language:EN-US;}
a:link, span.MsoHyperlink
\t{mso-style-priority:99;
\tcolor:#0563C1;
\ttext-decoration:underline;}
span.EmailStyle17
\t{mso-style-type:personal-compose;
\tfont-family:"Calibri",sans-serif;
\tcolor:windowtext;}
.MsoChpDefault
\t{mso-style-type:export-only;
\tfont-size:11.0pt;
\tmso-fareast-language:EN-US;}
@page WordSection1
\t{size:612.0pt 792.0pt;
\tmargin:72.0pt 72.0pt 72.0pt 72.0pt;}
div.WordSection1
\t{page:WordSection1;}
{sheet}--></style><!--[if gte mso 9]><xml>
<o:shapedefaults v:ext="edit" spidmax="1026" />
</xml><![endif]--><!--[if gte mso 9]><xml>
<o:shapelayout v:ext="edit">
<o:idmap v:ext="edit" data="1" />
</o:shapelayout></xml><![endif]-->
{extra}</head>
<body lang="EN-US" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">
<div class="WordSection1">
<p class="MsoNormal">Hi Bob,<o:p></o:p></p>
<p class="MsoNormal"><o:p>&nbsp;</o:p></p>
<p class="MsoNormal">The figures are in the ticket.<o:p></o:p></p>
{body}<p class="MsoNormal"><o:p>&nbsp;</o:p></p>
<p class="MsoNormal">Regards,<o:p></o:p></p>
<p class="MsoNormal">Alice<o:p></o:p></p>
</div>
</body>
</html>
"""


# A signature with the company's logo and a social icon, as Outlook writes it: each
# image an <img> of Word's picture id (Picture_x0020_1, _x0000_i1025) showing a cid: part.
LOGO_SIGNATURE = """<table class=MsoNormalTable border=0 cellspacing=0 cellpadding=0 \
style='border-collapse:collapse'>
<tr><td width=120 valign=top style='width:90.0pt;padding:0cm 5.4pt 0cm 0cm'>
<p class=MsoNormal><a href="https://northwind.example/"><span style='color:windowtext;\
text-decoration:none'><img border=0 width=120 height=36 style='width:1.25in;height:.375in' \
id="Picture_x0020_1" src="cid:image001.png@01DA4F2B.3C5E7A10" alt="Northwind &amp; Co">\
</span></a><o:p></o:p></p>
</td><td valign=top style='padding:0cm 0cm 0cm 5.4pt'>
<p class=MsoNormal><b><span style='font-size:10.0pt;color:#1F3864'>Alice Example</span></b>\
<span style='font-size:10.0pt'><o:p></o:p></span></p>
<p class=MsoNormal><span style='font-size:9.0pt;color:gray'>Operations | Northwind &amp; Co\
<o:p></o:p></span></p>
</td></tr></table>
<p class=MsoNormal><a href="https://www.linkedin.com/company/northwind"><img border=0 \
width=24 height=24 style='width:.25in;height:.25in' id="_x0000_i1025" \
src="cid:image002.png@01DA4F2B.3C5E7A10" alt="LinkedIn"></a><o:p></o:p></p>
"""
LOGO_IMAGES = ("image001.png@01DA4F2B.3C5E7A10", "image002.png@01DA4F2B.3C5E7A10")
# A reply quoting Carol's, which she sent from Outlook on the web quoting Alice's mail with
# its logo: OWA put x_ before the classes and ids of what it quoted (x_MsoNormal,
# x_Picture_x0020_1, x__x0000_i1025).
OWA_QUOTED_REPLY = """<div style='border:none;border-top:solid #E1E1E1 1.0pt;\
padding:3.0pt 0cm 0cm 0cm'>
<p class=MsoNormal><b>From:</b> Carol Example &lt;carol@partner.example&gt;<br>
<b>Sent:</b> Monday, December 7, 2026 5:02 PM<br>
<b>Subject:</b> Re: figures<o:p></o:p></p></div>
<p class=MsoNormal>Thanks, the numbers match ours.<o:p></o:p></p>
<div class=x_WordSection1>
<p class=x_MsoNormal>Carol,<o:p></o:p></p>
<p class=x_MsoNormal>The figures are in the ticket.<o:p></o:p></p>
""" + LOGO_SIGNATURE.replace("class=Mso", "class=x_Mso").replace('id="', 'id="x_') + "</div>\n"


# What Word adds to its sheet for a bulleted list: the list paragraph's style and the
# list's levels, each bullet a Symbol, Courier or Wingdings character (\F0B7: U+F0B7).
LIST_SHEET = """p.MsoListParagraph, li.MsoListParagraph, div.MsoListParagraph
\t{mso-style-priority:34;
\tmargin-top:0cm;
\tmargin-right:0cm;
\tmargin-bottom:0cm;
\tmargin-left:36.0pt;
\tfont-size:11.0pt;
\tfont-family:"Calibri",sans-serif;}
/* List Definitions */
@list l0
\t{mso-list-id:1532183412;
\tmso-list-type:hybrid;
\tmso-list-template-ids:-1541245310 134807553 134807555 134807557 134807553 134807555 \
134807557 134807553 134807555 134807557;}
@list l0:level1
\t{mso-level-number-format:bullet;
\tmso-level-text:\\F0B7;
\tmso-level-tab-stop:none;
\tmso-level-number-position:left;
\ttext-indent:-18.0pt;
\tfont-family:Symbol;}
@list l0:level2
\t{mso-level-number-format:bullet;
\tmso-level-text:o;
\tmso-level-tab-stop:none;
\tmso-level-number-position:left;
\ttext-indent:-18.0pt;
\tfont-family:"Courier New";}
@list l0:level3
\t{mso-level-number-format:bullet;
\tmso-level-text:\\F0A7;
\tmso-level-tab-stop:none;
\tmso-level-number-position:left;
\ttext-indent:-18.0pt;
\tfont-family:Wingdings;}
ol
\t{margin-bottom:0cm;}
ul
\t{margin-bottom:0cm;}
"""


# What Chinese and Japanese Outlook write: font names as CSS escapes, in the sheet's
# fonts (SimSun \5B8B\4F53, DengXian \7B49\7EBF, Microsoft YaHei \5FAE\8F6F\96C5\9ED1,
# MS Gothic, Yu Gothic; "\@" the vertical one) and styles, and in the styles of the text.
CJK_SHEET = """@font-face
\t{font-family:\\5B8B\\4F53;
\tpanose-1:2 1 6 0 3 1 1 1 1 1;}
@font-face
\t{font-family:\\7B49\\7EBF;
\tpanose-1:2 1 6 0 3 1 1 1 1 1;}
@font-face
\t{font-family:"\\5FAE\\8F6F\\96C5\\9ED1";
\tpanose-1:2 11 5 3 2 2 4 2 2 4;}
@font-face
\t{font-family:"\\FF2D\\FF33 \\30B4\\30B7\\30C3\\30AF";
\tpanose-1:2 11 6 9 7 2 5 8 2 4;}
@font-face
\t{font-family:"\\@\\5B8B\\4F53";
\tpanose-1:2 1 6 0 3 1 1 1 1 1;}
p.MsoPlainText, li.MsoPlainText, div.MsoPlainText
\t{mso-style-priority:99;
\tmargin:0cm;
\ttext-align:justify;
\ttext-justify:inter-ideograph;
\tfont-size:10.5pt;
\tfont-family:\\7B49\\7EBF;
\tmso-fareast-font-family:\\5B8B\\4F53;}
span.EmailStyle18
\t{mso-style-type:personal-reply;
\tfont-family:"\\5FAE\\8F6F\\96C5\\9ED1",sans-serif;
\tcolor:windowtext;}
"""
CJK_BODY = """<p class=MsoNormal><span lang=ZH-CN style='font-size:10.5pt;\
font-family:"\\5FAE\\8F6F\\96C5\\9ED1",sans-serif'>&#20320;&#22909;&#65292;</span>\
<span lang=ZH-CN style='font-family:\\5B8B\\4F53;mso-ascii-font-family:Calibri;\
mso-fareast-font-family:\\5B8B\\4F53'>&#35831;&#26597;&#25910;</span>\
<span lang=JA style='font-family:"\\6E38\\30B4\\30B7\\30C3\\30AF",sans-serif'>\
&#12424;&#12429;&#12375;&#12367;</span><span lang=EN-US><o:p></o:p></span></p>
"""


def outlook_html(body: str = "", extra: str = "", sheet: str = "") -> str:
    """Outlook's HTML of a short mail, ``body`` added among its paragraphs, ``extra``
    at the end of its head and ``sheet`` at the end of its style sheet."""
    return _HEAD.replace("{body}", body).replace("{extra}", extra).replace("{sheet}", sheet)


def cjk_outlook_html() -> str:
    """Chinese Outlook's HTML of a short mail: :data:`CJK_SHEET`, :data:`CJK_BODY`, and
    on its <body> the language and how its punctuation is justified."""
    return outlook_html(CJK_BODY, sheet=CJK_SHEET).replace(
        '<body lang="EN-US" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">',
        '<body lang="ZH-CN" link="#0563C1" vlink="#954F72" '
        'style="text-justify-trim:punctuation">')


@functools.cache
def _signer() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "alice@sender.test")])
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=3650)).sign(key, hashes.SHA256()))
    return cert, key


def signed_outlook_mail(html: str, headers: str, *, opaque: bool = False,
                        images: tuple[str, ...] = ()) -> bytes:
    """A message of ``headers`` (CRLF-ended lines) whose body is ``html`` and its text,
    as Outlook sends them, in multipart/signed with a detached S/MIME signature (``opaque``:
    inside the signed data of an application/pkcs7-mime, Outlook's other choice); with
    ``images`` (Content-IDs), in a multipart/related with a PNG of each."""
    qp = quopri.encodestring(html.encode("ascii")).decode("ascii")
    content = (
        'Content-Type: multipart/alternative; boundary="_000_alt_"\n\n'
        "--_000_alt_\nContent-Type: text/plain; charset=\"us-ascii\"\n"
        "Content-Transfer-Encoding: quoted-printable\n\nHi Bob,\n\nRegards,\nAlice\n\n"
        "--_000_alt_\nContent-Type: text/html; charset=\"us-ascii\"\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{qp}\n--_000_alt_--\n"
    )
    if images:
        content = _related(content, images)
    signed = _signed(content.replace("\n", "\r\n").encode("ascii"), opaque=opaque)
    return headers.encode("ascii") + signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _related(alternative: str, images: tuple[str, ...]) -> str:
    """``alternative`` in a multipart/related with a PNG of each Content-ID of ``images``."""
    png = base64.encodebytes(_png()).decode("ascii")
    parts = "".join(
        f"--_004_rel_\nContent-Type: image/png; name=\"{cid.split('@')[0]}\"\n"
        f"Content-Description: {cid.split('@')[0]}\n"
        f"Content-Disposition: inline; filename=\"{cid.split('@')[0]}\"\n"
        f"Content-ID: <{cid}>\nContent-Transfer-Encoding: base64\n\n{png}\n"
        for cid in images)
    return ('Content-Type: multipart/related; boundary="_004_rel_"; '
            'type="multipart/alternative"\n\n'
            f"--_004_rel_\n{alternative}\n{parts}--_004_rel_--\n")


def _png() -> bytes:
    """A 1x1 white PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff")) + chunk(b"IEND", b""))


def _signed(content: bytes, *, opaque: bool) -> bytes:
    """``content`` (a MIME entity) signed, detached in multipart/signed or ``opaque``."""
    cert, key = _signer()
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(
        cert, key, hashes.SHA256())
    if opaque:
        der = builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
        return (b'MIME-Version: 1.0\nContent-Type: application/pkcs7-mime; '
                b'smime-type=signed-data; name="smime.p7m"\n'
                b"Content-Transfer-Encoding: base64\n"
                b'Content-Disposition: attachment; filename="smime.p7m"\n\n'
                + base64.encodebytes(der))
    return builder.sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
