"""Where process settings come from: a YAML file, then POSTWARDEN_* variables.

Both long-running processes (milter, admin service) read their settings the
same way; each converts and validates the raw values into its own frozen
settings object. The environment wins over the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "POSTWARDEN_"


class SettingsError(ValueError):
    """A settings file or variable is unusable; the message says which and why."""


def gather_settings(
    path: Path | None, environ: Mapping[str, str], names: Iterable[str]
) -> dict[str, Any]:
    """Merge the file's mapping with ``POSTWARDEN_<NAME>`` variables for known names."""
    known = set(names)
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read settings file: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path}: expected a mapping of settings")
        unknown = sorted(str(k) for k in loaded if k not in known)
        if unknown:
            raise SettingsError(f"{path}: unknown setting(s): {', '.join(unknown)}")
        values.update(loaded)
    for name in known:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    return values
