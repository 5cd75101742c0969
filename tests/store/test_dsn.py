"""Database URLs checked at start, told without the URL (it holds the password)."""

from __future__ import annotations

import pytest

from postwarden_store import dsn_problem


@pytest.mark.parametrize("url", [
    "postgresql://u:pw@db.example/audit",
    "postgres://u:pw@db.example:5432/audit",
    "postgresql:///audit?host=/run/postgresql",
    "postgresql://u:pw@db1:5432,db2:5433/audit",
    "postgresql://u@[::1]:5432/audit",
    "postgresql://u@[::1]/audit",
])
def test_urls_asyncpg_takes_pass(url: str) -> None:
    assert dsn_problem(url) is None


@pytest.mark.parametrize("url", [
    "postgres ql://u:hunter2@@db",
    "mysql://u:hunter2@db/audit",
    "",
    "postgresql://u:hunter2@db:five/audit",
    "postgresql://u:hunter2@db:0/audit",
    "postgresql://u:hunter2@db1:5432,db2:x/audit",
    "postgresql://u:hunter2@[::1/audit",
    "postgresql://u:hunter2@[::1]x/audit",
])
def test_malformed_urls_are_told_without_the_password(url: str) -> None:
    problem = dsn_problem(url)
    assert problem is not None and problem.startswith("expected postgresql://USER:PASSWORD@")
    assert "hunter2" not in problem


@pytest.mark.parametrize("url", [
    "postgresql://u:p@ss-hunter2@db.example/audit",
    "postgresql://u@corp:hunter2@db.example/audit",
])
def test_an_at_sign_not_percent_encoded_is_told_without_the_password(url: str) -> None:
    # asyncpg splits at the first @ and took "ss-hunter2@db.example" for the host (a DNS
    # lookup of the password's tail), while the check took the last and said nothing.
    problem = dsn_problem(url)
    assert problem == ("expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
                       "(an @ in the user name or password is written %40)")
    assert dsn_problem(url.replace("p@ss", "p%40ss").replace("u@corp", "u%40corp")) is None


@pytest.mark.parametrize("url", [
    "postgresql://u:hunter2/x@db.example/audit",  # "a port is not a number"
    "postgresql://u:5432/hunter2@db.example/audit",  # passed: a start against host "u"
    "postgresql://u:hunter2?x@db.example/audit",  # "the query is not NAME=VALUE pairs"
    "postgresql://u:hunter2#x@db.example/audit",
    "postgresql://u:hunter2/x@db.example",
])
def test_a_reserved_character_in_the_password_is_told_as_such(url: str) -> None:
    # A base64 password (openssl rand -base64) holds a / often: the URL's host part ends
    # there, and the check blamed the port, or passed a URL that names the user as host.
    problem = dsn_problem(url)
    assert problem is not None and "a / ? or # in the user name or password is written" \
        in problem and "hunter2" not in problem
    encoded = url.replace("hunter2/", "hunter2%2F").replace("hunter2?", "hunter2%3F")
    assert dsn_problem(encoded.replace("hunter2#", "hunter2%23").replace("5432/", "5432%2F")) \
        is None


@pytest.mark.parametrize("url", [
    "postgresql:///audit?host=/run/postgresql&user=u@corp",
    "postgresql://db.example/audit?password=p@ss",
])
def test_an_at_sign_in_a_query_value_is_no_password_cut_short(url: str) -> None:
    assert dsn_problem(url) is None


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://u:hunter2@db1:5432,/audit", "a host is missing"),  # asyncpg: IndexError
    ("postgresql://u:hunter2@db1,,db2/audit", "a host is missing"),
    ("postgresql://u:hunter2@,db2/audit", "a host is missing"),
    ("postgresql://u:hunter2@:5432/audit", "a host is missing"),  # looked "" up in DNS
    ("postgresql:///audit?host=,/run/postgresql", "host names an empty host"),
])
def test_a_missing_host_is_told_not_a_traceback(url: str, problem: str) -> None:
    # A stray comma in the host list made the milter's check and the admin service's
    # start end in asyncpg's IndexError traceback.
    told = dsn_problem(url)
    assert told is not None and problem in told and "hunter2" not in told
