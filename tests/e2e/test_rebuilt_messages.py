"""Messages the milter rebuilds, as the recipient gets them through the real Postfix:
what a mail reader shows of them afterwards (the policy set is tests/e2e/policies)."""

from __future__ import annotations

import base64
import email
import email.header
import email.policy
import random
from email.message import EmailMessage

import pytest

from postwarden_policies.headers import ENCODED_WORD
from tests.fixtures.postfix import has_header, send_message

from . import messages
from .conftest import MailSystem
from .messages import RECIPIENT, SENDER, Delivered, Sample

pytestmark = [pytest.mark.postfix, pytest.mark.postgres]


def _delivered_bytes(system: MailSystem, sample: Sample) -> bytes:
    result = send_message(system.postfix.port, sample.data, SENDER, [RECIPIENT])
    assert result.accepted, result
    return system.capture.wait_for_message(has_header("Message-ID", sample.message_id)).data


def _delivered(system: MailSystem, sample: Sample) -> EmailMessage:
    data = _delivered_bytes(system, sample)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _delivered_html(system: MailSystem, sample: Sample) -> str:
    """The HTML body of the message delivered for ``sample``, as readers decode it."""
    body = _delivered(system, sample).get_body(("html",))
    assert body is not None
    return str(body.get_content())


def _delivered_subject(system: MailSystem, subject: str) -> tuple[list[str], str]:
    """The lines of the Subject field delivered for a message sent with ``subject``, and
    the value as RFC 2047 readers show it."""
    got = Delivered.parse(_delivered_bytes(system, messages.clean(subject)))
    (field,) = [f for f, name in zip(got.fields, got.names(), strict=True) if name == "subject"]
    lines = field.decode("ascii").removesuffix("\r\n").split("\r\n")
    value = "".join(lines).removeprefix("Subject:").strip()
    return lines, str(email.header.make_header(email.header.decode_header(value)))


def test_a_file_stripped_from_the_end_of_an_alternative_leaves_the_body_shown(
    mail_system: MailSystem,
) -> None:
    # Readers show the last alternative they can: the text notice in the file's place
    # was shown instead of the HTML body.
    payload = base64.encodebytes(random.Random(3).randbytes(200 * 1024)).decode()
    sample = messages.multipart("alternative", [
        "Content-Type: text/plain; charset=us-ascii\n\nThe plain body.\n",
        "Content-Type: text/html; charset=us-ascii\n\n<p>The HTML body.</p>\n",
        'Content-Type: application/pdf; name="scan.pdf"\nContent-Transfer-Encoding: base64\n\n'
        + payload,
    ])
    got = _delivered(mail_system, sample)
    notice, plain, html = [part for part in got.iter_parts() if isinstance(part, EmailMessage)]
    assert "scan.pdf" in notice.get_content() and notice.get_content_type() == "text/plain"
    assert plain.get_content() == "The plain body."
    assert html.get_content() == "<p>The HTML body.</p>"
    body = got.get_body(("html", "plain"))
    assert body is not None and body.get_content() == "<p>The HTML body.</p>"


def test_a_prefixed_encoded_subject_stays_within_rfc_2047_lines(mail_system: MailSystem) -> None:
    # The prefix went in front of a first line the sender had filled to 76 characters:
    # RFC 2047 allows a line holding an encoded word no more (readers may leave longer
    # ones undecoded).
    text = "[tag-me] Überweisung für die Quartalsabrechnung der nördlichen Region, fällig"
    sent = email.header.Header(text, "utf-8", 76, "Subject").encode(linesep="\r\n")
    assert all(len(line) <= 76 for line in f"Subject: {sent}".split("\r\n"))
    lines, shown = _delivered_subject(mail_system, sent)
    assert max(len(line) for line in lines) <= 76, lines
    assert max(len(word.group()) for word in ENCODED_WORD.finditer("".join(lines))) <= 75
    assert shown == f"[EXT] {text}"


def test_a_link_arrives_with_the_same_attributes_whether_its_html_was_cleaned(
    mail_system: MailSystem,
) -> None:
    # HTML within the allowlist goes out as it came; nh3 gave the links of HTML it
    # cleaned (here for the comment) rel="noopener noreferrer" besides.
    link = '<a href="https://news.example.org/offer" target="_blank">Read</a>'
    html = f"<p>{link}</p>\n"
    bodies = []
    for text in (html, f"<!-- campaign 7 -->{html}"):
        sample = messages.multipart("alternative", [
            "Content-Type: text/plain; charset=us-ascii\n\nRead it online.\n",
            f"Content-Type: text/html; charset=us-ascii\n\n{text}",
        ])
        bodies.append(_delivered_html(mail_system, sample))
    assert bodies == [html.rstrip("\n")] * 2


def test_a_prefixed_subject_with_a_run_past_998_octets_reads_as_it_was(
    mail_system: MailSystem,
) -> None:
    # No blank to fold at: the run was cut with a space put in, which readers showed.
    text = "[tag-me] " + "".join(f"{n:04d}-" for n in range(240))  # 1,209 octets, no blank
    lines, shown = _delivered_subject(mail_system, text)
    assert max(len(line) for line in lines) <= 998, [len(line) for line in lines]
    assert shown == f"[EXT] {text}"


def test_a_message_that_was_one_file_arrives_as_its_notice(mail_system: MailSystem) -> None:
    # Its header section said application/pdf and stayed: readers offered the notice as
    # a "scan.pdf" that did not open, and showed no text.
    payload = base64.encodebytes(b"%PDF-1.7\n" + random.Random(5).randbytes(200 * 1024))
    sample = messages.single_part(
        'application/pdf; name="scan.pdf"',
        [("Content-Disposition", 'attachment; filename="scan.pdf"'),
         ("Content-Transfer-Encoding", "base64")], payload.decode())
    got = _delivered(mail_system, sample)
    assert got.get_content_type() == "text/plain" and got.get_content_disposition() is None
    assert got["Subject"] == "One file"  # the other fields as they came
    body = got.get_body(("plain",))
    assert body is not None and "scan.pdf" in body.get_content()
    assert "was removed by the mail filter" in body.get_content()


def test_a_newsletter_hero_keeps_its_background_and_inline_image(
    mail_system: MailSystem,
) -> None:
    # The template paints its hero with the background shorthand, an image over a colour,
    # and writes white text on it. The url() went with its colour (the reader showed the
    # heading white on white), then alone; under remote_images: keep it stays, as an
    # <img src> from that host would.
    logo = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()
    html = ('<table width="600" align="center" bgcolor="#ffffff"><tr>'
            '<td style="background:#1a2b3c url(https://cdn.example.com/hero.jpg) no-repeat;'
            'color:#ffffff;padding:20px">Spring sale</td></tr><tr><td>'
            '<img src="cid:logo@news.example.com" width="120" height="40" alt="Logo">'
            "</td></tr></table>\n")
    sample = messages.multipart("related", [
        f"Content-Type: text/html; charset=us-ascii\n\n{html}",
        "Content-Type: image/png\nContent-ID: <logo@news.example.com>\n"
        f"Content-Transfer-Encoding: base64\n\n{logo}\n",
    ])
    got = _delivered(mail_system, sample)
    body = got.get_body(("html",))
    assert body is not None
    assert ('<td style="background:#1a2b3c url(&quot;https://cdn.example.com/hero.jpg&quot;) '
            'no-repeat;color:#ffffff;padding:20px">Spring sale</td>' in body.get_content())
    assert '<img src="cid:logo@news.example.com" width="120" height="40" alt="Logo">' \
        in body.get_content()
    (image,) = [part for part in got.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<logo@news.example.com>"
    assert image.get_content() == base64.b64decode(logo)


def test_japanese_html_keeps_its_furigana_and_its_charset(mail_system: MailSystem) -> None:
    # Ruby annotations were dropped with their tags: the reading ran on inline after the
    # kanji it glosses ("漢字(かんじ)").
    ruby = "<ruby>漢字<rp>(</rp><rt>かんじ</rt><rp>)</rp></ruby>"
    html = f"<p>{ruby}の練習</p><script>x()</script>\n"
    sample = messages.single_part(
        'text/html; charset="iso-2022-jp"', [("Content-Transfer-Encoding", "7bit")],
        html.encode("iso-2022-jp").decode("ascii"))
    got = _delivered(mail_system, sample)
    assert got.get_content_charset() == "iso-2022-jp"
    assert got["Content-Transfer-Encoding"] == "7bit"
    assert got.get_content().rstrip("\r\n") == f"<p>{ruby}の練習</p>"


def test_a_quoted_reply_keeps_its_quote_bar(mail_system: MailSystem) -> None:
    # Thunderbird and Apple Mail draw the bar beside quoted text by blockquote
    # type="cite": dropped, the whole thread read as one indented reply.
    quoted = ('<blockquote type="cite">On Monday, Jo wrote:<br>'
              '<blockquote type="cite">Lunch on Friday?</blockquote>Sure.</blockquote>')
    html = f"<p>See you then.</p>{quoted}<script>track()</script>\n"
    sample = messages.multipart("alternative", [
        "Content-Type: text/plain; charset=us-ascii\n\nSee you then.\n",
        f"Content-Type: text/html; charset=us-ascii\n\n{html}",
    ])
    shown = _delivered_html(mail_system, sample)
    assert shown == f"<p>See you then.</p>{quoted}"


def test_a_newsletter_keeps_what_it_tells_screen_readers(mail_system: MailSystem) -> None:
    # Dropped, a screen reader announced each layout table as a table of data and read
    # out the spacer images.
    html = ('<table role="presentation" width="600"><tr><td>'
            '<a href="https://shop.example.com/?utm_source=nl&amp;utm_medium=email" '
            'aria-label="Shop the sale"><img src="cid:banner@news.example.com" alt=""></a>'
            '<img src="cid:spacer@news.example.com" aria-hidden="true" width="1" alt="">'
            "</td></tr></table>")
    sample = messages.multipart("alternative", [
        "Content-Type: text/plain; charset=us-ascii\n\nShop the sale.\n",
        f"Content-Type: text/html; charset=us-ascii\n\n{html}<!-- campaign 7 -->\n",
    ])
    shown = _delivered_html(mail_system, sample)
    assert shown == html.replace("<tr>", "<tbody><tr>").replace(
        "</table>", "</tbody></table>")


def test_thai_html_from_outlook_arrives_cleaned_not_as_a_notice(mail_system: MailSystem) -> None:
    # Outlook labels Thai windows-874, which Python does not know by that name: the
    # whole HTML was replaced by the "could not be sanitized" notice.
    text = "<p>สวัสดีครับ ราคา €5 <a href=\"https://shop.example.co.th/?a=1&amp;b=2\">ร้านค้า</a></p>"
    encoded = (text + "<img src=x onerror=alert(1)>\n").encode("cp874")
    sample = messages.single_part(
        "text/html; charset=windows-874", [("Content-Transfer-Encoding", "base64")],
        base64.encodebytes(encoded).decode("ascii"))
    got = _delivered_bytes(mail_system, sample)
    parsed = email.message_from_bytes(got, policy=email.policy.default)
    assert parsed.get_content_charset() == "windows-874"
    shown = base64.b64decode(parsed.get_payload()).decode("cp874")
    assert shown.replace("&#8364;", "€") == f'{text}<img src="x">\n'  # € as readers show it


def test_a_newsletter_with_a_comment_keeps_its_layout(mail_system: MailSystem) -> None:
    # One HTML comment sends a part through nh3, whose CSS allowlist lacked these: the
    # menu showed bulleted, the padded full-width box overflowed, the divider went.
    html = ('<ul style="list-style:none;margin:0;padding:0"><li>Shop</li><li>Blog</li></ul>'
            '<div style="box-sizing:border-box;width:100%;padding:0 20px">'
            '<p style="border-bottom-width:1px;border-bottom-style:solid;'
            'border-bottom-color:#dddddd">Order 1042</p></div>')
    sample = messages.multipart("alternative", [
        "Content-Type: text/plain; charset=us-ascii\n\nOrder 1042\n",
        f"Content-Type: text/html; charset=us-ascii\n\n<!-- layout v2 -->{html}\n",
    ])
    shown = _delivered_html(mail_system, sample)
    assert shown == html


def test_mail_from_outlook_keeps_its_font_and_line_spacing(mail_system: MailSystem) -> None:
    # Outlook sets its paragraphs' font and spacing in a <style> sheet, which went whole:
    # the mail showed in Times, each of its lines a paragraph apart.
    html = ('<html><head><style><!--\np.MsoNormal, li.MsoNormal, div.MsoNormal\n'
            '\t{margin:0in;\n\tfont-size:11.0pt;\n\tfont-family:"Calibri",sans-serif;}\n'
            '@media print {p.MsoNormal {margin:1in}}\n--></style></head>'
            '<body lang=EN-US><div class=WordSection1><p class=MsoNormal>Hi Jo,<o:p></o:p></p>'
            "<p class=MsoNormal>Thanks.<o:p></o:p></p></div></body></html>\n")
    sample = messages.multipart("alternative", [
        "Content-Type: text/plain; charset=us-ascii\n\nHi Jo,\nThanks.\n",
        f"Content-Type: text/html; charset=us-ascii\n\n{html}",
    ])
    shown = _delivered_html(mail_system, sample)
    styled = ('<p class="MsoNormal" style="margin:0in;font-size:11.0pt;'
              'font-family:&quot;calibri&quot; , sans-serif">')
    assert shown == (f'<div lang="en-us"><div class="WordSection1">{styled}Hi Jo,'
                                  f"</p>{styled}Thanks.</p></div></div>")


def test_a_receipt_keeps_the_font_its_sheet_sets_for_the_page(mail_system: MailSystem) -> None:
    # An app's receipt sets its font and text colour on body in a sheet; gone with the
    # sheet, it showed in the reader's default font.
    html = ("<html><head><style>body{font-family:Helvetica,Arial,sans-serif;color:#333333}"
            "</style></head><body><p>Total: 12.00 EUR</p><script>x()</script></body></html>\n")
    sample = messages.multipart("alternative", [
        "Content-Type: text/plain; charset=us-ascii\n\nTotal: 12.00 EUR\n",
        f"Content-Type: text/html; charset=us-ascii\n\n{html}",
    ])
    shown = _delivered_html(mail_system, sample)
    assert shown == ('<div style="font-family:helvetica , arial , sans-serif;'
                                  'color:#333333"><p>Total: 12.00 EUR</p></div>')
