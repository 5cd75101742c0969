"""bench/audit_queries.py builds every search the way the API does: a filter given in
a form the API no longer passes made the bench raise before it timed anything."""

from __future__ import annotations

import re
import uuid

from bench.audit_queries import _cases


def test_every_case_builds_with_a_parameter_for_each_placeholder() -> None:
    cases = _cases(1_000_000, uuid.uuid4())
    assert len({name for name, _, _ in cases}) == len(cases)
    for name, sql, params in cases:
        placeholders = {int(n) for n in re.findall(r"\$(\d+)", sql)}
        assert placeholders == set(range(1, len(params) + 1)), name
