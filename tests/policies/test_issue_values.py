"""What an issue quotes of a key or value: bounded, and placed where a line is not enough."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden_policies import SettingsError, check_policy_text, gather_settings


def _issues(text: str) -> list[str]:
    return [str(issue) for issue in check_policy_text("p.yaml", text)]


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1.5e309"])
def test_a_number_past_a_floats_range_is_too_large(number: str) -> None:
    """It was "expected an integer, got 1e400": it is one, too large."""
    text = f"version: 1\nname: p\nlimits:\n  max_recipients: {number}\n"
    assert _issues(text) == ["p.yaml:4:19: integer too large: at most 9223372036854775807"]
    assert _issues(text.replace(number, ".inf")) == [
        "p.yaml:4:19: expected an integer, got .inf"]


def test_a_settings_file_says_the_same(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("a: 1e400\n")
    with pytest.raises(SettingsError) as refused:
        gather_settings(config, {}, ["a"])
    assert refused.value.problems == [
        f"{config}:1:4: number too large: at most 1.79769e+308"]
