"""Large HTML is cleaned by nh3 in a child process that is killed at a time limit: a
shape the cost guard misjudges can no longer hold the filter for as long as nh3 takes.
The child gives what nh3 in process gives, a child that dies or is killed is replaced,
and a forked milter worker starts its own children instead of sharing its parent's."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import pytest

from postwarden_policies import sanitize
from postwarden_policies.html_allowlist import HtmlOptions
from postwarden_policies.html_cost import too_costly
from postwarden_policies.sanitize import sanitize_html
from postwarden_policies.sanitizer_process import ISOLATE_CHARS, ChildFailed, SanitizerProcesses

OPTIONS = HtmlOptions("keep", frozenset({"http", "https", "mailto", "cid"}))
HANDLER = "postwarden_policies.sanitize:clean_in_process"
STRIP = HtmlOptions("strip", OPTIONS.allowed_url_schemes)
# Misjudged by the guard, quadratic in nh3's tree builder; the handler makes it need nh3.
SLOW_UNIT = "<div></a><a>"
SLOW_HTML = '<p onclick="x">hi</p>' + SLOW_UNIT * (1_500_000 // len(SLOW_UNIT))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def quick_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[SanitizerProcesses]:
    """sanitize's children, stopped after half a second instead of ten."""
    children = SanitizerProcesses(HANDLER, max_children=2, time_limit=0.5)
    monkeypatch.setattr(sanitize, "_CHILDREN", children)
    yield children
    children.close()


def test_the_slow_shape_is_misjudged_by_the_guard() -> None:
    """The premise: were the guard to catch it, the limit below would go untested."""
    assert not too_costly(SLOW_HTML.lower())


def test_html_past_the_time_limit_becomes_a_notice(
    quick_limit: SanitizerProcesses, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="postwarden_policies.sanitize"):
        clean, removed = sanitize_html(SLOW_HTML, OPTIONS)
    assert time.monotonic() - started < 3  # nh3 takes far longer on it
    assert (clean, removed) == sanitize.removed_whole("too_complex")
    assert "past its time limit" in caplog.text


def test_a_stopped_child_is_killed_and_replaced(quick_limit: SanitizerProcesses) -> None:
    assert sanitize_html(SLOW_HTML, OPTIONS)[1] == (("too_complex", 1),)
    html = '<p onclick="x">hello</p>' * (ISOLATE_CHARS // 10)
    assert sanitize_html(html, OPTIONS) == ("<p>hello</p>" * (ISOLATE_CHARS // 10),
                                            (("@onclick", ISOLATE_CHARS // 10),))
    [child] = quick_limit._idle
    assert alive(child.pid)


def test_the_killed_child_is_gone() -> None:
    children = SanitizerProcesses(HANDLER, max_children=1, time_limit=0.3)
    request = (SLOW_HTML, "keep", OPTIONS.allowed_url_schemes, True)
    small = ('<p onclick="x">a</p>', "keep", OPTIONS.allowed_url_schemes, True)
    assert children.run(small)[0] == "<p>a</p>"
    [child] = children._idle
    assert children.run(request) is None
    assert not alive(child.pid) and children._idle == []
    children.close()


def test_a_child_that_dies_is_reported_and_replaced(capfd: pytest.CaptureFixture[str]) -> None:
    children = SanitizerProcesses(HANDLER, max_children=1)
    with pytest.raises(ChildFailed, match="exited"):
        children.run(("too few arguments",))  # a TypeError ends the child
    assert "TypeError" in capfd.readouterr().err
    again = children.run(('<b onclick="x">b</b>', "keep", frozenset({"http"}), True))
    assert again[0] == "<b>b</b>"
    children.close()


def test_a_failed_child_leaves_a_notice(
    quick_limit: SanitizerProcesses, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    def dies(request: object) -> object:
        raise ChildFailed("sanitizer child 1234 exited")

    monkeypatch.setattr(quick_limit, "run", dies)
    with caplog.at_level(logging.ERROR, logger="postwarden_policies.sanitize"):
        result = sanitize_html('<p onclick="x">a</p>' * ISOLATE_CHARS, OPTIONS)
    assert result == sanitize.removed_whole("unsanitizable")
    assert "1234 exited" in caplog.text and "child process failed" in caplog.text


@pytest.mark.parametrize("options", [OPTIONS, STRIP], ids=["keep", "strip"])
@pytest.mark.parametrize("unit", [
    '<p onclick="x" style="color: red; background: url(http://t.example/a)">a &amp; b</p>\n',
    '<img src="http://t.example/p.gif"><img src="data:image/png;base64,AAAA">\n',
    '<a href="javascript:alert(1)">x</a><a href="data:text/html,1">d</a><!-- c -->\n',
    "<table><tr><td>cell<td>next</table><font color=red>f</font>\n",
])
def test_the_child_gives_what_nh3_gives_in_process(options: HtmlOptions, unit: str) -> None:
    html = unit * (ISOLATE_CHARS // len(unit) + 1)
    request = (html, options.remote_images, options.allowed_url_schemes,
               sanitize._needs_filter(html.lower(), options))
    children = SanitizerProcesses(HANDLER, max_children=1)
    assert children.run(request) == sanitize.clean_in_process(*request)
    children.close()


def test_lone_surrogates_in_a_large_part_are_unsanitizable() -> None:
    html = '<p onclick="x">\udc80</p>' * ISOLATE_CHARS
    assert sanitize_html(html, OPTIONS) == sanitize.removed_whole("unsanitizable")


def test_a_forked_worker_starts_its_own_children() -> None:
    html = '<p onclick="x">fork</p>' * ISOLATE_CHARS
    sanitize_html(html, OPTIONS)  # the parent has an idle child now
    assert sanitize._CHILDREN is not None
    parent_children = [child.pid for child in sanitize._CHILDREN._idle]
    assert parent_children
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the forked worker
        try:
            clean, _ = sanitize_html(html, OPTIONS)
            assert sanitize._CHILDREN is not None
            used = [child.pid for child in sanitize._CHILDREN._idle]
            os.write(write_end, f"{clean == '<p>fork</p>' * ISOLATE_CHARS} {used}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 4096).decode()
    os.waitpid(pid, 0)
    os.close(read_end)
    ok, used = answer.split(" ", 1)
    assert ok == "True"
    assert used != str(parent_children) and used != "[]"
    assert all(alive(child) for child in parent_children)  # not stopped by the worker
