"""Loading policy sources into a :class:`PolicySet`, collecting every issue on the way.

Sources are files (a directory stands for its files named ``*.yaml`` or
``*.yml``, the suffix in any case (``.YAML`` too), not recursively) or
(label, text) pairs such as the revisions the admin service stores. The
``message:`` sample files of `tests:` must exist only when asked
(``check_samples``): ``postwarden-policy check`` and ``test`` ask, a milter
reading its policy_dir does not. Policy names must be unique in a set, and so must rule names,
so that a rule name in an audit row points at one rule; a repeated name is an
issue at its line that names the first one's ``file:line:column``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .errors import PolicyIssue, PolicyLoadError
from .model import Policy, Rule
from .patterns import compile_budget
from .policydoc import read_policy
from .policyset import PolicySet, content_hash
from .yamlnodes import MAX_SOURCE_CHARS, Reader, compose

POLICY_SUFFIXES = (".yaml", ".yml")


def _read(
    label: str, text: str, base_dir: Path | None, check_samples: bool = False
) -> tuple[Policy | None, list[PolicyIssue]]:
    node, issues = compose(label, text)
    if issues:
        return None, issues
    reader = Reader(label, base_dir, check_files=check_samples)
    policy = read_policy(node, reader)
    # An aliased value is read once per use: say each of its problems once.
    return policy, list(dict.fromkeys(reader.issues))


def check_policy_text(label: str, text: str) -> list[PolicyIssue]:
    """Every issue of one policy source (empty when it loads); for upload validation."""
    with compile_budget():
        return _read(label, text, None)[1]


def _set_issues(policies: list[Policy]) -> list[PolicyIssue]:
    """Names that must be unique across the set: each repeat is an issue at its name,
    saying where the name was first used."""
    issues: list[PolicyIssue] = []
    policy_names: dict[str, Policy] = {}
    rule_names: dict[str, tuple[Policy, Rule]] = {}
    for policy in policies:
        first = policy_names.setdefault(policy.name, policy)
        if first is not policy:
            first_at = _at(first.source, first.where)
            message = f"policy name {policy.name!r} is also used at {first_at}"
            issues.append(PolicyIssue(policy.source, *policy.where, message))
        for rule in policy.rules:
            owner, first_rule = rule_names.setdefault(rule.name, (policy, rule))
            if owner is not policy:
                first_at = _at(owner.source, first_rule.where)
                message = f"rule name {rule.name!r} is also used at {first_at}"
                issues.append(PolicyIssue(policy.source, *rule.where, message))
    return issues


def _at(source: str, where: tuple[int, int]) -> str:
    return f"{source}:{where[0]}:{where[1]}"


def _build(
    sources: Iterable[tuple[str, str, Path | None]],
    issues: list[PolicyIssue],
    check_samples: bool = False,
) -> PolicySet:
    """Read every source; raise with ``issues`` plus everything found here."""
    policies: list[Policy] = []
    texts: list[str] = []
    with compile_budget():
        for label, text, base_dir in sources:
            policy, found = _read(label, text, base_dir, check_samples)
            issues.extend(found)
            texts.append(text)
            if policy is not None:
                policies.append(policy)
    issues.extend(_set_issues(policies))
    if issues:
        raise PolicyLoadError(issues)
    return PolicySet.of(policies, content_hash(texts))


def load_policy_set_from_sources(sources: Iterable[tuple[str, str]]) -> PolicySet:
    """A set from (label, YAML text) pairs; `tests:` may only use inline ``raw`` messages."""
    return _build(((label, text, None) for label, text in sources), [])


def policy_files(paths: Iterable[Path | str]) -> tuple[list[Path], list[PolicyIssue]]:
    """The policy files that ``paths`` name, in a stable order, and the paths that name none."""
    files: list[Path] = []
    issues: list[PolicyIssue] = []
    for path in map(Path, paths):
        if path.is_dir():
            # Not hidden files: tools write their temporary copies so (Ansible's
            # .ansible_tmp...main.yaml), and a half-written one would be loaded.
            found = sorted(
                p for p in path.iterdir()
                if p.suffix.lower() in POLICY_SUFFIXES and not p.name.startswith(".")
                and p.is_file()
            )
            if not found:
                issues.append(PolicyIssue(str(path), None, None, "no *.yaml or *.yml policy files"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            issues.append(PolicyIssue(str(path), None, None, "no such file or directory"))
    return files, issues


def load_policy_set(paths: Iterable[Path | str], *, check_samples: bool = False) -> PolicySet:
    """Load files and directories of policy files into one set; raises PolicyLoadError.

    With ``check_samples`` a `tests:` case's ``message:`` file must exist (where the
    tests run); without, as a milter loads, it need not.
    """
    files, issues = policy_files(paths)
    sources: list[tuple[str, str, Path | None]] = []
    for path in files:
        try:
            if path.stat().st_size > 4 * MAX_SOURCE_CHARS:  # UTF-8: at most 4 bytes a character
                issues.append(PolicyIssue(str(path), None, None,
                                          f"larger than {MAX_SOURCE_CHARS} characters"))
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            issues.append(PolicyIssue(str(path), None, None, f"cannot read: {reason}"))
            continue
        sources.append((str(path), text, path.parent))
    return _build(sources, issues, check_samples)
