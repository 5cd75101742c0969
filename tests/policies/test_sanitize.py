"""The email HTML sanitizer: allowlist, counts, options, and nh3 panics."""

from __future__ import annotations

import _thread
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import nh3
import pytest

from postwarden_policies import sanitize
from postwarden_policies.html_allowlist import HtmlOptions
from postwarden_policies.html_precheck import needs_no_sanitizing
from postwarden_policies.model import DEFAULT_URL_SCHEMES
from postwarden_policies.sanitize import sanitize_html
from postwarden_policies.visiblehtml import render_visible

KEEP = HtmlOptions("keep", frozenset({"http", "https", "mailto", "cid"}))
STRIP = HtmlOptions("strip", frozenset({"http", "https", "mailto", "cid"}))


@pytest.mark.parametrize(
    ("html", "clean", "removed"),
    [
        pytest.param("<p>plain <b>bold</b></p>", "<p>plain <b>bold</b></p>", (), id="benign"),
        pytest.param("<ScRiPt>x()</sCrIpT><p>a</p>", "<p>a</p>", (("script", 1),), id="script"),
        pytest.param(
            "<img src=x onerror=alert(1)>", '<img src="x">', (("@onerror", 1),), id="onerror"
        ),
        pytest.param(
            '<a href="java&#x0A;script:x">a</a>',
            "<a>a</a>",
            (("@href", 1),),
            id="javascript-entity",
        ),
        pytest.param(
            '<!-- c --><table><tr><td class="x" style="color: red">1</td></tr></table>',
            '<table><tbody><tr><td class="x" style="color:red">1</td></tr></tbody></table>',
            (("comment", 1),),
            id="layout-kept",
        ),
        pytest.param(
            '<div style="background: #000000; color: #ffffff">Sale</div><script></script>',
            '<div style="background:#000000;color:#ffffff">Sale</div>',
            (("script", 1),),
            id="background-shorthand-kept-with-its-white-text",
        ),
        pytest.param(
            '<html><body bgcolor="#000000" text=WHITE><p style="color:#fff">Hi</p>'
            "<script></script></body></html>",
            '<div style="background-color:#000000;color:#ffffff">'
            '<p style="color:#fff">Hi</p></div>',
            (("script", 1),),
            id="body-colours-kept-with-its-white-text",
        ),
        pytest.param(
            '<BODY bgcolor=000000 STYLE="color: #fff; background: url(data:,x)" onload="x()">Hi',
            '<div style="background-color:#000000;color:#fff">Hi</div>',
            (("@onload", 1), ("style:url(", 1)),
            id="body-style-cleaned-as-any",
        ),
        pytest.param(
            '<body bgcolor="#000;display:none" text=" red;font-size:0"><p>Hi</p>',
            '<div style="background-color:#0da0e0;color:#ed000e"><p>Hi</p></div>',
            (),
            id="body-colour-that-is-no-colour-hid-the-page",
        ),
        pytest.param(
            '<body title="a bgcolor=black text=black"><p>Hi</p>',
            "<p>Hi</p>",
            (("@title", 1),),
            id="body-colours-in-another-attribute-value-are-no-attributes",
        ),
        pytest.param(
            "<body bgcolor=red BGCOLOR=blue dir=rtl dir=ltr><p>Hi</p>",
            '<div dir="rtl" style="background-color:#ff0000"><p>Hi</p></div>',
            (("@bgcolor", 1),),
            id="body-attribute-given-twice-the-first-counts",
        ),
        pytest.param(
            "<body bgcolor=black><p>Hi</p><body text=white bgcolor=red dir=rtl>",
            '<div dir="rtl" style="background-color:#000000;color:#ffffff"><p>Hi</p></div>',
            (("@bgcolor", 1),),
            id="a-later-body-tag-adds-what-the-first-lacked",
        ),
        pytest.param(
            '<html lang=he><body><p>Hi</p><html dir=rtl lang=en style="color: red">',
            '<div lang="he" dir="rtl" style="color:red"><p>Hi</p></div>',
            (),
            id="a-later-html-tag-adds-what-the-first-lacked",
        ),
        pytest.param(
            "<body text=white><template><template></template><body bgcolor=white>"
            "<html dir=rtl></template></template><p>Hi</p><body bgcolor=black>",
            '<div style="color:#ffffff;background-color:#000000"><p>Hi</p></div>',
            (("@bgcolor", 1), ("@dir", 1), ("template", 2)),
            id="a-body-or-html-tag-in-a-template-sets-nothing",
        ),
        pytest.param(
            "<svg><template><body bgcolor=black text=white></template></svg><p>Hi</p>",
            '<div style="background-color:#000000;color:#ffffff"><p>Hi</p></div>',
            (("svg", 1), ("template", 1)),
            id="a-template-in-svg-is-an-svg-element-and-a-body-tag-leaves-it",
        ),
        pytest.param(
            "<svg><foreignObject><template><body bgcolor=black></template></foreignObject>"
            "</svg><svg/><template><body text=black></template><p>Hi</p>",
            "<p>Hi</p>",
            (("@bgcolor", 1), ("@text", 1), ("foreignobject", 1), ("svg", 2), ("template", 2)),
            id="a-template-where-svg-holds-html-or-after-a-closed-svg-is-one",
        ),
        pytest.param(
            "<svg><title><style><body bgcolor=white></style></title><style>"
            "<body bgcolor=black text=white></style></svg><p>Hi</p>",
            '<div style="background-color:#000000;color:#ffffff"><p>Hi</p></div>',
            (("style", 2), ("svg", 1)),
            id="a-style-in-svg-is-no-raw-text-and-a-body-tag-leaves-it",
        ),
        pytest.param(
            "<svg><foreignObject><div></svg></div></foreignObject><template></svg>"
            "<body bgcolor=black text=white><p>Hi</p>",
            '<div style="background-color:#000000;color:#ffffff"><p>Hi</p></div>',
            (("foreignobject", 1), ("svg", 1), ("template", 1)),
            id="an-svg-end-tag-in-html-that-svg-holds-closes-nothing",
        ),
        pytest.param(
            "<svg><style><script>alert(1)</script><img src=x onerror=alert(1)></style></svg>"
            "<math><mi><style><b>x</b></style></mi><![CDATA[<iframe>]]></math>",
            '<img src="x">',
            (("@onerror", 1), ("math", 1), ("mi", 1), ("script", 1), ("style", 2), ("svg", 1)),
            id="what-a-style-in-svg-holds-is-counted-as-tags",
        ),
        pytest.param(
            "<svg><![CDATA[><body bgcolor=black text=black>]]></svg><p>Hi</p>",
            "<p>Hi</p>",
            (("@bgcolor", 1), ("@text", 1), ("svg", 1)),
            id="a-body-tag-in-an-svg-cdata-section-is-text",
        ),
        pytest.param(
            '<body style="color: red" text="blue" bgcolor=" white "><p>Hi</p>',
            '<div style="color:#0000ff;background-color:#ffffff;color:red"><p>Hi</p></div>',
            (),
            id="body-style-over-its-colour-attributes",
        ),
        pytest.param(
            "<html bgcolor=black text=black dir=rtl><body text=navy><p>Hi</p>",
            '<div dir="rtl" style="color:#000080"><p>Hi</p></div>',
            (("@bgcolor", 1), ("@text", 1)),
            id="html-colour-attributes-colour-nothing-in-readers",
        ),
        pytest.param(
            '<html dir="rtl" lang="he"><body dir=RTL><p>\u05e9\u05dc\u05d5\u05dd, Dana!</p>'
            "<script></script></body></html>",
            '<div dir="rtl" lang="he"><p>\u05e9\u05dc\u05d5\u05dd, Dana!</p></div>',
            (("script", 1),),
            id="right-to-left-page-keeps-its-direction",
        ),
        pytest.param(
            '<img src="cid:m" usemap="#m" alt="Menu"><map name="m"><area shape="rect" '
            'coords="0,0,9,9" href="https://shop.test/" alt="Shop"></map><script></script>',
            '<img src="cid:m" usemap="#m" alt="Menu"><map name="m"><area shape="rect" '
            'coords="0,0,9,9" href="https://shop.test/" alt="Shop"></map>',
            (("script", 1),),
            id="an-image-map-keeps-its-image",
        ),
        pytest.param(
            '<p style="color: red /* ; background: url(x) */; width: 1px">x</p>',
            '<p style="color:red;width:1px">x</p>',
            (),
            id="a-semicolon-in-a-style-comment-splits-nothing",
        ),
        pytest.param(
            '<p style="color: red; font-family: \'a;url(x)\'; width: 1px">x</p>',
            '<p style="color:red;width:1px">x</p>',
            (("style:url(", 1),),
            id="a-semicolon-in-a-style-string-splits-nothing",
        ),
        pytest.param(
            '<div style="display: none; mso-hide: all">Preview</div><script></script>',
            '<div style="display:none;mso-hide:all">Preview</div>',
            (("script", 1),),
            id="preview-text-stays-hidden-in-outlook",
        ),
        pytest.param(
            '<ul style="list-style: none; padding: 0"><li>Home</li></ul><div style="'
            'box-sizing: border-box; width: 100%; padding: 0 20px; overflow-wrap: anywhere">'
            '<table style="mso-table-lspace: 0pt; mso-table-rspace: 0pt"><tr><td style="'
            "mso-line-height-rule: exactly; line-height: 20px; border-bottom-style: solid; "
            'border-top-left-radius: 4px; position: fixed">x</td></tr></table></div><!-- c -->',
            '<ul style="list-style:none;padding:0"><li>Home</li></ul><div style="'
            'box-sizing:border-box;width:100%;padding:0 20px;overflow-wrap:anywhere">'
            '<table style="mso-table-lspace:0pt;mso-table-rspace:0pt"><tbody><tr><td style="'
            "mso-line-height-rule:exactly;line-height:20px;border-bottom-style:solid;"
            'border-top-left-radius:4px">x</td></tr></tbody></table></div>',
            (("comment", 1),),
            id="layout-a-rewrite-kept",
        ),
        pytest.param(
            "<header>News</header><section><article>Dear</article></section><script></script>"
            "<footer>Bye</footer>",
            "<header>News</header><section><article>Dear</article></section><footer>Bye</footer>",
            (("script", 1),),
            id="html5-blocks-keep-their-texts-apart",
        ),
        pytest.param(
            "<p><ruby>\u6f22\u5b57<rp>(</rp><rt>\u304b\u3093\u3058</rt><rp>)</rp></ruby>"
            "</p><script></script>",
            "<p><ruby>\u6f22\u5b57<rp>(</rp><rt>\u304b\u3093\u3058</rt><rp>)</rp></ruby></p>",
            (("script", 1),),
            id="furigana-stay-over-their-kanji",
        ),
        pytest.param(
            '<blockquote type="cite" cite="mid:1@example.org">On Monday Jo wrote:<br>'
            '<blockquote type="CITE">Lunch?</blockquote></blockquote>'
            '<blockquote type="x">y</blockquote><script></script>',
            '<blockquote type="cite">On Monday Jo wrote:<br><blockquote type="CITE">Lunch?'
            "</blockquote></blockquote><blockquote>y</blockquote>",
            (("@cite", 1), ("@type", 1), ("script", 1)),
            id="a-quoted-reply-keeps-its-quote-bar",
        ),
        pytest.param(
            '<table role="presentation" aria-describedby="t"><tr><td>'
            '<a href="https://shop.example/" aria-label="Shop the sale">'
            '<img src="cid:b@x" alt=""></a><img src="cid:s@x" aria-hidden="true" alt="">'
            "</td></tr></table><script></script>",
            '<table role="presentation"><tbody><tr><td>'
            '<a href="https://shop.example/" aria-label="Shop the sale">'
            '<img src="cid:b@x" alt=""></a><img src="cid:s@x" aria-hidden="true" alt="">'
            "</td></tr></tbody></table>",
            (("@aria-describedby", 1), ("script", 1)),
            id="screen-readers-keep-what-the-template-told-them",
        ),
        pytest.param(
            '<p style="background: #000 url(javascript:x); color: #fff">x</p>',
            '<p style="background-color:#000;color:#fff">x</p>',
            (("style:url(", 1),),
            id="background-shorthand-refused-keeps-its-colour",
        ),
        pytest.param(
            '<div style="color:#fff;background:url(\'javascript:x?c=#fff\') no-repeat '
            'RGBA(0, 0, 0, .8)/cover">x</div><p style="background:linear-gradient(#fff, red),'
            ' u\\72l(a.png) teal">y</p><p style="background:url(data:,a) center">z</p>',
            '<div style="color:#fff;background-color:rgba(0, 0, 0, 0.8)">x</div>'
            '<p style="background-color:teal">y</p><p>z</p>',
            (("style:url(", 3),),
            id="background-shorthand-refused-keeps-its-own-colour-alone",
        ),
        pytest.param(
            '<p style="position: fixed; color: red" onclick="x()">x</p>',
            '<p style="color:red">x</p>',
            (("@onclick", 1),),
            id="css-allowlist-in-a-rewritten-part",
        ),
        pytest.param(
            '<p style="color: red; background: u\\72l(//t.example/x)">x</p>',
            '<p style="color:red">x</p>',
            (("style:url(", 1),),
            id="css-escaped-url",
        ),
        pytest.param(
            '<p style="width: expr/**/ession(alert(1))">x</p>',
            "<p>x</p>",
            (("style:expression", 1),),
            id="css-comment-split",
        ),
        pytest.param(
            "<p style=\"color: red; background-image: image-set('http:evil.example' 1x)\">x</p>",
            '<p style="color:red">x</p>',
            (("style:image-set(", 1),),
            id="css-image-set",
        ),
        pytest.param(
            '<p style="list-style-image: -WebKit-Image-Set(\'//t.example/x\' 1x)">x</p>',
            "<p>x</p>",
            (("style:image-set(", 1),),
            id="css-webkit-image-set",
        ),
        pytest.param(
            '<p style="content: image(\'https://t.example/x\')">x</p>',
            "<p>x</p>",
            (("style:image(", 1),),
            id="css-image",
        ),
        pytest.param(
            '<p style="background: src(\'//t.example/x\')">x</p>',
            "<p>x</p>",
            (("style:src(", 1),),
            id="css-src",
        ),
        pytest.param(
            '<p style="background: cross-fade(url(a.png), url(b.png), 50%)">x</p>',
            "<p>x</p>",
            (("style:url(", 1),),
            id="css-cross-fade",
        ),
        pytest.param('<img src="cid:part1@x">', '<img src="cid:part1@x">', (), id="cid"),
        pytest.param(
            '<img src="data:image/gif;base64,R0lGOD">',
            '<img src="data:image/gif;base64,R0lGOD">',
            (),
            id="data-image",
        ),
        pytest.param(
            '<img src="data:image/svg+xml,&lt;svg&gt;">', "<img>", (("url:data", 1),), id="data-svg"
        ),
        pytest.param("<math><mi>x</mi></math>y", "y", (("math", 1), ("mi", 1)), id="math"),
        # Names that are no tag or attribute went away with none: the list said "script".
        pytest.param(
            '<a title="<script>" href="http://x">x</a>',
            '<a title="&lt;script&gt;" href="http://x">x</a>',
            (),
            id="tag-in-a-value",
        ),
        pytest.param(
            '<p foo="a onclick=b">x<!-- <iframe> --></p>',
            "<p>x</p>",
            (("@foo", 1), ("comment", 1)),
            id="attribute-in-a-value-tag-in-a-comment",
        ),
        pytest.param("<b onclick>x</b><br clear>", "<b>x</b><br>", (("@clear", 1), ("@onclick", 1)),
                     id="attributes-without-a-value"),
    ],
)
def test_sanitize(html: str, clean: str, removed: tuple[tuple[str, int], ...]) -> None:
    assert sanitize_html(html, KEEP) == (clean, removed)


def test_remote_images() -> None:
    html = '<img src="https://t.example/p.gif"><img src="//t.example/q.gif"><img src="cid:a">'
    assert sanitize_html(html, KEEP) == (html, ())
    assert sanitize_html(html, STRIP) == ('<img><img><img src="cid:a">', (("remote-image", 2),))


@pytest.mark.parametrize(
    "src",
    ["h&#9;ttp://t.example/p.gif", "ht\ntps://t.example/p.gif", " \x01https://t.example/p.gif",
     "\\\\t.example/p.gif", "/\\t.example/p.gif"],
)
def test_remote_images_are_judged_as_the_url_parser_reads_them(src: str) -> None:
    clean, removed = sanitize_html(f'<p>x</p><img src="{src}">', STRIP)
    assert (clean, removed) == ("<p>x</p><img>", (("remote-image", 1),))


def test_data_urls_are_judged_as_the_url_parser_reads_them() -> None:
    # "url(" in the text makes the attribute filter, which lets data: images by, run.
    link = '<p>url(</p><a href="d&#9;ata:text/html;base64,PHA+">open</a>'
    assert sanitize_html(link, KEEP)[1] == (("url:data", 1),)
    image = '<p>url(</p><img src=" da&#10;ta:image/png;base64,iVBORw0K">'
    assert sanitize_html(image, KEEP)[1] == ()


def test_url_schemes_come_from_the_options() -> None:
    only_https = HtmlOptions("keep", frozenset({"https"}))
    assert sanitize_html('<a href="mailto:a@b">m</a>', only_https)[1] == (("@href", 1),)
    assert sanitize_html('<a href="mailto:a@b">m</a>', KEEP)[1] == ()


def test_filter_outside_a_call_counts_nothing() -> None:
    # nh3 may call the filter with no sanitize_html frame around it (e.g. reuse).
    attribute_filter = sanitize._make_filter(strip_remote=True, schemes=KEEP.allowed_url_schemes)
    assert attribute_filter("img", "src", "https://x/y.png") is None
    assert attribute_filter("p", "style", "color: red") == "color: red"


NEEDS_FILTER = '<p style="color: red; background: url(javascript:x)">x</p>'


def on_foreign_thread(call: Callable[[], Any]) -> Any:
    """``call()``'s result (or exception) on a thread threading did not start, as
    libmilter's are."""
    outcome: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome.append((False, exc))
        finally:
            done.set()

    _thread.start_new_thread(run, ())
    assert done.wait(10)
    [(returned, value)] = outcome
    if not returned:
        raise value
    return value


def spying_cleaners(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads the attribute filter runs on, from now on."""
    called_on: list[str] = []

    def cleaner(_remote: str, _schemes: frozenset[str], filtered: bool) -> nh3.Cleaner:
        def attribute_filter(_tag: str, _attribute: str, value: str) -> str:
            called_on.append(threading.current_thread().name)
            return value

        return nh3.Cleaner(attribute_filter=attribute_filter if filtered else None)

    monkeypatch.setattr(sanitize, "_cleaner", cleaner)
    return called_on


def test_nh3_calls_python_back_only_on_a_thread_python_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sanitize._filter_threads says why."""
    called_on = spying_cleaners(monkeypatch)
    html = '<p title="t" onclick="x">url(</p>'
    assert on_foreign_thread(lambda: sanitize_html(html, KEEP))[0] == '<p title="t">url(</p>'
    assert called_on and {name.split("_")[0] for name in called_on} == {"postwarden-nh3"}
    called_on.clear()
    assert sanitize_html(html, KEEP)[0] == '<p title="t">url(</p>'  # a thread of Python's
    assert called_on and set(called_on) == {threading.current_thread().name}
    called_on.clear()
    plain = '<p title="t" onclick="x">plain</p>'  # needs no filter: no callback at all
    assert on_foreign_thread(lambda: sanitize_html(plain, KEEP))[0] == '<p title="t">plain</p>'
    assert called_on == []


def test_a_thread_python_started_does_not_wait_for_the_filter_threads() -> None:
    """The milter's pool decides large messages: their parts must not queue behind
    other large parts holding the filter threads."""
    release = threading.Event()
    threads = sanitize._FILTER_THREADS._max_workers
    busy = [sanitize._FILTER_THREADS.submit(release.wait) for _ in range(threads)]
    done: list[tuple[str, tuple[tuple[str, int], ...]]] = []
    worker = threading.Thread(target=lambda: done.append(sanitize_html(NEEDS_FILTER, KEEP)))
    try:
        worker.start()
        worker.join(5)
        assert done and done[0][1] == (("style:url(", 1),)
    finally:
        release.set()
        for job in busy:
            job.result()
        worker.join()


def test_a_forked_child_still_cleans_with_the_filter() -> None:
    html = NEEDS_FILTER
    expected = on_foreign_thread(lambda: sanitize_html(html, KEEP))  # filter threads started
    assert expected[1] == (("style:url(", 1),)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's result is its exit status
        signal.alarm(10)  # a hang ends the child with SIGALRM
        os._exit(0 if on_foreign_thread(lambda: sanitize_html(html, KEEP)) == expected else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


class PanicException(BaseException):  # the name pyo3 gives its panics
    pass


class _PanickingCleaner:
    def clean(self, html: str) -> str:
        raise PanicException("rust panicked")


class _InterruptedCleaner:
    def clean(self, html: str) -> str:
        raise KeyboardInterrupt


def test_a_panic_becomes_a_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sanitize, "_cleaner", lambda *_: _PanickingCleaner())
    clean, removed = sanitize_html("<p onclick=x>x</p>", KEEP)
    assert "could not be sanitized" in clean
    assert removed == (("unsanitizable", 1),)


def test_other_base_exceptions_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sanitize, "_cleaner", lambda *_: _InterruptedCleaner())
    with pytest.raises(KeyboardInterrupt):
        sanitize_html("<p onclick=x>x</p>", KEEP)


def test_the_filter_threads_pass_a_panic_and_other_exceptions_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran_on: list[str] = []

    class Failing:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def clean(self, html: str) -> str:
            ran_on.append(threading.current_thread().name)
            raise self.exc

    monkeypatch.setattr(sanitize, "_cleaner", lambda *_: Failing(PanicException("panicked")))
    clean, removed = on_foreign_thread(lambda: sanitize_html(NEEDS_FILTER, KEEP))
    assert "could not be sanitized" in clean and removed == (("unsanitizable", 1),)
    monkeypatch.setattr(sanitize, "_cleaner", lambda *_: Failing(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        on_foreign_thread(lambda: sanitize_html(NEEDS_FILTER, KEEP))
    assert len(ran_on) == 2 and {name.split("_")[0] for name in ran_on} == {"postwarden-nh3"}


def test_cleaners_are_built_once_per_options() -> None:
    assert sanitize._cleaner("keep", KEEP.allowed_url_schemes) is sanitize._cleaner(
        "keep", frozenset(KEEP.allowed_url_schemes)
    )


def test_html_within_the_allowlist_comes_back_as_it_is() -> None:
    html = '<table><tr><td class="x" style="position: fixed">1</td></tr></table>'
    assert sanitize_html(html, KEEP) == (html, ())


def test_document_structure_alone_is_not_a_change() -> None:
    page = "<!DOCTYPE html><html><head><title>News</title></head><body><p>Hi</p></body></html>"
    assert sanitize_html(page, KEEP) == (page, ())
    assert sanitize._clean(page, KEEP)[1] == ()  # nh3 drops it, uncounted


def test_what_the_head_holds_is_still_counted() -> None:
    page = "<html><head><title>x</title><style>p{}</style><script>a()</script></head><p>Hi</p>"
    assert sanitize_html(page, KEEP)[1] == (("script", 1), ("style", 1))


def test_text_nh3_cannot_take_becomes_a_notice() -> None:
    # A lone surrogate (never produced by our decoding, which replaces) cannot
    # be handed to nh3; the part is judged unsanitizable, nothing raises.
    assert sanitize_html("<script>x()</script>\ud800", KEEP) == sanitize.removed_whole(
        "unsanitizable"
    )


@pytest.mark.parametrize("link", [
    '<a href="https://news.example.org/a">Read</a>',
    '<a href="https://news.example.org/b" target="_blank">Open</a>',
    '<a name="top">Top</a>',
])
def test_a_link_comes_out_with_the_same_attributes_either_way(link: str) -> None:
    """HTML within the allowlist goes out as it is, so nh3 must add nothing to a link
    there either (it added rel="noopener noreferrer" only to links it cleaned)."""
    assert needs_no_sanitizing(link, KEEP)
    assert sanitize_html(link, KEEP) == (link, ())
    assert sanitize_html(f"<!-- note -->{link}", KEEP) == (link, (("comment", 1),))


@pytest.mark.parametrize("target", ["mailview2", "_self", "_top", "_parent", " _blank"])
def test_a_link_into_another_window_loses_its_target(target: str) -> None:
    """Browsers imply noopener for target="_blank" alone: any other target could let
    the page opened navigate the reader's window, so nh3 drops it."""
    html = f'<a href="https://news.example.org/" target="{target}">Open</a>'
    assert sanitize_html(html, KEEP) == (
        '<a href="https://news.example.org/">Open</a>', (("@target", 1),))


@pytest.mark.parametrize(
    ("value", "painted"),
    [
        pytest.param("chucknorris", "#c00000", id="a-word-is-a-colour"),
        pytest.param("sick", "#00c000", id="sick"),
        pytest.param("crap", "#c0a000", id="crap"),
        pytest.param("rgb(0, 0, 0)", "#b00000", id="css-function-read-as-digits"),
        pytest.param("hsl(0, 100%, 50%)", "#001050", id="hsl"),
        pytest.param("fff", "#0f0f0f", id="three-digits-without-a-hash"),
        pytest.param("#FFF", "#ffffff", id="hash-and-three-digits"),
        pytest.param("#abcd", "#abcd00", id="four-digits"),
        pytest.param("#0000001", "#000010", id="leading-zeros-go-from-every-part"),
        pytest.param("#1234567890abcdef1234567890", "#23ab45", id="parts-past-eight-digits"),
        pytest.param("0123456789abcdefghij", "#0178ef", id="parts-cut-to-two-digits"),
        pytest.param(" LightSeaGreen ", "#20b2aa", id="a-name"),
        pytest.param("blacK", "#b0ac00", id="the-kelvin-sign-is-no-k"),
        pytest.param("😀f", "#00000f", id="past-the-bmp-two-zeros"),
        pytest.param("a" * 200 + "#", "#aaaaaa", id="cut-at-128"),
        pytest.param("  ", "#000000", id="blank-is-black"),
    ],
)
def test_page_colours_are_read_as_readers_read_legacy_colours(value: str, painted: str) -> None:
    """HTML's rules make a colour of any ``bgcolor`` or ``text``: one dropped for not
    being a CSS colour left the page another colour than readers paint."""
    html = f'<body bgcolor="{value}" text="{value}"><p>Hi</p><script></script>'
    wrapper = f'<div style="background-color:{painted};color:{painted}"><p>Hi</p></div>'
    assert sanitize_html(html, KEEP) == (wrapper, (("script", 1),))


@pytest.mark.parametrize("value", ["", "transparent", " TransParent "])
def test_a_colour_attribute_that_paints_nothing_goes_with_nothing_lost(value: str) -> None:
    assert sanitize_html(f'<body bgcolor="{value}"><p>Hi</p>', KEEP) == ("<p>Hi</p>", ())


@pytest.mark.parametrize(
    "decoy",
    [
        '<!-- <body bgcolor="#ffffff" text="#000000"> -->',
        '<!-- -- > <body bgcolor="#ffffff" text="#000000"> -->',
        '<title><body bgcolor="#ffffff" text="#000000"></title>',
        '<style>/* <body bgcolor="#ffffff" text="#000000"> */</style>',
        '<script>document.write(\'<body bgcolor="#ffffff" text="#000000">\')</script>',
        '<meta name="x" content=\'<body bgcolor="#ffffff" text="#000000">\'>',
        '<! <body bgcolor="#ffffff" text="#000000">',
        '<base title=\'<body bgcolor="#ffffff" text="#000000">\'>',
        # A quote opens a value only after "=": these hid the <body> tag that follows.
        '<p a"b>',
        "<x y=a\"b>",
        # ... or showed readers' attributes as a tag: y=">" ends no tag.
        '<p x=a"b y=">" <body bgcolor="#ffffff" text="#000000">',
        '</p title=">"<body bgcolor="#ffffff" text="#000000">',
        '<title x="</title>"><body bgcolor="#ffffff" text="#000000"></title>',
    ],
)
def test_the_page_wrapper_takes_the_body_tag_readers_read(decoy: str) -> None:
    """A ``<body`` in a comment, a raw-text element or an attribute value is no tag:
    taken for the page's, white text went on the white page its decoy set; nor is a
    quote other than after "=" the start of a value (HTML's tokenizer)."""
    html = f'<html><head>{decoy}</head><body bgcolor="#000000" text="#ffffff"><p>Hi</p></body>'
    clean, _ = sanitize_html(html, KEEP)
    assert clean.startswith('<div style="background-color:#000000;color:#ffffff">'), clean


def test_a_hundred_thousand_body_tags_merge_in_one_pass() -> None:
    """Each later ``<body>`` adds only what the earlier lacked, as readers merge them; the
    wrapper reads each tag once (the part's cost estimate, not this, turns such a part
    away in sanitize_html)."""
    html = '<body bgcolor="#000000">' + "<body bgcolor=red>" * 100_000 + "<body text=#fff><p>Hi"
    assert sanitize.sanitized_part(html, "keep", KEEP.allowed_url_schemes, 2**62)[1] == (
        '<div style="background-color:#000000;color:#ffffff"><p>Hi</p></div>',
        (("@bgcolor", 100_000),),
    )


@pytest.mark.parametrize(
    ("html", "clean"),
    [
        pytest.param(
            '<base href="https://shop.example/news/"><a href="offer.html">Offer</a>'
            '<a href="/account">Account</a><a href="//help.example/">Help</a>'
            '<a href="https://other.example/x">Other</a><a href="#top">Top</a>',
            '<a href="https://shop.example/news/offer.html">Offer</a>'
            '<a href="https://shop.example/account">Account</a>'
            '<a href="https://help.example/">Help</a>'
            '<a href="https://other.example/x">Other</a><a href="#top">Top</a>',
            id="relative-links-reach-their-target",
        ),
        pytest.param(
            '<!-- <base href="https://decoy.example/"> --><BASE target=_top>'
            '<base HREF="HTTPS://Shop.example/A/b"><base href="https://late.example/">'
            '<a href="C?d=E">x</a>',
            '<a href="https://Shop.example/A/C?d=E">x</a>',
            id="the-first-base-readers-read",
        ),
        pytest.param(
            '<b x=a"b y=">" <base href="https://decoy.example/">x</b><a href="y">y</a>',
            '<b>x</b><a href="y">y</a>',
            id="a-base-in-an-attribute-list-is-no-base",
        ),
        pytest.param(
            '<b x=a"b>x</b><base href="https://shop.example/"><a href="y">y</a>',
            '<b>x</b><a href="https://shop.example/y">y</a>',
            id="a-quote-in-an-unquoted-value-hides-no-base",
        ),
        pytest.param(
            '<base title=" href=https://decoy.example/" href="https://shop.example/">'
            '<a href="y">y</a>',
            '<a href="https://shop.example/y">y</a>',
            id="an-href-in-another-attribute-value-is-no-href",
        ),
        pytest.param(
            '<template><base href="https://decoy.example/"></template>'
            '<base href="https://shop.example/"><a href="y">y</a>',
            '<a href="https://shop.example/y">y</a>',
            id="a-base-in-a-template-is-none-of-the-page",
        ),
        pytest.param(
            '<svg><template></svg><base href="https://shop.example/"><a href="y">y</a>',
            '<a href="https://shop.example/y">y</a>',
            id="a-template-in-svg-hides-no-base",
        ),
        pytest.param(
            '<math><base href="https://decoy.example/"></math><math><mi><template>'
            '<base href="https://decoy.example/"></template></mi></math>'
            '<base href="https://shop.example/"><a href="y">y</a>',
            '<a href="https://shop.example/y">y</a>',
            id="a-base-in-mathml-or-in-a-template-there-is-none-of-the-page",
        ),
        pytest.param(
            '<base href="https://shop.example/a&copy=b&not;/"><a href="y">y</a>',
            '<a href="https://shop.example/a&amp;copy=b\xac/y">y</a>',
            id="a-reference-without-its-semicolon-before-an-equals-sign-stays-in-the-base",
        ),
        pytest.param(
            '<math><textarea></math><base href="https://shop.example/"><a href="y">y</a>',
            '<a href="https://shop.example/y">y</a>',
            id="a-textarea-in-mathml-is-no-raw-text-and-hides-no-base",
        ),
        pytest.param(
            '<svg><foreignObject><div></svg></div></foreignObject><base href="https://decoy.example/">'
            '</svg><base href="https://shop.example/"><a href="y">y</a>',
            '<a href="https://shop.example/y">y</a>',
            id="an-svg-end-tag-in-html-that-svg-holds-closes-nothing",
        ),
        pytest.param(
            '<svg><foreignObject><math><mi></foreignObject><base href="https://decoy.example/">'
            '</svg><base href="https://shop.example/"><a href="y">y</a>',
            '<a href="https://shop.example/y">y</a>',
            id="a-foreignobject-end-tag-closes-the-mathml-in-it",
        ),
        pytest.param(
            '<math><annotation-xml><svg><foreignObject><base href="https://shop.example/">'
            '</math><a href="y">y</a>',
            '<a href="https://shop.example/y">y</a>',
            id="an-svg-in-annotation-xml-holds-html",
        ),
        pytest.param(
            '<math><mi><![CDATA[><base href="https://decoy.example/">]]></mi></math>'
            '<svg><foreignObject><p><![CDATA[><base href="https://shop.example/">]]></p>'
            '</foreignObject></svg>'
            '<a href="y">y</a>',
            '<a href="https://shop.example/y">y</a>',
            id="a-base-in-a-cdata-section-where-mathml-is-current-is-text",
        ),
        pytest.param(
            '<noscript><base href="https://shop.example/"></noscript><a href="x">x</a>',
            '<a href="https://shop.example/x">x</a>',
            id="a-base-in-noscript-which-readers-running-no-script-read",
        ),
        pytest.param(
            '<base href="javascript:alert(1)//"><a href="x">x</a><img src="y">',
            '<a href="x">x</a><img src="y">',
            id="javascript-base",
        ),
        pytest.param(
            '<base href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;//">'
            '<a href="x">x</a>',
            '<a href="x">x</a>',
            id="data-base",
        ),
        pytest.param(
            '<base href="java&#9;script:alert(1)//"><a href="x">x</a>',
            '<a href="x">x</a>',
            id="javascript-base-split-by-a-tab",
        ),
        pytest.param(
            '<base href="ftp://files.example/"><a href="x">x</a>',
            '<a href="x">x</a>',
            id="base-of-a-scheme-not-allowed",
        ),
        pytest.param(
            '<base href="/relative/"><a href="x">x</a>', '<a href="x">x</a>',
            id="relative-base",
        ),
        pytest.param(
            '<base href="http://a b/"><a href="x">x</a><a href="//c d/">y</a>'
            '<base href="https://ok.example/">',
            '<a href="x">x</a><a href="//c d/">y</a>',
            id="a-base-or-link-no-parser-takes",
        ),
        pytest.param(
            '<base href="https://shop.example:8443/"><a href="x">x</a><a href="//h.123/">y</a>'
            '<a href="//h:70000/">z</a><a href="//xn--zz/">w</a><a href="//a[/">v</a>',
            '<a href="https://shop.example:8443/x">x</a><a href="//h.123/">y</a>'
            '<a href="//h:70000/">z</a><a href="//xn--zz/">w</a><a href="//a[/">v</a>',
            id="hosts-parsers-may-refuse",
        ),
        pytest.param(
            '<base href="https://ok.example/a\0&#0;/"><a href="b">x</a>',
            '<a href="https://ok.example/a\ufffd\ufffd/b">x</a>',
            id="a-base-read-as-the-parser-reads-it",
        ),
    ],
)
def test_relative_urls_are_resolved_against_the_dropped_base(html: str, clean: str) -> None:
    """``<base>`` goes (it split URLs past link scanners), but the links it set keep their
    target: each relative one is written whole, if that is a URL the allowlist allows
    and nh3 keeps when it cleans the result again."""
    assert sanitize_html(html, KEEP)[0] == clean
    assert sanitize_html(clean, KEEP) == (clean, ())


def test_an_image_a_base_makes_remote_is_stripped() -> None:
    html = '<base href="https://t.example/"><img src="pixel.gif"><img src="cid:logo">'
    assert sanitize_html(html, STRIP) == (
        '<img><img src="cid:logo">', (("@href", 1), ("base", 1), ("remote-image", 1)))


@pytest.mark.parametrize(
    ("html", "clean"),
    [
        pytest.param(
            "<p>Hi</p><NoScript><p>Please <b>enable</b> images</p></noscript><script></script>",
            "<p>Hi</p><p>Please <b>enable</b> images</p>",
            id="its-text-shows",
        ),
        pytest.param(
            '<noscript><img height="1" width="1" src="cid:pixel"></noscript><script></script>',
            '<img height="1" width="1" src="cid:pixel">',
            id="its-markup-is-no-text",
        ),
        pytest.param(
            '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></p></noscript>',
            '<p title="&lt;/noscript&gt;&lt;img src=x onerror=alert(1)&gt;"></p>',
            id="a-close-tag-in-a-value-stays-text",
        ),
        pytest.param(
            '<!-- <noscript> --><p title="<noscript>">x</p><script></script>',
            '<p title="&lt;noscript&gt;">x</p>',
            id="only-its-tags",
        ),
        # In SVG a <style> holds tags: one where SVG holds HTML is a <noscript> readers
        # read (kept, nh3 read up to its end tag, gone, as text: the <p> after went).
        pytest.param(
            "<svg><style><foreignObject><noscript></style></noscript></foreignObject></svg>"
            "<p>Hi</p>",
            "<p>Hi</p>",
            id="in-svg-style-where-svg-holds-html",
        ),
        # A CDATA section there is text to its "]]>" (the tag taken out of it made one).
        pytest.param(
            "<svg><![CDATA[>]]<noscript>><img src=https://t.example/x.gif>]]></svg><p>Hi</p>",
            "<p>Hi</p>",
            id="none-in-an-svg-cdata-section",
        ),
        # What was on either side of it stays apart: no tag is made of text.
        pytest.param(
            "<p>a <<noscript>img src=https://t.example/x.gif></noscript></p>",
            "<p>a &lt;img src=https://t.example/x.gif&gt;</p>",
            id="its-tags-join-no-text-into-a-tag",
        ),
    ],
)
def test_noscript_content_is_read_as_readers_running_no_script_read_it(
    html: str, clean: str
) -> None:
    """nh3 parses as a browser running scripts, for which ``<noscript>`` holds text:
    its markup went out as text the reader saw (``<p>Please ...``, a tracking pixel's
    ``<img ...>``). Mail readers run none, and show it as markup."""
    assert sanitize_html(html, KEEP)[0] == clean


_HTML_ANNOTATION = '<math><semantics><mi>x</mi><annotation-xml encoding="text/html">'


@pytest.mark.parametrize(
    ("html", "clean"),
    [
        # Readers ignore an end tag there (a <desc> bounds it); nh3 closed the span.
        pytest.param("<span>a<svg><desc></span>xyz</desc></svg>b</span>", "<span>ab</span>",
                     id="end-tag-in-svg-desc"),
        pytest.param("<b>a<svg><title></b>xyz</title></svg>b</b>", "<b>ab</b>",
                     id="formatting-end-tag-in-svg-title"),
        # And a <p> or <li> there stays in it (what follows too: the end tags after it
        # reach none of the math); nh3 closed the one around the <math>.
        pytest.param(f"<p>a{_HTML_ANNOTATION}<p>xyz</p></annotation-xml></semantics>"
                     "</math>b</p>", "<p>ab</p>", id="p-in-mathml-annotation"),
        pytest.param(f"<ul><li>a{_HTML_ANNOTATION}<li>xyz</annotation-xml></semantics>"
                     "</math>b</ul>", "<ul><li>a</li></ul>", id="li-in-mathml-annotation"),
        # What readers show stays: a tag breaking out of SVG ends it.
        pytest.param("<p>a<svg><text>b</text><p>c</p>d</svg>e</p>", "<p>a</p><p>c</p>de<p></p>",
                     id="svg-breakout-kept"),
        pytest.param("<div>a<svg><g></div>b", "<div>a</div>b", id="svg-closed-by-html-end-tag"),
    ],
)
def test_svg_and_mathml_go_with_all_readers_read_in_them(html: str, clean: str) -> None:
    """nh3 drops them with what they hold, but its parser let HTML out of them where
    readers keep it in: text readers never show (in an SVG <desc>, a MathML annotation)
    went out shown."""
    assert "xyz" not in render_visible(html)
    assert sanitize_html(html, KEEP)[0] == clean


@pytest.mark.parametrize(
    ("html", "shown", "clean"),
    [
        pytest.param("<table><tr><td><svg><foreignObject></td>xyz</table>", "xyz\n\n\n\n\n\n\n\n",
                     "xyz<table><tbody><tr><td></td></tr></tbody></table>",
                     id="cell-end-past-foreignobject"),
        pytest.param("<table><tr><td><math><semantics><mi>a</mi><annotation-xml encoding="
                     "text/html></tr>xyz</table>", "xyz\n\n\n\na\n\n\n\n",
                     "xyz<table><tbody><tr><td></td></tr></tbody></table>",
                     id="row-end-past-annotation-xml"),
        pytest.param("<table><caption><svg><desc></caption>xyz</table>", "xyz\n\n\n\n",
                     "xyz<table><caption></caption></table>", id="caption-end-past-desc"),
        pytest.param("<table><tr><td><svg><desc><td>xyz</table>", "\n\n\n\n\n\nxyz\n\n\n\n",
                     "<table><tbody><tr><td></td><td>xyz</td></tr></tbody></table>",
                     id="cell-start-past-desc"),
        pytest.param("<table><tr><th><svg><title><b><tbody>xyz</table>",
                     "xyz\n\n\n\n\n\n\n\n\n\n",
                     "xyz<table><tbody><tr><th></th></tr></tbody><tbody></tbody></table>",
                     id="body-start-past-title"),
        # A cell opens the row it is not in, which </tr> closes.
        pytest.param("<table><td><svg><desc></tr>xyz</table>", "xyz\n\n\n\n\n\n\n\n",
                     "xyz<table><tbody><tr><td></td></tr></tbody></table>",
                     id="row-end-of-an-implied-row"),
    ],
)
def test_a_table_part_tag_closes_svg_and_mathml_in_its_cell(html: str, shown: str, clean: str
                                                            ) -> None:
    """A cell's, row's or caption's end tag, and a table part's start tag, go by the
    table's rules (table scope), which an element holding HTML (a ``<foreignObject>``, a
    ``<desc>``, an annotation of HTML) does not bound: what follows is out of the SVG or
    MathML in readers, shown (before the table, or in the next cell). Read as in the
    SVG or MathML, it was left out of the rendering and of the sanitized HTML."""
    assert render_visible(html) == shown
    assert sanitize_html(html, KEEP)[0] == clean


def test_a_style_left_with_no_declaration_goes_with_its_attribute() -> None:
    # nh3 drops what its CSS allowlist lacks (position), which left style="" on the tag.
    html = ('<p style="position:fixed" title=\'a style="" > x="y"\'>x style=""</p>'
            '<script>1</script><span style="x:expression(1); position:fixed">2</span>')
    clean, removed = sanitize_html(html, KEEP)
    assert clean == ('<p title="a style=&quot;&quot; &gt; x=&quot;y&quot;">x style=""</p>'
                     "<span>2</span>")
    assert removed == (("script", 1), ("style:expression", 1))


@pytest.mark.parametrize(
    ("html", "clean"),
    [
        pytest.param(
            '<style><!--\np.MsoNormal, li.MsoNormal {margin:0in; font-size:11.0pt;\n'
            'font-family:"Calibri",sans-serif;}\n--></style><p class=MsoNormal>Hi</p>'
            '<p class="MsoNormal" style="margin-top:6pt">Bye</p>',
            '<p class="MsoNormal" style="margin:0in;font-size:11.0pt;font-family:&quot;calibri'
            '&quot; , sans-serif">Hi</p><p class="MsoNormal" style="margin:0in;font-size:11.0pt;'
            'font-family:&quot;calibri&quot; , sans-serif;margin-top:6pt">Bye</p>',
            id="outlook-paragraphs-keep-their-font-and-spacing",
        ),
        pytest.param(
            "<style>td{padding:4px} .x{color:red !important} @media (max-width:600px)"
            "{td{padding:0}} .x:hover{color:blue} div td{color:green} #i{color:pink}"
            "</style><table><tr><td class=x id=i style='color:black'>t</td></tr></table>",
            '<table><tbody><tr><td class="x" style="padding:4px;color:black;'
            'color:red ! important">t</td></tr></tbody></table>',
            id="plain-rules-alone-in-their-cascade",
        ),
        pytest.param(
            "<style>.a{color:red\\3b position:fixed} .a{background:#000 url(//t.example/x)}"
            ".a{width:expression(alert(1))} .a{font-family:'x}y'}</style><p class=a>t</p>",
            '<p class="a">t</p>',
            id="values-that-break-out-or-fetch-go",
        ),
        pytest.param(
            "<!-- <style>p{color:red}</style> --><textarea><style>p{color:red}</style>"
            "</textarea><p>t</p>",
            "&lt;style&gt;p{color:red}&lt;/style&gt;<p>t</p>",
            id="no-sheet-readers-do-not-read",
        ),
    ],
)
def test_style_sheets_are_written_into_what_they_style(html: str, clean: str) -> None:
    assert sanitize_html(html, KEEP)[0] == clean


def test_style_sheets_that_would_more_than_double_the_html_are_dropped() -> None:
    html = "<style>*{font-family:" + "a" * 1000 + "}</style>" + "<b>x</b>" * 200
    assert sanitize_html(html, KEEP)[0].count("a" * 1000) == 1  # the page's, alone
    few = "<style>*{font-family:" + "a" * 1000 + "}</style>" + "<b>x</b>" * 20
    assert sanitize_html(few, KEEP)[0].count("a" * 1000) == 21  # and the page


def test_a_sheet_styles_the_page_as_the_body_tag_does() -> None:
    html = ("<html><head><style>body{font-family:Arial;color:#333 !important} html{margin:0}"
            "</style></head><body bgcolor=white style='padding:0'><p>t</p><script></script>")
    assert sanitize_html(html, KEEP) == (
        '<div style="margin:0;font-family:arial;background-color:#ffffff;padding:0;'
        'color:#333 ! important"><p>t</p></div>', (("script", 1), ("style", 1)))


def test_default_schemes_keep_click_to_call_and_calendar_links() -> None:
    html = ('<a href="tel:+15551234567">Call</a><a href="webcal://cal.example/e.ics">Add</a>'
            '<a href="javascript:x()">x</a>')
    assert sanitize_html(html, HtmlOptions("keep", DEFAULT_URL_SCHEMES)) == (
        '<a href="tel:+15551234567">Call</a><a href="webcal://cal.example/e.ics">Add</a>'
        "<a>x</a>", (("@href", 1),))


def test_table_frame_and_rules_stay_with_their_keywords_alone() -> None:
    html = ('<table frame="BOX" rules="all"><tr><td>1</td></tr></table>'
            '<table frame="x;y" rules="javascript:x"><tr><td>2</td></tr></table><!---->')
    assert sanitize_html(html, KEEP) == (
        '<table frame="BOX" rules="all"><tbody><tr><td>1</td></tr></tbody></table>'
        "<table><tbody><tr><td>2</td></tr></tbody></table>",
        (("@frame", 1), ("@rules", 1), ("comment", 1)))
    assert needs_no_sanitizing('<table frame="box" rules="rows"><tr><td>1</td></tr></table>',
                               KEEP)


HERO = "https://cdn.example/Hero.jpg"


@pytest.mark.parametrize(
    ("html", "kept", "stripped"),
    [
        pytest.param(
            f'<table background="{HERO}"><tr><td background="cid:bg">x</td>'
            '<td background="data:image/png;base64,AAAA">y</td></tr></table>',
            f'<table background="{HERO}"><tbody><tr><td background="cid:bg">x</td>'
            '<td background="data:image/png;base64,AAAA">y</td></tr></tbody></table>',
            '<table><tbody><tr><td background="cid:bg">x</td>'
            '<td background="data:image/png;base64,AAAA">y</td></tr></tbody></table>',
            id="background-attribute-as-an-img-src",
        ),
        pytest.param(
            '<table><tr><td background=" java&#9;script:alert(1)">x</td>'
            '<td background="data:image/svg+xml,x">y</td><td background="vbscript:x">z</td>'
            "</tr></table>",
            "<table><tbody><tr><td>x</td><td>y</td><td>z</td></tr></tbody></table>",
            "<table><tbody><tr><td>x</td><td>y</td><td>z</td></tr></tbody></table>",
            id="background-attribute-of-no-image-scheme-goes",
        ),
        pytest.param(
            f"<table><tr><td style=\"background:#000 url('{HERO}') no-repeat center / cover;"
            ' color:#fff">x</td></tr></table>',
            '<table><tbody><tr><td style="background:#000 url(&quot;https://cdn.example/Hero.jpg'
            '&quot;) no-repeat center / cover;color:#fff">x</td></tr></tbody></table>',
            '<table><tbody><tr><td style="background-color:#000;color:#fff">x</td></tr>'
            "</tbody></table>",
            id="hero-background-shorthand",
        ),
        pytest.param(
            f'<p style="background-image: URL( {HERO} ); background-size: cover">x</p>',
            '<p style="background-image:url(&quot;https://cdn.example/Hero.jpg&quot;);'
            'background-size:cover">x</p>',
            '<p style="background-size:cover">x</p>',
            id="background-image-unquoted",
        ),
        pytest.param(
            '<p style="background-image:url(data:image/png;base64,AAAA); color:red">a</p>'
            '<p style="background:#000 URL( data:image/png;base64,AAAA ) no-repeat">b</p>',
            '<p style="background-image:url(&quot;data:image/png;base64,AAAA&quot;);color:red">'
            'a</p><p style="background:#000 url(&quot;data:image/png;base64,AAAA&quot;) '
            'no-repeat">b</p>',
            '<p style="background-image:url(&quot;data:image/png;base64,AAAA&quot;);color:red">'
            'a</p><p style="background:#000 url(&quot;data:image/png;base64,AAAA&quot;) '
            'no-repeat">b</p>',
            id="unquoted-data-url-is-one-url-token",  # was cut at its ";" and dropped
        ),
        pytest.param(
            '<p style="background-image:url(data:text/html;base64,AAAA); color:red">a</p>'
            '<p style="background-image:url(a b;color:red); color:blue">b</p>'
            '<p style="background-image:url(a\'b;color:red); color:blue">c</p>'
            '<p style="background-image:url(data:image/png;base64,A\\)A); color:red">d</p>',
            '<p style="color:red">a</p><p style="color:blue">b</p><p style="color:blue">c</p>'
            '<p style="color:red">d</p>',
            '<p style="color:red">a</p><p style="color:blue">b</p><p style="color:blue">c</p>'
            '<p style="color:red">d</p>',
            id="unquoted-url-token-of-no-image-bad-or-escaped-goes-whole",
        ),
        pytest.param(
            '<p style="background-image:url(javascript:alert(1))">a</p>'
            '<p style="background-image:url(\'data:text/html,x\')">b</p>'
            f'<p style="background-image:u\\72l({HERO})">c</p>'
            f'<p style="background:url({HERO}) /* c */">d</p>'
            f"<p style=\"background:url({HERO}), image-set('x.png' 1x)\">e</p>"
            f'<p style="background:url({HERO})expression(alert(1))">f</p>'
            f'<p style="cursor:url({HERO}); list-style:url({HERO})">g</p>',
            "<p>a</p><p>b</p><p>c</p><p>d</p><p>e</p><p>f</p><p>g</p>",
            "<p>a</p><p>b</p><p>c</p><p>d</p><p>e</p><p>f</p><p>g</p>",
            id="css-url-of-no-image-escaped-commented-or-with-more-goes",
        ),
        pytest.param(
            f'<body bgcolor="#000" background="{HERO}"><p>x</p>',
            '<div style="background-color:#000000;background-image:url(&quot;'
            'https://cdn.example/Hero.jpg&quot;)"><p>x</p></div>',
            '<div style="background-color:#000000"><p>x</p></div>',
            id="body-background-on-the-page-wrapper",
        ),
    ],
)
def test_background_images_are_kept_as_img_src_would_be(html: str, kept: str,
                                                         stripped: str) -> None:
    assert sanitize_html(html, KEEP)[0] == kept
    assert sanitize_html(html, STRIP)[0] == stripped


def test_a_background_attribute_is_proved_as_an_img_src() -> None:
    html = f'<table background="{HERO}"><tr><td>x</td></tr></table>'
    assert needs_no_sanitizing(html, KEEP)
    assert not needs_no_sanitizing(html, STRIP)
    assert not needs_no_sanitizing(html.replace("https:", "javascript:"), KEEP)


def test_the_body_link_colour_goes_on_each_link_without_its_own() -> None:
    html = ('<body bgcolor="#000" text="#fff" link="#ffcc00" vlink="#999"><p>'
            '<a href="https://a.example/">a</a><a href="https://b.example/" style="color:red">b'
            '</a><a name="x">n</a><a href="https://c.example/" style="font-weight:bold">c</a>')
    assert sanitize_html(html, KEEP) == (
        '<div style="background-color:#000000;color:#ffffff"><p>'
        '<a href="https://a.example/" style="color:#ffcc00">a</a>'
        '<a href="https://b.example/" style="color:red">b</a><a name="x">n</a>'
        '<a href="https://c.example/" style="color:#ffcc00;font-weight:bold">c</a></p></div>',
        (("@vlink", 1),))  # a visited link's colour no style attribute sets
    # A sheet's rule for links wins over the attribute, as in readers; a value is a colour.
    assert sanitize_html('<style>a{color:green}</style><body link="yellow">'
                         '<a href="https://a.example/">a</a>', KEEP)[0] == \
        '<a href="https://a.example/" style="color:green">a</a>'
    assert sanitize_html('<body link="red;display:none"><a href="https://a.example/">a</a>',
                         KEEP)[0] == '<a href="https://a.example/" style="color:#ed0000">a</a>'
