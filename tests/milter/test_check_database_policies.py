"""`postwarden-milter check` with the policies from the database (no policy_dir): it said
"the set active in the database (not checked here)" whatever was active, so a deploy's
check passed a milter that would accept every message unchanged (none active, before the
first push) or not start at all (an active set it refuses, and no last good set)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from postwarden_milter.reload import LAST_GOOD_NAME, NO_ACTIVE_POLICY
from postwarden_policies import load_policy_set_from_sources
from tests.milter.test_process import _env, _run, empty_database  # noqa: F401 - a fixture
from tests.milter.test_reload import POLICY, _activate

pytestmark = pytest.mark.postgres


def test_check_reads_the_set_active_in_the_database(
    tmp_path: Path, empty_database: str,  # noqa: F811 - the imported fixture
) -> None:
    env = _env(tmp_path, database_url=empty_database)
    del env["POSTWARDEN_POLICY_DIR"]
    assert _run(["migrate"], env).returncode == 0
    none = _run(["check"], env)
    assert none.returncode == 0, none.stderr  # it would start, accepting everything
    assert f"warning: {NO_ACTIVE_POLICY}" in none.stderr.splitlines()

    source = POLICY.format(name="main", limit=5)
    asyncio.run(_activate(empty_database, "main", source))
    active = _run(["check"], env)
    assert active.returncode == 0, active.stderr
    content_hash = load_policy_set_from_sources([("main", source)]).content_hash
    assert active.stdout.splitlines()[1] == f"policies: 1 active in the database, set " \
                                            f"{content_hash[:12]}"
    assert "warning" not in active.stderr

    # Active, and refused as a start refuses it: with no last good set it would not start.
    asyncio.run(_activate(empty_database, "main", "version: 1\nname: main\nmode: loud\n"))
    refused = _run(["check"], env)
    assert refused.returncode == 2
    assert "postwarden-milter: policies do not load: main@r2:3:7: mode: expected one of " \
           "enforce, report; got 'loud'" in refused.stderr.splitlines()
    spool = Path(env["POSTWARDEN_SPOOL_DIR"])
    spool.mkdir()
    (spool / LAST_GOOD_NAME).write_text(json.dumps([["main", source]]))
    fallback = _run(["check"], env)
    assert fallback.returncode == 0, fallback.stderr
    assert "the milter would start on the last good set in spool_dir" in fallback.stderr


def test_check_compares_the_active_set_with_postfixs_duplicate_filter_limit(
    tmp_path: Path, empty_database: str,  # noqa: F811 - the imported fixture
) -> None:
    """check loaded the set active in the database, then compared none of it with this
    host's Postfix: a max_recipients above duplicate_filter_limit went unsaid."""
    env = _env(tmp_path, database_url=empty_database)
    del env["POSTWARDEN_POLICY_DIR"]
    assert _run(["migrate"], env).returncode == 0
    asyncio.run(_activate(empty_database, "main", POLICY.format(name="main", limit=5)))
    postfix = tmp_path / "postfix"
    postfix.mkdir()
    (postfix / "main.cf").write_text("myhostname = mx.example.org\n"
                                     "duplicate_filter_limit = 3\n")
    (postfix / "master.cf").write_text("")
    result = _run(["check"], {**env, "MAIL_CONFIG": str(postfix)})
    assert result.returncode == 0, result.stderr
    assert ("warning: policy main: max_recipients 5 is above Postfix's "
            "duplicate_filter_limit (3): past 3 recipients Postfix delivers a repeated one "
            "again, which the milter counts once; set duplicate_filter_limit to 5 or more "
            "(or 0)") in result.stderr.splitlines()
