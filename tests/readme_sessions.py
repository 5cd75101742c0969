"""A terminal session the README shows: a command after ``$ ``, continued over lines
ending in a backslash, and the lines shown after it, up to the next command or the
code block's end."""

from __future__ import annotations

import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_session(command: str) -> tuple[list[str], list[str]]:
    """The words after ``$`` of the README's first command line starting with
    ``command`` (its ``$ ``, and its environment assignments, included), and the lines
    shown after it."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(command))
    end = start
    while lines[end].endswith("\\"):
        end += 1
    written = " ".join(line.rstrip("\\").strip() for line in lines[start:end + 1])
    shown = []
    for line in lines[end + 1:]:
        if line.startswith(("$ ", "```")):
            break
        shown.append(line)
    return shlex.split(written)[1:], shown
