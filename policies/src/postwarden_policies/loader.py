"""Loading policy sources into a :class:`PolicySet`, collecting every issue on the way.

Sources are files (a directory stands for its files named ``*.yaml`` or
``*.yml``, the suffix in any case (``.YAML`` too), not recursively) or
(label, text) pairs such as the revisions the admin service stores. The
``message:`` sample files of `tests:` must exist only when asked
(``check_samples``): ``postwarden-policy check`` and ``test`` ask, a milter
reading its policy_dir does not; they also ask that each rule a case's ``expect_rules``
names exists, which is only a warning elsewhere: a mistake in a test never stops the
policies that filter mail (a rule renamed, a case not updated). Policy names must be
unique in a set, and so must rule names as audit rows name them (a report-mode
policy's as ``report:<name>``), so that a rule name in an audit row points at one
rule; a repeated name is an issue at its line that names the first one's
``file:line:column``. A merge conflict left in a source (a ``<<<<<<<`` line) is
reported at its marker.

A subdirectory of a named directory that holds policy files (at any depth, not in
hidden directories) is a warning, not an issue: files moved into ``team-a/`` would
otherwise stop applying unnoticed, yet loading them instead (recursion) would start
applying what a deployment keeps aside (``archive/``, ``disabled/``), and refusing
would stop a milter over a directory it never read. Callers of
:func:`load_policy_set` and :func:`load_policy_set_from_sources` choose where warnings
go: the log by default (a milter's, the admin service's).
"""

from __future__ import annotations

import codecs
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from .errors import SUBDIRECTORY_NOT_LOADED, PolicyIssue, PolicyLoadError
from .malformedcover import malformed_unsanitized
from .model import Policy
from .patterns import compile_budget
from .policydoc import DeclaredNames, declared_names, read_policy
from .policyset import PolicySet, content_hash
from .unreachable import unreachable_rules
from .yamlnodes import MAX_SOURCE_CHARS, WIDE_WITHOUT_BOM, Reader, compose, place

log = logging.getLogger(__name__)

POLICY_SUFFIXES = (".yaml", ".yml")
# The lines git writes around a conflict (diff3's ||||||| too), always at column 0. A
# line starts after any line end YAML reads: an upload is text as sent, where a lone CR
# (old Mac line ends) still ends one, as reading a file with newline conversion does;
# the first after a byte order mark, which YAML skips.
CONFLICT_MARKER = re.compile(
    r"(?:\A\ufeff?|(?<=[\r\n]))(<{7}|\|{7}|={7}|>{7})(?=[ \t\r\n]|\Z)")


def _conflict_marker(label: str, text: str) -> PolicyIssue | None:
    """The first merge conflict marker of a source. YAML would report one as a syntax
    error lines away ("could not find expected ':'"), or, in a quoted value spanning
    lines, read the conflict as text and load both sides."""
    marker = CONFLICT_MARKER.search(text)
    if marker is None:
        return None
    line, _ = place(text, marker.start())
    return PolicyIssue(label, line, 1, f"merge conflict marker {marker[1]!r}: the file "
                       "holds an unresolved conflict")


# A byte order mark first on a line past the first: what `cat a.yaml b.yaml` leaves of
# the second file's. YAML skips one before a comment or a blank line, and reads one
# before anything else as text or a syntax error lines away ("could not find ':'").
_INNER_BOM = re.compile(r"(?<=[\r\n])\ufeff")


def _inner_byte_order_mark(label: str, text: str) -> PolicyIssue | None:
    """The first byte order mark that starts a line past the first, wherever it is."""
    found = _INNER_BOM.search(text)
    if found is None:
        return None
    return PolicyIssue(label, place(text, found.start())[0], 1, "a byte order mark (U+FEFF) "
                       "in the middle of the file: remove it (were two files joined?)")


class _Read(NamedTuple):
    policy: Policy | None
    names: DeclaredNames  # read even when the policy is not
    issues: list[PolicyIssue]
    warnings: list[PolicyIssue]


NO_NAMES = DeclaredNames(None, ())


def _read(label: str, text: str, base_dir: Path | None, check_samples: bool = False) -> _Read:
    joined = _conflict_marker(label, text) or _inner_byte_order_mark(label, text)
    if joined is not None:
        return _Read(None, NO_NAMES, [joined], [])
    node, issues = compose(label, text)
    if issues:
        return _Read(None, NO_NAMES, issues, [])
    reader = Reader(label, base_dir, check_files=check_samples)
    policy = read_policy(node, reader)
    names = NO_NAMES if node is None else declared_names(node, reader)
    # An aliased value is read once per use: say each of its problems once.
    return _Read(policy, names, list(dict.fromkeys(reader.issues)),
                 list(dict.fromkeys(reader.warnings)))


def check_policy_text(label: str, text: str) -> list[PolicyIssue]:
    """Every issue of one policy source read alone, as a list rather than a raised
    PolicyLoadError, and after them its warnings (a test's unknown rule, which `check`
    refuses): empty when check would pass it; ``message:`` files are not looked for.

    Only tests use it, to assert on the issues of a snippet; the admin upload loads
    through :func:`load_policy_set_from_sources`, which also checks names across a set.
    """
    with compile_budget():
        read = _read(label, text, None)
    return read.issues + read.warnings


def _set_issues(declared: list[tuple[str, DeclaredNames]]) -> list[PolicyIssue]:
    """Names that must be unique across the set: each repeat is an issue at its name,
    saying where the name was first used. A repeat within one source is that source's
    own issue (policydoc)."""
    issues: list[PolicyIssue] = []
    policy_names: dict[str, tuple[int, str]] = {}  # name: (source index, file:line:column)
    rule_names: dict[str, tuple[int, str]] = {}
    for index, (label, names) in enumerate(declared):
        named = [("policy", policy_names, names.policy, "")] if names.policy else []
        prefix = "report:" if names.report else ""  # as verdicts and audit rows name them
        named += [("rule", rule_names, rule, prefix) for rule in names.rules]
        for kind, seen, (name, where), recorded_as in named:
            owner, first_at = seen.setdefault(recorded_as + name, (index, _at(label, where)))
            if owner != index:
                message = f"{kind} name {name!r} is also used at {first_at}"
                issues.append(PolicyIssue(label, *where, message))
    return issues


def _at(source: str, where: tuple[int, int]) -> str:
    return f"{source}:{where[0]}:{where[1]}"


def _log_warning(issue: PolicyIssue) -> None:
    log.warning("%s", issue)


def _build(
    sources: Iterable[tuple[str, str, Path | None]],
    issues: list[PolicyIssue],
    check_samples: bool = False,
    warn: Callable[[PolicyIssue], None] = _log_warning,
) -> PolicySet:
    """Read every source; raise with ``issues`` plus everything found here, once
    ``warn`` has had every warning."""
    policies: list[Policy] = []
    declared: list[tuple[str, DeclaredNames]] = []
    texts: list[str] = []
    with compile_budget():
        for label, text, base_dir in sources:
            read = _read(label, text, base_dir, check_samples)
            issues.extend(read.issues)
            for warning in read.warnings:
                warn(warning)
            texts.append(text)
            declared.append((label, read.names))
            if read.policy is not None:
                policies.append(read.policy)
    issues.extend(_set_issues(declared))
    if issues:
        raise PolicyLoadError(issues)
    policy_set = PolicySet.of(policies, content_hash(texts))
    # Of the set: rules elsewhere count.
    for warning in (*malformed_unsanitized(policy_set), *unreachable_rules(policy_set)):
        warn(warning)
    return policy_set


def load_policy_set_from_sources(
    sources: Iterable[tuple[str, str]],
    warn: Callable[[PolicyIssue], None] = _log_warning,
) -> PolicySet:
    """A set from (label, YAML text) pairs; `tests:` may only use inline ``raw`` messages.
    Warnings go to ``warn``, as load_policy_set's."""
    return _build(((label, text, None) for label, text in sources), [], warn=warn)


def policy_files(paths: Iterable[Path | str], *, unlistable_is_issue: bool = False
                 ) -> tuple[list[Path], list[PolicyIssue]]:
    """The policy files that ``paths`` name, in a stable order, and the paths that name
    none. A path that cannot be examined or listed raises OSError (callers say it their
    way), or with ``unlistable_is_issue`` is one issue, and the other paths are read."""
    files: dict[Path, Path] = {}  # by resolved path: each file once
    issues: list[PolicyIssue] = []
    for path in map(Path, paths):
        try:
            found = _files_named(path, issues)
        except OSError as exc:
            if not unlistable_is_issue:
                raise
            issues.append(PolicyIssue(str(path), None, None, f"cannot read: {exc.strerror}"))
            continue
        # A file named twice (a directory and a file in it, overlapping globs, a symlink)
        # is one policy: loaded twice, every name in it would be "also used at" itself.
        for file in found:
            files.setdefault(file.resolve(), file)
    return list(files.values()), issues


def _files_named(path: Path, issues: list[PolicyIssue]) -> list[Path]:
    """The policy files ``path`` names; why it names none added to ``issues``."""
    if path.is_dir():
        found, unreadable = _directory_files(path)
        issues.extend(PolicyIssue(str(p), None, None, NOT_A_FILE) for p in unreadable)
        if not found and not unreadable:
            issues.append(PolicyIssue(str(path), None, None, "no *.yaml or *.yml policy files"))
        return found
    if path.is_file():
        return [path]
    if path.exists() or path.is_symlink():  # a FIFO, a socket, a broken link
        issues.append(PolicyIssue(str(path), None, None, NOT_A_FILE))
    else:
        issues.append(PolicyIssue(str(path), None, None, "no such file or directory"))
    return []


NOT_A_FILE = "not a file that can be read (a broken symbolic link, a link loop, a FIFO?)"


def _directory_files(directory: Path) -> tuple[list[Path], list[Path]]:
    """A directory's policy files, sorted, and the entries named like one that are no
    file: a policy whose link broke is refused as a file that cannot be read is,
    never dropped from the set unnoticed."""
    files: list[Path] = []
    unreadable: list[Path] = []
    # Not hidden files: tools write their temporary copies so (Ansible's
    # .ansible_tmp...main.yaml), and a half-written one would be loaded.
    for entry in directory.iterdir():
        if not _named_like_policy(entry.name):
            continue
        if entry.is_file():
            files.append(entry)
        elif not entry.is_dir():
            unreadable.append(entry)
    return sorted(files), sorted(unreadable)


def _named_like_policy(name: str) -> bool:
    return Path(name).suffix.lower() in POLICY_SUFFIXES and not name.startswith(".")


def unloaded_subdirectories(paths: Iterable[Path], loaded: Iterable[Path]) -> list[PolicyIssue]:
    """A warning for each subdirectory of the directories in ``paths`` that holds policy
    files not among ``loaded`` (named on their own, they are); one named itself is told
    of its own subdirectories."""
    loaded_files = {path.resolve() for path in loaded}
    directories = [path for path in paths if _is(path.is_dir)]
    named = {directory.resolve() for directory in directories}
    warnings: list[PolicyIssue] = []
    for directory in directories:  # one that cannot be listed is policy_files' issue
        for sub in (Path(entry.path) for entry in _entries(directory)):
            if sub.name.startswith(".") or not _is(sub.is_dir) or sub.resolve() in named:
                continue
            left = [f for f in _files_below(sub) if f.resolve() not in loaded_files]
            if left:
                warnings.append(PolicyIssue(str(sub), None, None, _unloaded(directory, left),
                                            SUBDIRECTORY_NOT_LOADED))
    return warnings


def _files_below(directory: Path) -> Iterator[Path]:
    """Files named like policies anywhere below ``directory``, in a stable order (os.walk's,
    top down); not in hidden directories (.git, .github hold *.yml of their own), nor what
    is no file (a link loop, which Path.resolve would raise on). An explicit stack, not
    os.walk: Python 3.11's recurses, and a chain of a thousand directories would raise
    RecursionError, which no caller expects."""
    stack = [directory]
    while stack:
        entries = _entries(stack.pop())
        yield from (Path(e.path) for e in entries
                    if _named_like_policy(e.name) and _is(e.is_file))
        below = [e for e in entries if not e.name.startswith(".") and _is(e.is_dir)
                 and not _is(e.is_symlink)]  # links to directories are not followed
        stack.extend(Path(e.path) for e in reversed(below))


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    """A directory's entries by name; none for one that cannot be listed (as os.walk)."""
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError:
        return []


def _is(test: Callable[[], bool]) -> bool:
    """A DirEntry test; False when the entry cannot be examined (gone, too long a path)."""
    try:
        return test()
    except OSError:
        return False


def _unloaded(directory: Path, files: list[Path]) -> str:
    shown = ", ".join(str(f.relative_to(directory)) for f in files[:3])
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    return (f"subdirectory not loaded: it holds {shown}{more}, but a policy directory is "
            "read without its subdirectories (name it too, or move the files up)")


# What Windows tools save as "Unicode" (PowerShell's >, Notepad) starts with one of
# these; UTF-32's first, as UTF-32LE's starts with UTF-16LE's.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def not_utf8(label: str, data: bytes, exc: UnicodeDecodeError) -> PolicyIssue:
    """Where ``data`` (a source ``exc`` says is not UTF-8) first is not, on the line YAML
    would count (a lone CR ends one too: old Mac line ends), as its other issues are;
    or, for UTF-16 or UTF-32 text, that it is."""
    wide = next((name for bom, name in _WIDE_BOMS if data.startswith(bom)), None)
    if wide is not None:
        return PolicyIssue(label, 1, 1, f"cannot read: {wide} text (it starts with a {wide} "
                           "byte order mark): save it as UTF-8")
    if b"\x00" in data[:2]:  # as YAML tells them (1.2, 5.2): text starts in ASCII
        return PolicyIssue(label, 1, 1, WIDE_WITHOUT_BOM)
    before = data[:exc.start].decode("utf-8")  # UTF-8 up to there
    return PolicyIssue(label, *place(before, len(before)),
                       f"cannot read: byte 0x{data[exc.start]:02x} is not UTF-8 text")


def _not_utf8(path: Path) -> PolicyIssue:
    """Where a file that is not UTF-8 first is not (read_text tells a place in its
    buffer, not in the file)."""
    try:
        data = path.read_bytes()
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return not_utf8(str(path), data, exc)
    except OSError:
        pass
    return PolicyIssue(str(path), None, None, "cannot read: not UTF-8 text")  # changed since


def load_policy_set(
    paths: Iterable[Path | str],
    *,
    check_samples: bool = False,
    warn: Callable[[PolicyIssue], None] = _log_warning,
) -> PolicySet:
    """Load files and directories of policy files into one set; raises PolicyLoadError.

    With ``check_samples`` a `tests:` case's ``message:`` file must exist (where the
    tests run) and a case's unknown rule is an issue; without, as a milter loads, neither
    stops the set (the rule is a warning). ``warn`` gets each warning
    (:func:`unloaded_subdirectories`, a test's rule), before any issue is raised: a
    warning may be why.
    """
    named = [Path(path) for path in paths]
    files, issues = policy_files(named, unlistable_is_issue=True)
    for warning in unloaded_subdirectories(named, files):
        warn(warning)
    sources: list[tuple[str, str, Path | None]] = []
    for path in files:
        try:
            if path.stat().st_size > 4 * MAX_SOURCE_CHARS:  # UTF-8: at most 4 bytes a character
                issues.append(PolicyIssue(str(path), None, None,
                                          f"larger than {MAX_SOURCE_CHARS} characters"))
                continue
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            issues.append(PolicyIssue(str(path), None, None, f"cannot read: {exc.strerror}"))
            continue
        except UnicodeDecodeError:
            issues.append(_not_utf8(path))
            continue
        # Paths in it are relative to where the file is, not to a link naming it
        # (mx1/p.yaml -> ../common/p.yaml): its author wrote them from there.
        sources.append((str(path), text, path.resolve().parent))
    return _build(sources, issues, check_samples, warn)
