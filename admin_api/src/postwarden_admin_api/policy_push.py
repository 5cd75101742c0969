"""``postwarden-admin policy push DIR``: deploy a policy directory as one change (CI deploy).

1. DIR is loaded as ``postwarden-policy check`` loads it (the same files, the same
   problems, printed the same way, exit 1); a problem, or a file naming the policy
   ``database-rules`` (the Rules API's), and nothing is uploaded.
2. Every file is uploaded (each validated by the service; an unchanged file gets
   its existing revision back).
3. One ``POST /api/v1/policies/deploy`` activates all those revisions (and, with
   ``--prune``, deactivates the active policies DIR does not hold) in one
   transaction: the service compiles the resulting set once, so either all of it
   goes live or none of it does. Without ``--prune`` such policies stay active and
   are named in a warning.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from postwarden_policies import PolicyLoadError, load_policy_set

from .routes_rules import MANAGED_POLICY

# A stored revision as the service's errors name it: policy name (letters, digits, . _ -)@rID.
LABEL = re.compile(r"[A-Za-z0-9._-]+@r[0-9]+")


class PushError(Exception):
    pass


def checked_files(directory: Path) -> list[tuple[str, bytes]] | None:
    """(file, content) of each policy file of the directory, read as soon as the directory
    loaded; None once its problems are printed as check prints them."""
    if not directory.is_dir():
        raise PushError(f"{directory}: not a directory")
    try:
        policy_set = load_policy_set([directory], check_samples=True)
    except PolicyLoadError as exc:
        for issue in exc.in_order():
            print(issue, file=sys.stderr)
        return None
    reserved = [p for p in policy_set.policies if p.name == MANAGED_POLICY]
    for policy in reserved:
        line, column = policy.where
        print(f"{policy.source}:{line}:{column}: policy name {MANAGED_POLICY!r} is reserved: "
              "the Rules API (/api/v1/rules) manages it", file=sys.stderr)
    if reserved:
        return None
    return [(p.source, Path(p.source).read_bytes()) for p in policy_set.policies]


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


class _Service:
    """The admin service's policy routes, as one key sees them."""

    def __init__(self, session: aiohttp.ClientSession, key: str) -> None:
        self.session = session
        self.auth = {"Authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        async with self.session.request(method, path, headers=headers, **kwargs) as response:
            return response.status, await _body(response)

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
            else:
                failed = True
                print(f"{file}: refused ({status})\n{_problems(body, {'upload': file})}",
                      file=sys.stderr)
        return None if failed else revisions

    async def active_names(self) -> set[str] | None:
        status, body = await self.call("GET", "/api/v1/policies")
        if status != 200:
            print(f"listing the active policies refused ({status})\n{_problems(body, {})}",
                  file=sys.stderr)
            return None
        return {p["policy_name"] for p in body["policies"] if p["active_revision"]}


async def push_directory(url: str, key: str, directory: Path, comment: str | None,
                         prune: bool = False) -> int:
    if not key:
        raise PushError("set POSTWARDEN_API_KEY to an operator or admin key")
    files = checked_files(directory)
    if files is None:
        return 1
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout) as session:
        service = _Service(session, key)
        revisions = await service.upload(files, comment)
        active = await service.active_names() if revisions is not None else None
        if revisions is None or active is None:
            return 1
        others = sorted(active - {*revisions, MANAGED_POLICY})
        if others and not prune:
            print(f"warning: active but not in {directory}, left active (--prune deactivates "
                  f"them): {', '.join(others)}", file=sys.stderr)
        status, body = await service.call("POST", "/api/v1/policies/deploy", json={
            "activate": [revision for _, revision in revisions.values()],
            "deactivate": others if prune else [],
        })
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
    return 0
