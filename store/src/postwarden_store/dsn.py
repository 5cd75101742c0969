"""Whether a database URL is one asyncpg can use, told without the URL.

asyncpg rejects a malformed URL only when it connects, with a traceback; the
processes check theirs at start instead. The message never quotes the URL:
it holds the password.
"""

from __future__ import annotations

from urllib.parse import urlsplit

EXPECTED = "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


def dsn_problem(url: str) -> str | None:
    """What is wrong with ``url`` (None: nothing we can tell before connecting)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return EXPECTED
    if parts.scheme not in ("postgresql", "postgres"):
        return EXPECTED
    hosts = parts.netloc.rpartition("@")[2]
    for host in hosts.split(","):  # asyncpg takes several, for failover
        if host.startswith("["):  # [IPv6]:PORT
            _, bracket, rest = host.partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                return EXPECTED
            port = rest[1:]
        else:
            port = host.partition(":")[2]
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            return f"{EXPECTED} (a port is not a number from 1 to 65535)"
    return None
