"""S/MIME-signed mail as Outlook writes it: a multipart/alternative of text and Word's
HTML (its <o:p> marks, <meta> tags, Office namespaces, style sheet and shape defaults),
quoted-printable, signed by a detached signature (a real one, of a throwaway key)."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import quopri

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
--></style><!--[if gte mso 9]><xml>
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


def outlook_html(body: str = "", extra: str = "") -> str:
    """Outlook's HTML of a short mail, ``body`` added among its paragraphs and ``extra``
    at the end of its head."""
    return _HEAD.replace("{body}", body).replace("{extra}", extra)


@functools.cache
def _signer() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "alice@sender.test")])
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=3650)).sign(key, hashes.SHA256()))
    return cert, key


def signed_outlook_mail(html: str, headers: str, *, opaque: bool = False) -> bytes:
    """A message of ``headers`` (CRLF-ended lines) whose body is ``html`` and its text,
    as Outlook sends them, in multipart/signed with a detached S/MIME signature (``opaque``:
    inside the signed data of an application/pkcs7-mime, Outlook's other choice)."""
    qp = quopri.encodestring(html.encode("ascii")).decode("ascii")
    content = (
        'Content-Type: multipart/alternative; boundary="_000_alt_"\n\n'
        "--_000_alt_\nContent-Type: text/plain; charset=\"us-ascii\"\n"
        "Content-Transfer-Encoding: quoted-printable\n\nHi Bob,\n\nRegards,\nAlice\n\n"
        "--_000_alt_\nContent-Type: text/html; charset=\"us-ascii\"\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{qp}\n--_000_alt_--\n"
    ).replace("\n", "\r\n").encode("ascii")
    cert, key = _signer()
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(
        cert, key, hashes.SHA256())
    if opaque:
        der = builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
        signed = (b'MIME-Version: 1.0\nContent-Type: application/pkcs7-mime; '
                  b'smime-type=signed-data; name="smime.p7m"\n'
                  b"Content-Transfer-Encoding: base64\n"
                  b'Content-Disposition: attachment; filename="smime.p7m"\n\n'
                  + base64.encodebytes(der))
    else:
        signed = builder.sign(serialization.Encoding.SMIME,
                              [pkcs7.PKCS7Options.DetachedSignature])
    return headers.encode("ascii") + signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
