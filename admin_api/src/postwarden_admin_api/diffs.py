"""A unified diff of two policy sources (the service's revision diff, a push's dry run),
at a bounded cost.

difflib's matching grows about with the cube of the lines it compares when lines
recur (each under 1% of them, which its autojunk leaves alone): two revisions of a
10,000-line policy held an engine thread for 30 seconds, 20,000 lines for a minute,
and every upload, test and activation waited behind two such diffs. Only the lines
from the first changed one to the last are compared (with their context), and past
``MATCHED_LINES`` of them the change is one hunk replacing them all: a correct diff,
if not the shortest.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence

MATCHED_LINES = 2000
CONTEXT = 3  # lines around each hunk, as difflib's default
_HUNK = re.compile(r"@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@\n?")


def unified_diff(old: str, new: str, fromfile: str, tofile: str) -> str:
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    head = _common(a, b)
    tail = _common(a[head:][::-1], b[head:][::-1])
    a_end, b_end = len(a) - tail, len(b) - tail  # the changed lines: [head, *_end)
    start = max(head - CONTEXT, 0)
    a_stop, b_stop = min(a_end + CONTEXT, len(a)), min(b_end + CONTEXT, len(b))
    if max(a_end, b_end) - head > MATCHED_LINES:
        return "".join([
            f"--- {fromfile}\n+++ {tofile}\n",
            f"@@ -{_range(start, a_stop)} +{_range(start, b_stop)} @@\n",
            *(f" {line}" for line in a[start:head]),
            *(f"-{line}" for line in a[head:a_end]),
            *(f"+{line}" for line in b[head:b_end]),
            *(f" {line}" for line in a[a_end:a_stop]),
        ])
    lines = difflib.unified_diff(a[start:a_stop], b[start:b_stop], fromfile, tofile,
                                 n=CONTEXT)
    return "".join(_numbered_from(lines, start))


def _common(a: Sequence[str], b: Sequence[str]) -> int:
    """How many lines ``a`` and ``b`` begin with alike."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)))


def _range(start: int, stop: int) -> str:
    """Lines [start, stop) as a hunk header gives them (difflib's rule)."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


def _numbered_from(lines: Iterator[str], offset: int) -> Iterator[str]:
    """A diff of lines from ``offset`` on, its hunk headers numbered as in the whole
    (no other line starts with @@: each has its " ", "-" or "+" first)."""
    for line in lines:
        found = _HUNK.fullmatch(line)
        if found is None:
            yield line
            continue
        a_at, a_len, b_at, b_len = found.groups()
        yield f"@@ -{int(a_at) + offset}{a_len or ''} +{int(b_at) + offset}{b_len or ''} @@\n"
