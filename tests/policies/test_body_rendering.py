"""Body rules see text as readers show it: HTML rendered, format=flowed unwrapped,
text/enriched and other inline text parts read as text."""

from __future__ import annotations

import pytest

from postwarden_policies import Envelope, evaluate, evaluate_message, parse_message
from postwarden_policies.bodytext import Renderings, render_html
from postwarden_policies.textparts import TEXT_BUDGET

from .policy_helpers import rule_policy

HEAD = "From: a@elsewhere.test\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\nSubject: hi\r\n"


def _message(content_type: str, body: str, extra: str = "") -> bytes:
    return f"{HEAD}Content-Type: {content_type}\r\n{extra}\r\n{body}\r\n".encode()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_message("text/html", "<p>vi&#97;gra</p>"), id="numeric-reference"),
        pytest.param(_message("text/html", "<p>vi&#x61;gr&aacute</p>".replace(
            "&aacute", "a")), id="hex-reference"),
        pytest.param(_message("text/html", "<p>via<b></b>gra</p>"), id="empty-tag-in-word"),
        pytest.param(_message("text/html", "via<!-- a > b -->gra"), id="comment-with-gt"),
        pytest.param(_message("text/html", "via<b title='>'>gra"), id="quoted-gt-in-tag"),
        pytest.param(_message("text/html", 'via<b a"b>gra'), id="quote-in-attribute-name"),
        pytest.param(_message("text/html", 'via<b =">gra"'), id="equals-first-in-name"),
        pytest.param(_message("text/html", "<script><b a='</script>vi&#97;gra'>"),
                     id="tag-look-alike-in-script"),
        pytest.param(_message("text/html", "<textarea>vi&#97;gra</textarea>"), id="textarea"),
        pytest.param(_message("text/html", "via<span>gra</span>", "Content-Transfer-Encoding:"
                              " quoted-printable\r\n"), id="quoted-printable-html"),
        pytest.param(_message("text/plain; format=flowed; delsp=yes", "via \r\ngra"),
                     id="flowed-delsp"),
        pytest.param(_message("text/plain; format=flowed; delsp=yes", "> via \r\n> gra"),
                     id="flowed-quoted"),
        pytest.param(_message("text/enriched", "via<bold></bold>gra"), id="text-enriched"),
        pytest.param(_message("text/richtext", "viagra"), id="text-richtext"),
        pytest.param(_message("text/x-unknown", "viagra"), id="unknown-text-subtype"),
    ],
)
def test_a_body_rule_matches_what_the_reader_shows(raw: bytes) -> None:
    policy_set = rule_policy("body: '(?i)viagra'", "reject")
    verdict = evaluate_message(policy_set, raw, Envelope("a@elsewhere.test", ("b@example.com",)))
    assert verdict.rules == ("r",)


def test_flowed_text_without_delsp_keeps_the_space() -> None:
    facts = parse_message(_message("text/plain; format=flowed", "via \r\ngra"), Envelope())
    [shown] = facts.renderings
    assert "via gra" in shown and "viagra" not in shown


@pytest.mark.parametrize(
    ("extra", "body"),
    [
        pytest.param('Content-Disposition: attachment; filename="r.txt"\r\n', "viagra",
                     id="named-attachment"),
        pytest.param("", "via\r\n gra", id="not-flowed"),
    ],
)
def test_text_readers_do_not_show_as_the_message_is_not_rendered(extra: str, body: str) -> None:
    content_type = "text/x-unknown" if extra else "text/plain"
    facts = parse_message(_message(content_type, body, extra), Envelope())
    assert "viagra" not in facts.text


def test_the_html_source_is_searched_as_well() -> None:
    facts = parse_message(_message("text/html", '<a href="https://evil.test/">x</a>'), Envelope())
    assert "https://evil.test/" in facts.text  # rules on links keep working
    assert list(facts.renderings) == ["x\r\n"]  # searched after the source


@pytest.mark.parametrize(
    ("html", "shown"),
    [
        pytest.param("<td>1234</td><td>5678</td>", "\n1234\n\n5678\n", id="cells-apart"),
        pytest.param("a<br/>b<P>c", "a\nb\nc", id="block-tags-break"),
        pytest.param("x < y &lt;b&gt;", "x < y <b>", id="literal-lt-and-references"),
        # A tag ends a reference: readers show "&notice", not "&not" (\xac) and "ice".
        pytest.param("&<b></b>no<i></i>tice &#9<b></b>7;", "&notice \t7;",
                     id="no-reference-across-tags"),
        pytest.param("<STYLE>p{}</Style >a<Title>t</title>b", "ab", id="hidden-raw-text"),
        pytest.param("a<!-->b<!--->c", "abc", id="abrupt-comments"),
        pytest.param("a<b title='x", "a", id="unclosed-quote-to-the-end"),
        # All after <plaintext> shows as it is, references too.
        pytest.param("a&amp;<plaintext>b<i>c&amp;", "a&b<i>c&amp;",
                     id="plaintext-shown-as-written"),
        # In SVG and MathML a <style> or <script> is no raw text; HTML breaks out of it.
        pytest.param("<svg><style>vi</style><b>a</b>gra</svg><style>p{}</style>", "viagra",
                     id="svg-style-is-no-raw-text"),
        pytest.param("<svg><foreignObject><style>p{}</style>vi</foreignObject>"
                     "<![CDATA[agra]]></svg><math><script>!</script></math>", "viagra!",
                     id="svg-cdata-is-text-integration-points-read-html"),
        # A CDATA section in SVG or MathML is text as written (no references, no line
        # break); where HTML is current it is a comment, up to the first ">".
        pytest.param("<svg><text><![CDATA[a<b>&amp;]]></text><foreignObject><b><![CDATA[x]]>"
                     "y</b></foreignObject></svg>", "a<b>&amp;y", id="svg-cdata-text-as-written"),
        # An end tag in SVG reaching an HTML element goes by HTML's rules: </div> closes
        # the svg, and a <style> after it is raw text again.
        pytest.param("<div><svg><g></div>vi<style>p{}</style>agra", "\n\nviagra",
                     id="svg-closed-by-html-end-tag"),
    ],
)
def test_html_renders_as_a_reader_shows_it(html: str, shown: str) -> None:
    assert render_html(html) == shown



def test_html_whole_within_the_budget_is_rendered_whole() -> None:
    """A rendering is never longer than the text it renders, so it needs no budget of
    its own: HTML that fits the budget is searched whole, rendered too, unflagged."""
    html = "<p>" + "vi&#97;gra " * (TEXT_BUDGET // 12) + "</p>"
    facts = parse_message(_message("text/html", html), Envelope())
    [shown] = facts.renderings
    assert "text_truncated" not in facts.flags
    assert len(shown) <= len(facts.text) and shown.count("viagra") == TEXT_BUDGET // 12


def test_a_rule_that_matches_the_source_renders_nothing() -> None:
    """The rendering is worked out only when a body rule did not match the text as
    written: most HTML mail costs no rendering."""
    facts = parse_message(_message("text/html", "<b>plain words</b>"), Envelope())
    renderings = facts.renderings
    assert isinstance(renderings, Renderings)
    assert evaluate(rule_policy("body: 'plain words'", "reject"), facts).rules == ("r",)
    assert renderings._texts is None  # nothing rendered
    assert evaluate(rule_policy("body: '<b>plain words'", "reject"), facts).rules == ("r",)
    assert renderings._texts is None  # matched as written: still none
    assert evaluate(rule_policy("body: 'nowhere'", "reject"), facts).rules == ()
    assert renderings._texts == ("plain words\r\n",)  # now rendered, once
