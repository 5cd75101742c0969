"""Where process settings come from: a YAML file, then POSTWARDEN_* variables.

Both long-running processes (milter, admin service) read their settings the
same way; each converts and validates the raw values into its own frozen
settings object. The environment wins over the file. Every problem is told
with where the value came from (``FILE:LINE`` or the variable's name), and
all of them at once: an admin fixing a file should not meet them one start
at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml

from .errors import PolicyIssue, shown
from .yamlnodes import FLOAT_TAG, MERGE_TAG, STR_TAG, compose, construct, describe, first_at

ENV_PREFIX = "POSTWARDEN_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# How alike a variable's name must be to a setting's to be told as misspelt (difflib's
# ratio). The other service's names stay below it: both read one environment file
# (message_timeout_seconds vs webhook_timeout_seconds: 0.74, spool_max_bytes vs
# pool_max_size: 0.71).
STRAY_CUTOFF = 0.8

T = TypeVar("T")
# A number as text (a variable's, a quoted one): decimal in ASCII digits, as a YAML 1.2
# file writes one; the words float() takes for the infinities and NaN, to be told as not
# finite. float() takes more: 1_000 (text in a settings file, as in a policy) and other
# scripts' digits (٣ was 3).
_NUMBER_TEXT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
                          r"|[-+]?(?:inf|infinity|nan)", re.IGNORECASE | re.ASCII)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1: a YAML escape writes them
TEXT = "text"  # what a text setting expects (given_value)


class SettingsError(ValueError):
    """A settings file or variable is unusable; the message says which and why."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else problems
        super().__init__("; ".join(self.problems))


class Secret:
    """A string whose ``repr``/``str`` never shows the value (database URLs hold passwords)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def quoted(value: Any) -> str:
    """A given value for a message: text cut short (a variable may be megabytes long)."""
    return shown(value) if isinstance(value, str) else repr(value)


def finite_number(kind: type[T], value: Any, name: str) -> T:
    """``value`` as a finite ``kind``: not a bool (``true`` is no count), nor NaN
    (no bound holds: every comparison with it is false) or an infinity, nor a fraction
    for an integer setting (``int`` would cut 2.5 down to 2 without a word)."""
    told = quoted(value)
    if isinstance(value, bool) or (isinstance(value, str)
                                   and not _NUMBER_TEXT.fullmatch(value)):
        raise ValueError(f"{name}: {told} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {told} is not a number") from None
    if math.isinf(number) and "inf" not in str(value).lower():  # 1e400: float's range
        raise ValueError(f"{name}: {told} is too large")
    if isinstance(value, str) and rounds_to_zero(value):
        raise ValueError(f"{name}: {told} is too small (it rounds to 0)")
    if not math.isfinite(number):
        raise ValueError(f"{name}: {told} is not a finite number")
    if kind is float:
        return cast(T, number)
    if not number.is_integer():
        raise ValueError(f"{name}: {told} is not a whole number")
    with contextlib.suppress(ValueError):
        return cast(T, int(value))  # exact beyond a float's 53 bits
    return cast(T, int(number))  # "2.0"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "a mapping" if isinstance(value, dict) else type(value).__name__


def given_value(name: str, value: Any, expected: str, *, none_unsets: bool = False,
                empty_unsets: bool = False,
                no_value_hint: str = "remove the line for the default") -> None:
    """Refuse what no setting of either service takes, before its own conversion.
    ``expected``: TEXT, or what a value of another kind reads ("a number", "true or
    false"). ``none_unsets``, ``empty_unsets``: no value (a key with nothing after it),
    an empty one (NAME= in an environment file) leaves the setting unset or off; for any
    other it is told as no value (the conversions read it as the text or number "None",
    or "'' is not a number", or a path "" as the working directory)."""
    if value is None and not none_unsets:
        raise ValueError(f"{name}: no value ({no_value_hint})")
    if value == "" and not empty_unsets:
        raise ValueError(f"{name}: empty (leave it unset for the default)")
    if expected == TEXT and value is not None and not isinstance(value, str):
        quote = " (quote it)" if isinstance(value, int | float) else ""  # bools too
        # Not made text: instance_name: [a] was "['a']".
        raise ValueError(f"{name}: expected text, got {_kind(value)}{quote}")
    if expected != TEXT and isinstance(value, list | dict):
        raise ValueError(f"{name}: expected {expected}, got {_kind(value)}")
    if isinstance(value, str) and value != value.strip():
        # No setting holds white space at its ends: kept, a path, socket or name differed
        # from the one meant; told by value, it read as the same. Not quoted: database_url's
        # holds a password.
        raise ValueError(f"{name}: starts or ends with white space (a space, tab or "
                         "newline): remove it")
    if isinstance(value, str) and (control := _CONTROL.search(value)):
        # No path, socket, name or URL holds one: a NUL in a path failed the start with a
        # traceback, in instance_name every audit row (Postgres text takes none).
        raise ValueError(f"{name}: holds the control character U+{ord(control[0]):04X}")


def rounds_to_zero(text: str) -> bool:
    """A number's text that is not 0 but reads as 0 (1e-400, past a float's range): taken,
    policy_poll_seconds: 1e-400 turned polling off, where 0 does that on purpose."""
    mantissa = re.split("[eE]", text, maxsplit=1)[0]
    return float(text) == 0 and re.search("[1-9]", mantissa) is not None


def _underflow(path: Path, key: yaml.Node, value: yaml.Node) -> str | None:
    """A setting's number in the file that rounds to 0: read, it is 0 already."""
    if (isinstance(value, yaml.ScalarNode) and value.tag == FLOAT_TAG
            and _NUMBER_TEXT.fullmatch(value.value) and rounds_to_zero(value.value)):
        return (f"{path}:{key.start_mark.line + 1}: {key.value}: {shown(value.value)} is "
                "too small (it rounds to 0)")
    return None


@dataclass
class RawSettings:
    """The settings as given, and where each one was given."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # name -> "FILE:LINE" or variable
    # The file's problems that leave the rest of it readable (read_settings), and the
    # settings whose value they refused (left out of values).
    problems: list[str] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)

    def problem(self, name: str, message: str) -> str:
        """``message`` about ``name``, led by where it was set (if it was)."""
        where = self.sources.get(name)
        return f"{where}: {message}" if where else message


def _read_file(path: Path, known: set[str], raw: RawSettings) -> None:
    """Read like a policy file (YAML 1.2 integers, errors by line without quoting it),
    each key and value alone: a problem of one (raw.problems) leaves the others read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        # Quoted and cut as values are: a --config path may be kilobytes.
        raise SettingsError(f"cannot read settings file {shown(str(path))}: "
                            f"{exc.strerror}") from exc
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not UTF-8 text") from None
    node, issues = compose(str(path), text)
    if issues:
        raise SettingsError([str(issue) for issue in issues])
    if node is None:  # an empty file sets nothing
        return
    if not isinstance(node, yaml.MappingNode):
        raise SettingsError(f"{path}: expected a mapping of settings")
    keys: dict[str, yaml.Node] = {}
    twice = _set_twice(node)
    for key, value in node.value:
        problems = _key_problems(path, key, keys, known)
        if not problems and key.value in twice:  # neither value is sure to be the one meant
            raw.refused.add(key.value)
        elif not problems and (problems := _value_problems(path, node, key, value, raw)):
            raw.refused.add(key.value)
        raw.problems += problems


def _set_twice(node: yaml.MappingNode) -> set[str]:
    """The names the file sets more than once: told as such (_key_problems), their
    values unread, where the first was checked (and told) though YAML keeps the last."""
    names = Counter(key.value for key, _ in node.value
                    if isinstance(key, yaml.ScalarNode) and key.tag == STR_TAG)
    return {name for name, count in names.items() if count > 1}


def _key_problems(path: Path, key: yaml.Node, keys: dict[str, yaml.Node], known: set[str]
                  ) -> list[str]:
    """A key's problem: one given twice (YAML would keep the last without a word), one
    that is no name, a merge key (<<), refused as in a policy file (what it merges would
    be told at the lines it came from), a name no setting has. ``keys``: those before."""
    line = key.start_mark.line + 1
    if key.tag == MERGE_TAG:
        return [f"{path}:{line}: YAML merge keys (<<) are not supported: write the "
                "settings out"]
    if key.tag != STR_TAG or not isinstance(key, yaml.ScalarNode):
        return [f"{path}:{line}: expected a setting name, got {describe(key)}"]
    if key.value in keys:
        return [f"{path}:{line}: {shown(key.value)} set twice "
                f"(first at {first_at(keys[key.value], key)})"]
    keys[key.value] = key
    if key.value not in known:
        return [f"{path}:{line}: unknown setting {shown(key.value)}{_meant(key.value, known)}"]
    return []


def _value_problems(path: Path, node: yaml.MappingNode, key: yaml.Node,
                    value: yaml.Node, raw: RawSettings) -> list[str]:
    """The setting's value read into ``raw``, or its problems (each value read alone: one
    a tag refuses leaves the others readable)."""
    underflow = _underflow(path, key, value)
    if underflow:
        return [underflow]
    loaded, issues = construct(str(path), value)
    if issues:
        return [_of_setting(node, issue) for issue in issues]
    raw.values[key.value] = loaded
    raw.sources[key.value] = f"{path}:{key.start_mark.line + 1}"
    return []


def _meant(name: str, known: Iterable[str]) -> str:
    """The setting an unknown name looks like a misspelling of, as a variable's is told
    (misspelt_variables): "unknown setting 'max_concurency'" left the admin to find it."""
    close = difflib.get_close_matches(name.lower().replace("-", "_"), sorted(known), n=1,
                                      cutoff=STRAY_CUTOFF)
    return f" (did you mean {close[0]}?)" if close else ""


def _of_setting(node: yaml.MappingNode, issue: PolicyIssue) -> str:
    """A value's issue (an integer too large, a tag it does not read as) led by the
    setting whose value holds it, as every other problem of a setting is."""
    if issue.line is None or issue.column is None:
        return str(issue)
    at = (issue.line - 1, issue.column - 1)
    for key, value in node.value:
        start, end = value.start_mark, value.end_mark
        if (start.line, start.column) <= at <= (end.line, end.column):
            return f"{issue.file}:{issue.line}:{issue.column}: {key.value}: {issue.message}"
    return str(issue)


def gather_settings(
    path: Path | None, environ: Mapping[str, str], names: Iterable[str]
) -> RawSettings:
    """:func:`read_settings`, any problem of the file raised: for a reader of a setting
    or two (migrate's database_url, policy push's listen) that still refuses the file."""
    raw = read_settings(path, environ, names)
    if raw.problems:
        raise SettingsError(raw.problems)
    return raw


def read_settings(
    path: Path | None, environ: Mapping[str, str], names: Iterable[str]
) -> RawSettings:
    """Merge the file's mapping with ``POSTWARDEN_<NAME>`` variables for known names. A
    file that cannot be read as a mapping raises SettingsError; the problems of its keys
    and values are in ``problems``, to be told with those the values' conversion finds."""
    known = set(names)
    raw = RawSettings()
    if path is not None:
        _read_file(path, known, raw)
    for name in sorted(known):
        variable = ENV_PREFIX + name.upper()
        env_value = environ.get(variable)
        if env_value is not None:
            raw.values[name] = env_value
            raw.sources[name] = variable
    return raw


def settings_file_argument(variable: str | None = None) -> Callable[[str], Path]:
    """--config's type: its path, an empty one refused (``variable``: the one it defaults
    to). Path("") is the working directory, which was "cannot read settings file: Is a
    directory", told as "."; taken as none, a service would start without the settings
    meant. Empty is POSTWARDEN_CONFIG= in an environment file, a variable expanded unset."""
    told = (f"empty (from {variable} if not given): name the settings file, or unset "
            f"{variable} for none" if variable else
            "empty: name the settings file, or leave --config out for none")

    def settings_file(text: str) -> Path:
        if not text:
            raise argparse.ArgumentTypeError(told)
        return Path(text)

    return settings_file


def misspelt_variables(environ: Mapping[str, str], names: Iterable[str], what: str
                       ) -> list[str]:
    """POSTWARDEN_ variables that look like a misspelt setting of ``names``, which the
    process ignores, each told as not being ``what`` ("a milter setting"). Unknown ones
    are not refused, nor all told: the other service and the command-line tools read
    variables of their own (POSTWARDEN_LISTEN, POSTWARDEN_API_KEY, ...), often from the
    same environment file. Names are compared in capitals: a variable is read only as
    written in capitals, and POSTWARDEN_max_concurrency was ignored without a word."""
    known = [name.upper() for name in names]
    told = []
    for variable in sorted(environ):
        if not variable.upper().startswith(ENV_PREFIX) or variable.removeprefix(
                ENV_PREFIX) in known:
            continue
        name = variable[len(ENV_PREFIX):].upper()
        close = difflib.get_close_matches(name, known, n=1, cutoff=STRAY_CUTOFF)
        if close:
            told.append(f"{variable} is not {what}, ignored "
                        f"(did you mean {ENV_PREFIX}{close[0]}?)")
    return told
