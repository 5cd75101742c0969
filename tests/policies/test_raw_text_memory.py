"""Raw text is read in constant memory, whatever it holds: an atomic repeat, ``(?>(?:[^<]++
|<(?!/textarea))*)``, kept a backtracking point per pass, and a textarea or style
element of 4 MB of "<" (within the 4,000,000 characters a body is read to) took the
milter over a gigabyte."""

from __future__ import annotations

import re

import pytest

from postwarden_policies.htmltokens import MARKUP, STYLE_SHEET, TOKENS
from tests.memory import peak_of

HOSTILE = "<" * 4_000_000
BOUND = 64 * 1024 * 1024  # the text itself, its pieces, and room: nothing per character


@pytest.mark.parametrize("pattern", [MARKUP, TOKENS], ids=["MARKUP", "TOKENS"])
@pytest.mark.parametrize("element", ["textarea", "style", "script"])
def test_raw_text_full_of_tag_openings_costs_no_memory_per_character(
        pattern: re.Pattern[str], element: str) -> None:
    pieces, peak = peak_of(lambda: pattern.split(f"<{element}>{HOSTILE}</{element}>after"))
    assert peak < BOUND, f"{peak / 2**20:.0f} MiB"
    assert pieces[-1] == "after"  # the raw text ended at its end tag


def test_a_style_sheet_full_of_tag_openings_costs_no_memory_per_character() -> None:
    pieces, peak = peak_of(lambda: STYLE_SHEET.split(f"<style>{HOSTILE}</style>after"))
    assert peak < BOUND, f"{peak / 2**20:.0f} MiB"
    assert pieces[1] == HOSTILE
