"""Whether a database URL is one asyncpg can use, told without the URL.

asyncpg rejects a malformed URL only when it connects, with a traceback; the
processes check theirs at start instead. The message never quotes the URL,
nor any value in it: it holds the password. It names a query parameter only
when the name is one of ours below.

The query's parameters are asyncpg's (its ``connect_utils``): the ones with a
fixed set of values are checked here; a name asyncpg does not know goes to the
server as a setting (``?application_name=x``), so only libpq's own parameters,
which no server takes, are refused by name.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, urlsplit

EXPECTED = "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
_TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "sslnegotiation": ("postgres", "direct"),
    "target_session_attrs": ("any", "primary", "standby", "prefer-standby", "read-write",
                             "read-only"),
    "gsslib": ("gssapi", "sspi"),
    "ssl_min_protocol_version": _TLS_VERSIONS,
    "ssl_max_protocol_version": _TLS_VERSIONS,
}
_VERIFIED = ("require", "verify-ca", "verify-full")  # the sslmodes that insist on TLS
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
# libpq's, not asyncpg's: asyncpg would send them to the server, which refuses to connect.
LIBPQ_ONLY = frozenset({
    "channel_binding", "connect_timeout", "fallback_application_name", "gssdelegation",
    "gssencmode", "hostaddr", "keepalives", "keepalives_count", "keepalives_idle",
    "keepalives_interval", "load_balance_hosts", "replication", "require_auth",
    "requiressl", "requirepeer", "sslcertmode", "sslcompression", "sslsni",
    "tcp_user_timeout",
})


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


def _query_problem(query: str) -> str | None:
    try:
        pairs = parse_qsl(query, strict_parsing=True)  # as asyncpg parses it
    except ValueError:
        return "the query is not NAME=VALUE pairs joined by &"
    for name, value in pairs:
        if name in LIBPQ_ONLY:
            return f"the query parameter {name} is libpq's; asyncpg does not take it"
        if name in CHOICES and value not in CHOICES[name]:
            return f"the query parameter {name} must be one of {', '.join(CHOICES[name])}"
        if name == "port" and not all(_is_port(port) for port in value.split(",")):
            return "the query parameter port must be numbers from 1 to 65535"
        if name == "host" and "," in value and _host_missing(value):
            return "the query parameter host names an empty host (a comma too many?)"
    given = dict(pairs)  # asyncpg takes a repeated parameter's last value
    if given.get("sslnegotiation") == "direct" and given.get("sslmode") not in _VERIFIED:
        # asyncpg would take PGSSLMODE too; the URL should say it all.
        return "the query parameter sslnegotiation=direct needs sslmode=" + ", ".join(_VERIFIED)
    return None


def _userinfo_cut_short(parts: SplitResult) -> bool:
    """A / ? or # in the password (as base64 passwords have) ends the host part there:
    the rest of the password and its @ land in the path, query or fragment, the user
    name is taken for the host and the password's head for the port (a port that is not
    a number, or worse one that is: a start against host "user")."""
    if "@" in parts.netloc:
        return False
    # In a query an @ is only legitimate in a value (user=u@corp), never in a name.
    names = (pair.partition("=")[0] for pair in parts.query.split("&"))
    return "@" in parts.path or "@" in parts.fragment or any("@" in name for name in names)


def _host_missing(hosts: str) -> bool:
    """An empty entry in a list of hosts (``db1,,db2``, ``db1:5432,``) failed asyncpg's
    connect with a traceback (IndexError), and a port with no host (``:5432``) looked the
    empty name up in DNS. One empty host alone is the default (``postgresql:///db``)."""
    return hosts != "" and any(not host or host.startswith(":") for host in hosts.split(","))


def dsn_problem(url: str) -> str | None:
    """What is wrong with ``url`` (None: nothing we can tell before connecting)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return EXPECTED
    if parts.scheme not in ("postgresql", "postgres"):
        return EXPECTED
    if parts.netloc.count("@") > 1:
        # asyncpg splits at the first @: the rest of the password would be the host name,
        # looked up in DNS, where we (urlsplit) take the last.
        return f"{EXPECTED} (an @ in the user name or password is written %40)"
    if _userinfo_cut_short(parts):
        return (f"{EXPECTED} (a / ? or # in the user name or password is written %2F %3F "
                "%23, an @ in the database name %40)")
    hosts = parts.netloc.rpartition("@")[2]
    if _host_missing(hosts):
        return f"{EXPECTED} (a host is missing: a comma too many, or a port without its host)"
    for host in hosts.split(","):  # asyncpg takes several, for failover
        if host.startswith("["):  # [IPv6]:PORT
            _, bracket, rest = host.partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                return EXPECTED
            port = rest[1:]
        else:
            port = host.partition(":")[2]
        if port and not _is_port(port):
            return f"{EXPECTED} (a port is not a number from 1 to 65535)"
    return _query_problem(parts.query) if parts.query else None


def has_password(url: str) -> bool:
    """Whether ``url`` holds a password: after the user name, or as a query parameter."""
    try:
        parts = urlsplit(url)
    except ValueError:  # malformed (dsn_problem says how): judged by its text alone
        return "@" in url or "password=" in url
    return bool(parts.password) or any(
        name in SECRET_PARAMETERS for name, _ in parse_qsl(parts.query))
