"""A hostile sender against the hidden-text rendering (the review of 5 December)."""

from __future__ import annotations

import subprocess
import sys
from types import FrameType
from typing import Any

import pytest

from postwarden_policies import visiblehtml
from postwarden_policies.visiblehtml import render_visible

from .policy_helpers import body_rule_matches, text_message
from .test_from_linear import CPU_SECONDS, _limit_cpu


def _lines_run(html: str) -> int:
    """Lines of visiblehtml run to render ``html``: the work, counted the same on every
    machine."""
    lines = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if frame.f_code.co_filename != visiblehtml.__file__:
            return None
        lines += event == "line"
        return trace

    sys.settrace(trace)
    try:
        render_visible(html)
    finally:
        sys.settrace(None)
    return lines


def test_stray_end_tags_after_closed_formatting_elements_take_linear_work() -> None:
    """A </div> around many <b> leaves them to open again; each stray </i> after it
    looked through all of them (224 KB took 32 s)."""

    def build(n: int) -> str:
        return "<div>" + "<b>" * n + "</div>" + "</i>" * n

    small, large = _lines_run(build(300)), _lines_run(build(1200))
    assert large <= 5 * small, (small, large)


def test_an_end_tag_still_forgets_the_latest_closed_element_of_its_name() -> None:
    # The stray </i> forgets the hidden <i> (the latest), so "free" shows in <i><b>.
    assert render_visible("<div><i><b><i style=display:none></div></i>free") == "\n\nfree"
    assert render_visible("<div><i style=display:none><b><i></div></i>free") == "\n\n"


_END_TAG_LADDERS = [
    # What each end tag looks for, ignored or found, is found at once, and what it closes
    # or moves was opened by a tag of its own (a walk down the stack per </i> here made
    # 100,000 of each about 10^10 steps).
    pytest.param(lambda n: "<i><div>" + "<span>" * n + "</i>" * n, id="adoption-once"),
    pytest.param(lambda n: "<span><div>" + "<em>" * n + "</span>" * n, id="any-other-ignored"),
    pytest.param(lambda n: "<div><table><td>" + "<span>" * n + "</div>" * n,
                 id="block-out-of-scope"),
    pytest.param(lambda n: "<h1><table><td>" + "<span>" * n + "</h2>" * n, id="headings"),
    pytest.param(lambda n: "<li><ul>" + "<span>" * n + "</li>" * n, id="list-items"),
    pytest.param(lambda n: "<b><div>" * n + "</b>" * n, id="adoption-each"),
    pytest.param(lambda n: "<b><i><u>" + "<p><s>" * n + "</b></i></u>" * n,
                 id="adoption-with-formatting-between"),
    # Past eight special elements the adoption agency opens all after them again, each
    # time: within the budget only.
    pytest.param(lambda n: "<b>" + "<div>" * n + "<span>" * n + "</b>" * n,
                 id="adoption-past-eight"),
]


_START_TAG_LADDERS = [
    # Start tags that close what is open: each closes what tags of its own opened.
    pytest.param(lambda n: "<h1><b>" * n + "<h2>" * n + "<span><h3>" * n, id="headings-start"),
    pytest.param(lambda n: "<button><i>" * n + "<table><td><button>" * n, id="buttons"),
    pytest.param(lambda n: "<a><div>" * n + "<a>" * n, id="links-adopted"),
    pytest.param(lambda n: "<div>" * n + "<a>" + "</div><a>" * n, id="links-waiting"),
    pytest.param(lambda n: "<nobr><p>" * n + "<div>" * n + "<nobr>" * n, id="nobr-adopted"),
]


@pytest.mark.parametrize("build", _END_TAG_LADDERS + _START_TAG_LADDERS)
def test_tags_take_linear_work(build: Any) -> None:
    small, large = _lines_run(build(300)), _lines_run(build(1200))
    assert large <= 5 * small, (small, large)


def test_a_large_adoption_ladder_is_rendered_within_the_cpu_bound() -> None:
    """100,000 of each: quadratic, minutes. The kernel stops the child past CPU_SECONDS
    of CPU: a kill switch, not a measure."""
    n = 100_000
    html = "<b hidden>" + "<div>" * n + "<span>" * n + "</b>" * n + "x"
    done = subprocess.run([sys.executable, "-c", _RENDER], input=html, text=True,
                          capture_output=True, preexec_fn=_limit_cpu, check=False)
    assert done.returncode == 0, f"not rendered within {CPU_SECONDS} s of CPU ({done.returncode})"
    assert done.stdout.strip() == repr("")


_RENDER = """
import sys
from postwarden_policies.visiblehtml import render_visible
print(repr(render_visible(sys.stdin.read())))
"""
_DIGITS, _ZEROS = "1" * 200_000, "0" * 200_000


@pytest.mark.parametrize(
    "style",
    [
        f"font: {_DIGITS}", f"font: 0{_DIGITS}", f"font-size: {_DIGITS}x1",
        f"position: absolute; left: {_DIGITS}x1", f"text-indent: {_DIGITS}x1",
        f"position: absolute; clip: rect(0 {_DIGITS}x1 5 0)",
        f"color: rgb(1,{_ZEROS}", f"clip-path: circle({_ZEROS}x",
    ],
    ids=["font", "font-zero", "font-size", "left", "text-indent", "clip", "colour", "clip-path"],
)
def test_a_long_number_in_css_is_read_in_linear_time(style: str) -> None:
    """A number read as digits, a dot, digits split a run of digits every way before
    failing: 8 KB of them took 0.8 s, these 200 KB about eight minutes. A bound that
    fails the test, not a measure: the kernel stops the child past CPU_SECONDS of CPU."""
    html = f"<b style='{style}'>x</b>"
    done = subprocess.run([sys.executable, "-c", _RENDER], input=html, text=True,
                          capture_output=True, preexec_fn=_limit_cpu, check=False)
    assert done.returncode == 0, f"not rendered within {CPU_SECONDS} s of CPU ({done.returncode})"
    assert done.stdout.strip() == repr(render_visible("<b>x</b>"))


def test_a_bgcolor_where_readers_paint_none_hides_no_text() -> None:
    """bgcolor paints a body, a table, its rows and cells only: on a <span> it was
    read as the background, so a white letter on a dark page went missing from the
    rendering without hidden text, and the word it completes with no rendering."""
    html = ('<body bgcolor="#333333"><p>vi<span style="display:none">X</span>'
            '<span bgcolor="#ffffff"><font color="#ffffff">a</font></span>gra')
    assert body_rule_matches("viagra", text_message("text/html", html))
    # On a table cell it still paints.
    assert "x" not in render_visible('<table bgcolor="#fff"><tr><td><font color="#fff">x</font>')


@pytest.mark.parametrize(
    "html",
    [
        '<div style="background-color:#fff;background-image:url(hero.jpg)">'
        '<span style="color:#fff">Spring sale</span></div>',
        '<table bgcolor="#fff"><tr><td background="hero.jpg"><font color="#fff">Spring sale',
        '<style>.hero{background-image:url(hero.jpg)}</style><table bgcolor="#fff"><tr>'
        '<td class=hero style="color:#fff">Spring sale',
    ],
    ids=["css", "attribute", "sheet"],
)
def test_text_on_a_background_image_is_not_taken_for_hidden(html: str) -> None:
    """The documented "none under a background image" held for the background
    shorthand only: white text on a picture over a white fallback was left out."""
    assert "Spring sale" in render_visible(html)


_HIDDEN_X = "vi<span style=display:none>X</span>a"


@pytest.mark.parametrize(
    "html",
    [
        # An escape that writes a capital: the sheet was lower-cased before escapes were read.
        r"<style>.h{display:\4e one}</style>vi<span class=h>X</span>agra",
        r"<style>.h{\44 isplay:none}</style>vi<span class=h>X</span>agra",
        r"<style>.\48{display:none}</style>vi<span class=h>X</span>agra",
        r"<style>\53 PAN{display:none}</style>vi<span>X</span>agra",
        # An escaped "/*", or one in a string, opens no comment.
        r'vi<span style="x:\2f\2a;display:none">X</span>agra',
        r'vi<span style="x:\/*;display:none">X</span>agra',
        """vi<span style='font-family:"/*";display:none'>X</span>agra""",
        """<style>.h{font-family:"/*";display:none}</style>vi<span class=h>X</span>agra""",
        # An escaped ";", or one in a string, ends no declaration: "gra" shows.
        _HIDDEN_X + r'<span style="color:red\3b display:none">gra</span>',
        _HIDDEN_X + r'<span style="color:red\;display:none">gra</span>',
        _HIDDEN_X + """<span style='font-family:"a;display:none"'>gra</span>""",
        r"<style>.a{color:red\3b display:none}</style>" + _HIDDEN_X + "<span class=a>gra</span>",
    ],
)
def test_css_escapes_and_strings_are_read_as_browsers_read_them(html: str) -> None:
    """Escapes were read before the CSS was split and lower-cased after it was, so an
    escape could hide a declaration from the reading or make one of a value."""
    assert render_visible(html) == "viagra"


_ESCAPED_SEMICOLONS = "\\;" * 100_000


@pytest.mark.parametrize("html", [f"<b style='{_ESCAPED_SEMICOLONS}'>x</b>",
                                  f"<style>b{{{_ESCAPED_SEMICOLONS}}}</style><b>x</b>"],
                         ids=["attribute", "sheet"])
def test_escaped_semicolons_without_a_colon_are_read_in_linear_time(html: str) -> None:
    """A declaration's ":" was required: each escaped ";" of a name without one made the
    search start again inside it (100 KB took 16 s). The kernel stops the child past
    CPU_SECONDS of CPU: a kill switch, not a measure."""
    done = subprocess.run([sys.executable, "-c", _RENDER], input=html, text=True,
                          capture_output=True, preexec_fn=_limit_cpu, check=False)
    assert done.returncode == 0, f"not rendered within {CPU_SECONDS} s of CPU ({done.returncode})"
    assert done.stdout.strip() == repr("x")


@pytest.mark.parametrize("sheet", ["x;b{display:none}", "x\\;b{display:none}"])
def test_a_semicolon_in_a_selector_spoils_the_rule(sheet: str) -> None:
    """Browsers drop such a rule: a ";" ends an at-rule's statement only. Cut there, the
    rule hid every <b>, and a keyword split around one with it."""
    assert render_visible(f"<style>{sheet}</style>vi<b>agra</b>") == "viagra"


def test_statements_before_a_rule_still_end_at_their_semicolon() -> None:
    html = '<style>@charset "utf-8";@import url(a.css);b{display:none}</style>vi<b>agra</b>'
    assert render_visible(html) == "vi"
