"""``postwarden-admin policy push DIR``: deploy a policy directory as one change (CI deploy).

1. DIR is loaded as ``postwarden-policy check`` loads it (the same files, the same
   problems, printed the same way, exit 1); a problem, or a file naming the policy
   ``database-rules`` (the Rules API's), and nothing is uploaded; nor, exit 3, with a
   warning ``--strict`` or ``--error-on CODE`` makes fatal, as check's.
2. Every file is uploaded (each validated by the service; an unchanged file gets
   its existing revision back); the warnings each upload answers are printed.
3. One ``POST /api/v1/policies/deploy`` activates all those revisions (and, with
   ``--prune``, deactivates the active policies DIR does not hold) in one
   transaction: the service compiles the resulting set once, so either all of it
   goes live or none of it does. Without ``--prune`` such policies stay active and
   are named in a warning.
   The deploy sends the active policies' ETag, read before it, as If-Match: if
   another change came between, nothing is deployed, and the push says to run again.

With ``--dry-run`` steps 2 and 3 are replaced by a look: the active revisions are
read (an auditor key will do), the set the deploy would make active is compiled
here as the service would compile it, and each file is shown as unchanged, new, or
replacing its active revision (with the diff); nothing is uploaded or activated.
Exit 1 when the service would refuse the set.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from postwarden_policies import (
    PolicyIssue,
    PolicyLoadError,
    load_policy_set,
    load_policy_set_from_sources,
)
from postwarden_policies.cli import EXIT_WARNINGS
from postwarden_policies.policyset import content_hash
from postwarden_policies.testreport import Loaded, fatal_line, issue_lines

from .diffs import unified_diff
from .engine import LOADER_WARNINGS
from .routes_rules import MANAGED_POLICY

# A stored revision as the service's errors name it: policy name (letters, digits, . _ -)@rID.
LABEL = re.compile(r"[A-Za-z0-9._-]+@r[0-9]+")
DEPLOY_PATH = "/api/v1/policies/deploy"
TIMEOUT_SECONDS = 60  # each request's
KEY_REFUSED = (401, 403)  # a wrong or expired key, or one without the role


class PushError(Exception):
    pass


def _print_issues(loaded: Loaded) -> None:
    for line in issue_lines(loaded):
        print(line, file=sys.stderr)


def checked_files(
    directory: Path, strict: bool = False, error_on: Collection[str] = ()
) -> dict[str, tuple[str, bytes]] | int:
    """{policy name: (file, content)} of the directory's policies, loaded as check loads
    them (the bytes an upload sends, read as soon as they loaded); the exit code once
    its problems (or warnings failing it: --strict, --error-on) are printed as check
    prints them."""
    if not directory.is_dir():
        raise PushError(f"{directory}: not a directory")
    # Its warnings (a subdirectory not loaded) printed as check prints them: they went
    # to logging, which the push does not set up, written there without "warning:".
    warnings: list[PolicyIssue] = []
    try:
        policy_set = load_policy_set([directory], check_samples=True, warn=warnings.append)
    except PolicyLoadError as exc:
        _print_issues(Loaded(None, exc.in_order(), warnings).failing(strict, error_on))
        return 1
    loaded = Loaded(policy_set, (), warnings).failing(strict, error_on)
    _print_issues(loaded)
    reserved = [p for p in policy_set.policies if p.name == MANAGED_POLICY]
    for policy in reserved:
        line, column = policy.where
        print(f"{policy.source}:{line}:{column}: policy name {MANAGED_POLICY!r} is reserved: "
              "the Rules API (/api/v1/rules) manages it", file=sys.stderr)
    if reserved:
        return 1
    if loaded.fatal:
        print(fatal_line(loaded), file=sys.stderr)
        return EXIT_WARNINGS
    return {p.name: (p.source, Path(p.source).read_bytes()) for p in policy_set.policies}


async def _body(response: aiohttp.ClientResponse) -> Any:
    """The service's JSON answer; a PushError for anything else (a proxy's error page)."""
    try:
        return await response.json(content_type=None)
    except ValueError:  # json's JSONDecodeError, or undecodable text
        raise PushError(f"{response.url}: answered {response.status} without JSON: is the "
                        "URL the admin service's?") from None


def _problems(body: Any, files: Mapping[str, str]) -> str:
    """The error's code, message and details; a stored revision's label (``name@r12``)
    shown as the pushed file it came from."""
    def named(text: Any) -> str:
        return LABEL.sub(lambda m: files.get(m[0], m[0]), str(text))

    error = body.get("error", {}) if isinstance(body, dict) else {}
    lines = [f"  {error.get('code')}: {error.get('message')}"]
    for detail in error.get("details", []):
        at = [detail.get(k) for k in ("file", "line", "column") if detail.get(k) is not None]
        place = ":".join(named(v) for v in at or [detail.get("field")])
        lines.append(f"  {place}: {named(detail.get('message'))}")
    return "\n".join(lines)


def _warned(warning: Mapping[str, Any], file: str) -> str:
    """An upload's warning as a line: at its line and column of ``file`` when it has
    them, naming the rules it is about when it names them."""
    at = [str(warning[k]) for k in ("line", "column") if warning.get(k) is not None]
    rules = warning.get("rules")
    about = f"{', '.join(rules)}: " if rules else ""
    return f"{':'.join([file, *at])}: warning: {about}{warning.get('message')}"


def _unreached(path: str, exc: Exception) -> str:
    """What a request that got no answer means for the deploy: only one lost during the
    deploy call itself may have changed what is active."""
    reason = str(exc) or f"no answer within {TIMEOUT_SECONDS} seconds"  # TimeoutError: ""
    if path == DEPLOY_PATH:
        outcome = ("the deploy may or may not have been applied: push again (unchanged "
                   "files change nothing)")
    else:
        outcome = "nothing was activated"
    return f"{path}: {reason}; {outcome}"


def _base_url(url: str) -> URL:
    """The service's root, ending in "/" as a base URL with a path must; PushError for what
    is not an http(s) URL (``host:port``)."""
    try:
        base = URL(url)
    except ValueError:  # yarl: an unclosed [IPv6, a port out of range
        base = URL()
    if base.scheme not in ("http", "https") or not base.host:
        raise PushError("--url: expected the service's address as http://host:port or "
                        "https://host:port")
    if base.raw_user is not None or base.raw_password is not None:
        # aiohttp would send them as Basic credentials, refusing them beside the key's
        # Authorization header with a traceback.
        raise PushError("--url: give no user or password in it: the key (POSTWARDEN_API_KEY) "
                        "is the only credential the service takes")
    return base if base.path.endswith("/") else base.with_path(f"{base.path}/")


class _Service:
    """The admin service's policy routes, as one key sees them."""

    def __init__(self, session: aiohttp.ClientSession, key: str) -> None:
        self.session = session
        self.auth = {"Authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = await self.answer(method, path, **kwargs)
        return status, body

    async def answer(self, method: str, path: str, **kwargs: Any
                     ) -> tuple[int, Any, str | None]:
        """Status, JSON and ETag of a request."""
        headers = {**self.auth, **kwargs.pop("headers", {})}
        try:
            # Relative to the base URL, so that a proxy's prefix (https://host/postwarden/) stays.
            async with self.session.request(method, path.lstrip("/"), headers=headers,
                                            **kwargs) as response:
                return response.status, await _body(response), response.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PushError(_unreached(path, exc)) from None

    async def upload(self, files: list[tuple[str, bytes]], comment: str | None
                     ) -> dict[str, tuple[str, int]] | None:
        """{policy name: (file, revision)} of every file, or None once a refusal is printed."""
        params = {"comment": comment} if comment else {}
        revisions: dict[str, tuple[str, int]] = {}
        failed = False
        for file, content in files:
            status, body = await self.call(
                "POST", "/api/v1/policies", data=content,
                headers={"Content-Type": "application/yaml"}, params=params)
            if status in (200, 201):
                revisions[body["policy_name"]] = (file, body["id"])
                for warning in body.get("warnings", []):
                    if warning.get("code") not in LOADER_WARNINGS:  # check printed it
                        print(_warned(warning, file), file=sys.stderr)
                continue
            failed = True
            print(f"{file}: refused ({status})\n{_problems(body, {'upload': file})}",
                  file=sys.stderr)
            if status in KEY_REFUSED:  # so would every other file be: said once is enough
                break
        return None if failed else revisions

    async def _read(self, what: str, path: str, **params: str) -> tuple[Any, str | None]:
        """The JSON of a GET (None once its refusal is printed) and its ETag."""
        status, body, tag = await self.answer("GET", path, params=params)
        if status != 200:
            print(f"{what} refused ({status})\n{_problems(body, {})}", file=sys.stderr)
            return None, None
        return body, tag

    async def active(self) -> tuple[dict[str, int] | None, str | None]:
        """{policy name: active revision} of every active policy, and the ETag a deploy
        sends as If-Match: refused if another change came between."""
        body, tag = await self._read("listing the active policies", "/api/v1/policies")
        return None if body is None else {
            p["policy_name"]: p["active_revision"] for p in body["policies"]
            if p["active_revision"]}, tag

    async def revision(self, revision: int) -> dict[str, Any] | None:
        """A revision with its source."""
        body: dict[str, Any] | None = (await self._read(
            f"reading revision {revision}", f"/api/v1/revisions/{revision}", format="json"))[0]
        return body


def _warn_left_active(directory: Path, others: list[str]) -> None:
    print(f"warning: active but not in {directory}, left active (--prune deactivates "
          f"them): {', '.join(others)}", file=sys.stderr)


def _diff(stored: dict[str, Any], file: str, text: str) -> str:
    """From the active revision to the file, line ends aside (they do not change the hash);
    as the service's diff, at a bounded cost (.diffs)."""
    return unified_diff(_lf(stored["source"]), _lf(text),
                        f"{stored['policy_name']}@r{stored['id']}", file).rstrip("\n")


def _lf(text: str) -> str:
    return "".join(f"{line}\n" for line in text.splitlines())


async def _dry_run(service: _Service, directory: Path, files: dict[str, tuple[str, bytes]],
                   prune: bool) -> int:
    """What the push would change; the set it would make active compiled as the deploy
    compiles it (stored revisions labelled name@rID, the files after them)."""
    active, _ = await service.active()
    if active is None:
        return 1
    stored: dict[str, dict[str, Any]] = {}
    for name, revision in active.items():
        read = await service.revision(revision)
        if read is None:
            return 1
        stored[name] = read
    texts = {name: (file, content.decode("utf-8")) for name, (file, content) in files.items()}
    others = sorted(set(active) - {*files, MANAGED_POLICY})
    kept = [(f"{name}@r{active[name]}", revision["source"]) for name, revision
            in stored.items() if name not in files and not (prune and name in others)]
    try:
        load_policy_set_from_sources([*kept, *texts.values()])
    except PolicyLoadError as exc:
        print(f"{directory}: the deploy would be refused", file=sys.stderr)
        for issue in exc.in_order():
            print(f"  {issue}", file=sys.stderr)
        return 1
    for name, (file, text) in texts.items():
        current = stored.get(name)
        if current is None:
            print(f"{file}: would add policy {name}")
        elif current["content_hash"] == content_hash([text]):
            print(f"{file}: unchanged (revision {current['id']})")
        else:
            print(f"{file}: would replace revision {current['id']}\n{_diff(current, file, text)}")
    if others and not prune:
        _warn_left_active(directory, others)
    for name in others if prune else []:
        print(f"{name}: would be deactivated")
    print("dry run: nothing uploaded, nothing activated")
    return 0


def _presented(key: str) -> str:
    """The key as its header carries it, without the line end a secret store or a file
    may add; PushError, never quoting it, for what no header carries (aiohttp raised a
    traceback on a control character)."""
    key = key.strip()
    if not key:
        raise PushError("set POSTWARDEN_API_KEY to an operator or admin key")
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise PushError("POSTWARDEN_API_KEY: expected a key as keys create prints it "
                        "(pw_<key id>_<secret>), printable ASCII without spaces")
    return key


async def push_directory(url: str, key: str, directory: Path, comment: str | None, *,
                         prune: bool = False, dry_run: bool = False, strict: bool = False,
                         error_on: Collection[str] = ()) -> int:
    key = _presented(key)
    base = _base_url(url)
    files = checked_files(directory, strict, error_on)
    if isinstance(files, int):
        return files
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(base_url=base, timeout=timeout) as session:
        service = _Service(session, key)
        if dry_run:
            return await _dry_run(service, directory, files, prune)
        revisions = await service.upload(list(files.values()), comment)
        active, tag = await service.active() if revisions is not None else (None, None)
        if revisions is None or active is None:
            return 1
        others = sorted(set(active) - {*revisions, MANAGED_POLICY})
        if others and not prune:
            _warn_left_active(directory, others)
        status, body = await service.call("POST", DEPLOY_PATH, json={
            "activate": [revision for _, revision in revisions.values()],
            "deactivate": others if prune else [],
        }, headers={"If-Match": tag} if tag else {})
    if status == 412:  # what --prune deactivates, and what is warned of, was read before it
        print(f"{directory}: another change to the active policies happened since push read "
              "them; nothing deployed: run push again", file=sys.stderr)
        return 1
    if status != 200:
        labels = {f"{name}@r{revision}": file for name, (file, revision) in revisions.items()}
        print(f"{directory}: deploy refused, nothing changed ({status})\n"
              f"{_problems(body, labels)}", file=sys.stderr)
        return 1
    for file, revision in revisions.values():
        unchanged = "" if revision in body["activated"] else " (unchanged)"
        print(f"{file}: active as revision {revision}{unchanged}")
    for name in body["deactivated"]:
        print(f"{name}: deactivated")
    # The deploy's warnings are not printed: they are those of revisions it activated,
    # each uploaded above, whose upload answered (and the push printed) them all.
    return 0
