"""The sanitizer's guard against HTML whose tree nh3 would take seconds to build.

The estimate is checked on shapes, not timed: bench/html_cost.py prints nh3's
CPU beside it for the same shapes.
"""

from __future__ import annotations

import pytest
from bench.html_shapes import COSTLY, ORDINARY

from postwarden_policies import sanitize
from postwarden_policies.html_cost import BUDGET, estimated_cost, too_costly
from postwarden_policies.rewrite import HtmlOptions
from postwarden_policies.sanitize import sanitize_html


@pytest.mark.parametrize(("label", "html"), ORDINARY, ids=[label for label, _ in ORDINARY])
def test_ordinary_and_sloppy_html_is_far_below_the_budget(label: str, html: str) -> None:
    # Unclosed <p>, <li> and <font> in cells are closed by the tree builder as it goes:
    # read as nesting, they would refuse ordinary mail.
    assert estimated_cost(html.lower(), BUDGET) < BUDGET // 100


@pytest.mark.parametrize(("label", "html"), COSTLY, ids=[label for label, _ in COSTLY])
def test_deep_nesting_and_formatting_reopened_over_and_over_are_too_costly(
    label: str, html: str,
) -> None:
    assert too_costly(html.lower())


def test_a_costly_part_is_replaced_with_a_notice_without_nh3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_nh3(*_: object) -> None:
        raise AssertionError("nh3 was asked to clean a part too costly for it")

    monkeypatch.setattr(sanitize, "_cleaner", no_nh3)
    ladder = dict(COSTLY)["formatting reopened at every close"] + "<script>x</script>"
    clean, removed = sanitize_html(ladder, HtmlOptions("keep", ("https",)))
    assert removed == (("too_complex", 1),)
    assert "<b" not in clean


def test_counting_stops_once_past_the_budget() -> None:
    deep = "<div>" * 100_000
    assert BUDGET < estimated_cost(deep, BUDGET) < 2 * BUDGET


# Where SVG or MathML holds HTML again (an integration point) its start tags are HTML,
# as costly as anywhere: read as SVG or MathML, these were estimated at a thousandth.
HELD_HTML = [
    pytest.param("<svg><foreignObject>" + "<section>" * 20_000, id="sections-in-foreignobject"),
    pytest.param("<math><mi>" + "<section>" * 20_000, id="sections-in-mi"),
    pytest.param('<math><annotation-xml encoding="text&#47;html">' + "<article>" * 20_000,
                 id="articles-in-html-annotation-xml"),
    pytest.param("<svg><desc>" + "<section>" * 1_000 + "".join(
        f"<b c={i}>" for i in range(1_000)) + "x</section>" * 1_000,
                 id="formatting-reopened-in-desc"),
]


@pytest.mark.parametrize("html", HELD_HTML)
def test_html_that_svg_or_mathml_holds_costs_as_html(html: str) -> None:
    assert too_costly(html.lower())


def test_html_in_svg_and_mathml_as_mail_writes_it_is_far_below_the_budget() -> None:
    html = "<table>" + "".join(
        f'<tr><td><svg width=100 height=20><foreignObject width=100 height=20><div><b>{i}'
        f'</b> <a href="https://x.test/{i}">link</a></div></foreignObject></svg></td></tr>'
        "<math><mi>x</mi><mo>+</mo><annotation-xml encoding=text/html><span>x</span>"
        "</annotation-xml><annotation-xml><mi>y</mi></annotation-xml></math>"
        for i in range(500)) + "</table>"
    assert estimated_cost(html.lower(), BUDGET) < BUDGET // 100
