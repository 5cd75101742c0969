"""How the reading of ``<style>`` sheets for body rules scales (postwarden_policies.
stylesheets, through visiblehtml.render_visible) on the shapes a naive reader would
take quadratic time on: sixteen times the HTML should take about sixteen times as long.

    .venv/bin/python bench/style_sheets.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

from postwarden_policies.visiblehtml import render_visible

SHAPES: list[tuple[str, Callable[[int], str]]] = [
    ("n rules, n elements of two classes", lambda n: "<style>" + "".join(
        f".c{i}{{display:none}}" for i in range(n)) + "</style>" + "".join(
        f'<b class="c{i} c{i + 1}">x</b>' for i in range(n))),
    ("one rule of n declarations, n elements", lambda n: "<style>.a{" + "display:none;" * n
     + "}</style>" + '<b class="a" id=x>x</b>' * n),
    ("n unclosed rules", lambda n: "<style>" + ".a{" * n + "</style>" + "<b class=a>x" * n),
    ("n unclosed strings", lambda n: "<style>" + '.a{content:"' * n + "</style>"
     + "<b class=a>x" * n),
    ("n sheets, n elements", lambda n: "<style>b{color:red}" * n + "<b>x</b>" * n),
    ("n rules, n elements of twenty classes", lambda n: "<style>" + "".join(
        f".c{i}{{color:red;display:block}}" for i in range(n)) + "</style>" + "".join(
        f"<b class='{' '.join(f'c{j}' for j in range(i, i + 20))}'>x</b>" for i in range(n))),
]
SIZES = (500, 2_000, 8_000)


def seconds(html: str, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        render_visible(html)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    print(f"{'shape':42} " + " ".join(f"{'n=' + str(n):>10}" for n in SIZES) + "  ratio")
    for name, build in SHAPES:
        times = [seconds(build(n)) for n in SIZES]
        cells = " ".join(f"{t * 1e3:8.2f}ms" for t in times)
        print(f"{name:42} {cells}  {times[-1] / times[0]:5.1f}x for {SIZES[-1] // SIZES[0]}x")


if __name__ == "__main__":
    main()
