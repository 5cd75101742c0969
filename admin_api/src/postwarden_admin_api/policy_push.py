"""``postwarden-admin policy push DIR``: upload every policy file and activate it (CI deploy).

Every file is uploaded first (each validated by the service); only when all
uploaded cleanly are they activated, so a broken file deploys nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aiohttp


class PushError(Exception):
    pass


def policy_files(directory: Path) -> list[Path]:
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise PushError(f"{directory}: no *.yaml or *.yml policy files")
    return files


async def _body(response: aiohttp.ClientResponse) -> Any:
    """The service's JSON answer; a PushError for anything else (a proxy's error page)."""
    try:
        return await response.json(content_type=None)
    except ValueError:  # json's JSONDecodeError, or undecodable text
        raise PushError(f"{response.url}: answered {response.status} without JSON: is the "
                        "URL the admin service's?") from None


def _problems(body: Any) -> str:
    details = body.get("error", {}).get("details", []) if isinstance(body, dict) else []
    lines = [f"  {d.get('line')}:{d.get('column')}: {d.get('message')}" for d in details]
    return "\n".join(lines)


async def push_directory(url: str, key: str, directory: Path, comment: str | None) -> int:
    if not key:
        raise PushError("set POSTWARDEN_API_KEY to an operator or admin key")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/yaml"}
    params = {"comment": comment} if comment else {}
    revisions: list[tuple[Path, int]] = []
    failed = False
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout) as session:
        for path in policy_files(directory):
            async with session.post("/api/v1/policies", data=path.read_bytes(),
                                    headers=headers, params=params) as response:
                body = await _body(response)
                if response.status not in (200, 201):
                    failed = True
                    print(f"{path}: refused ({response.status})\n{_problems(body)}",
                          file=sys.stderr)
                    continue
                revisions.append((path, body["id"]))
        if failed:
            return 1
        for path, revision_id in revisions:
            async with session.post(f"/api/v1/revisions/{revision_id}/activate",
                                    headers={"Authorization": f"Bearer {key}"}) as response:
                if response.status != 200:
                    body = await _body(response)
                    print(f"{path}: activation refused ({response.status})\n{_problems(body)}",
                          file=sys.stderr)
                    return 1
            print(f"{path}: active as revision {revision_id}")
    return 0
