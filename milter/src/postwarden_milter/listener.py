"""Tune libmilter's listening socket, and tell why libmilter could not open it.

At end of message libmilter writes each modification (``addheader``,
``replacebody`` chunks, ...) and then the final reply as separate small
packets. With Nagle's algorithm on, the reply waits for the MTA's ACK of the
modification, and Postfix delays that ACK by up to 40 ms because it has
nothing to send: every modified message took 40 ms longer at eom. libmilter
offers no socket option, so once it has opened the listening socket we find
it among our file descriptors and set ``TCP_NODELAY``, which Linux copies to
every accepted connection. Unix sockets have no Nagle and need nothing.

With several worker processes accepting on one socket, a connection wakes
them all; libmilter accepts holding the lock that ``smfi_stop`` needs, so a
worker that lost the race would block in ``accept`` and could not stop until
the next connection came. A non-blocking listening socket makes that
``accept`` fail with EAGAIN, which libmilter takes as "poll again" (Linux does
not pass the flag on to accepted connections). And libmilter, when it stops,
unlinks a unix socket's file (unless it runs as root): one worker stopping
alone would leave the others unreachable, so a worker hands its descriptor
of the socket over to ``/dev/null`` first (:func:`disown_listener`).

A stop does not wait for libmilter's listener to see it (it polls for a
connection 5 s at a time, holding the lock ``smfi_stop`` needs), and libmilter
leaves the connections it accepted open, unanswered, until the process exits:
the stopping milter hangs them up itself (:func:`hang_up`) and, alone on a
unix socket, removes its file as libmilter would (:func:`remove_socket_file`).

libmilter also unlinks a unix socket's file before it binds its own (pymilter
asks it to, so a file left by a milter that was killed does not stop the
next start): a second milter started on the same path would leave the first
running unreachable. Start-up checks first whether anything accepts on the
file (:func:`served_elsewhere`).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import stat
from collections.abc import Callable

log = logging.getLogger(__name__)

PROBE_SECONDS = 2.0


def inet_port(connection: str) -> int | None:
    """The TCP port of a libmilter ``inet:PORT@HOST`` / ``inet6:PORT@HOST`` spec."""
    family, _, rest = connection.partition(":")
    if family not in ("inet", "inet6"):
        return None
    port = rest.partition("@")[0]
    return int(port) if port.isdigit() else None


def unix_path(connection: str) -> str | None:
    """The file of a libmilter ``unix:/PATH`` (or ``local:/PATH``) spec."""
    family, _, path = connection.partition(":")
    return path if family in ("unix", "local") else None


def bind_problem(connection: str) -> OSError | None:
    """Why libmilter could not listen on ``connection`` (it only says it could not),
    found by binding it ourselves (its strerror says it); None when we cannot tell."""
    path = unix_path(connection)
    if path is not None:
        return _unix_bind_problem(path)
    port, host = inet_port(connection), _inet_host(connection)
    if port is None or not host:
        return None
    unresolved = resolve_problem(connection)
    if unresolved is not None:
        return unresolved
    family = _inet_family(connection)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return OSError(exc.errno, exc.strerror or type(exc).__name__)
    return None


def _inet_family(connection: str) -> socket.AddressFamily:
    """libmilter's family for inet: (IPv4 only) and inet6: (IPv6 only)."""
    return socket.AF_INET6 if connection.startswith("inet6:") else socket.AF_INET


def resolve_problem(connection: str) -> OSError | None:
    """Why the host of an ``inet:PORT@HOST`` (``inet6:``) spec gives no address of its
    family, as the bind then resolves it (getaddrinfo); None when it does, or for a
    spec with no host to resolve."""
    host = _inet_host(connection)
    if inet_port(connection) is None or not host:
        return None
    return host_problem(host, _inet_family(connection))


def host_problem(host: str, family: int = socket.AF_UNSPEC) -> OSError | None:
    """Why ``host`` gives no address of ``family`` (getaddrinfo, as a bind resolves it);
    None when it does."""
    try:
        socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return OSError(exc.errno, f"{host} does not resolve ({exc.strerror})")
    return None


def _inet_host(connection: str) -> str:
    """The host of an ``inet:PORT@HOST`` spec, an IPv6 address out of the brackets
    libmilter takes it in; "" for none."""
    return connection.partition("@")[2].strip("[]")


def _unix_bind_problem(path: str) -> OSError | None:
    """Why no unix socket could be made at ``path``: a file there that is no socket
    (libmilter leaves it), or a directory this user may not create in (its owner's, a
    read-only file system): told by binding a probe of our own beside it."""
    with contextlib.suppress(OSError):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return OSError(errno.ENOTSOCK, "the file there is not a socket")
    directory = os.path.dirname(path)
    # Short: a probe longer than the socket's own path could pass the 107-byte limit
    # and be refused for that, not for the directory.
    probe_path = os.path.join(directory, f".pw{os.getpid()}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(probe_path)
        except OSError as exc:
            return OSError(exc.errno, f"{directory}: {exc.strerror or exc}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(probe_path)
    return None


def served_elsewhere(connection: str) -> bool:
    """Whether a process accepts connections on the unix socket file of ``connection``
    (False for a stale file, one whose process is gone: it may be replaced)."""
    path = unix_path(connection)
    if path is None or not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_SECONDS)
        try:
            probe.connect(path)
        except TimeoutError:  # a full backlog: it is there, busy
            return True
        except OSError:  # refused (stale), gone meanwhile, or not ours to connect to
            return False
    return True


def _is_listener_on(sock: socket.socket, connection: str) -> bool:
    """Whether ``sock`` is a listening socket of the libmilter ``connection`` spec."""
    return _listens(sock) and _bound_to(sock, connection)


def _is_connection_on(sock: socket.socket, connection: str) -> bool:
    """Whether ``sock`` is a connection accepted on ``connection`` (an accepted socket
    bears its listener's address: a unix socket's path, a TCP socket's port)."""
    return not _listens(sock) and _bound_to(sock, connection)


def _listens(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def _bound_to(sock: socket.socket, connection: str) -> bool:
    if sock.type != socket.SOCK_STREAM:
        return False
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = unix_path(connection)
        return path is not None and address == path
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    ipaddress.ip_address(address[0])  # a real inet socket name, not an abstract one
    return int(address[1]) == inet_port(connection)


def _tune_listeners(connection: str, tune: Callable[[socket.socket], object],
                    fd_dir: str) -> int:
    """Apply ``tune`` to our listening sockets of ``connection``; returns how many."""
    return _tune_sockets(connection, _is_listener_on, tune, fd_dir)


def _tune_sockets(connection: str, which: Callable[[socket.socket, str], bool],
                  tune: Callable[[socket.socket], object], fd_dir: str) -> int:
    """Apply ``tune`` to our sockets of ``connection`` that ``which`` picks; returns
    how many."""
    tuned = 0
    for name in os.listdir(fd_dir):
        fd = int(name)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue  # not a socket (or already closed)
        try:
            with contextlib.suppress(OSError, ValueError):
                if which(sock, connection):
                    tune(sock)
                    tuned += 1
        finally:
            sock.detach()  # the descriptor stays libmilter's
    return tuned


def disable_nagle(port: int, fd_dir: str = "/proc/self/fd") -> int:
    """Set TCP_NODELAY on our listening sockets bound to ``port``; returns how many."""
    tuned = _tune_listeners(
        f"inet:{port}", lambda sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        fd_dir)
    if not tuned:
        log.warning("no listening socket on port %d found: Nagle's algorithm stays on", port)
    return tuned


def never_block_accept(connection: str, fd_dir: str = "/proc/self/fd") -> int:
    """Make our listening sockets of ``connection`` non-blocking (several processes
    accept on them); returns how many."""
    tuned = _tune_listeners(connection, lambda sock: sock.setblocking(False), fd_dir)
    if not tuned:
        raise OSError(f"no listening socket of {connection} found to share between workers")
    return tuned


def disown_listener(connection: str, fd_dir: str = "/proc/self/fd") -> int:
    """In a worker about to stop: put ``/dev/null`` in place of our descriptors of the
    shared listening socket, so libmilter's stop neither unlinks its file (it checks
    that the descriptor is a socket) nor accepts again; returns how many."""
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _tune_listeners(connection, lambda sock: os.dup2(null, sock.fileno()), fd_dir)
    finally:
        os.close(null)


def hang_up(connection: str, fd_dir: str = "/proc/self/fd") -> int:
    """Shut down our connections accepted on ``connection`` (both ways): the MTA's next
    command on each fails at once, and it applies ``milter_default_action``. The
    descriptors stay open and libmilter's (closing them under its threads could hand
    their numbers to a new file meanwhile); returns how many."""
    return _tune_sockets(connection, _is_connection_on,
                         lambda sock: sock.shutdown(socket.SHUT_RDWR), fd_dir)


def socket_file(connection: str) -> tuple[int, int] | None:
    """(device, inode) of a unix socket's file; None for TCP, or when it is gone."""
    path = unix_path(connection)
    if path is None:
        return None
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def socket_file_lost(connection: str, made: tuple[int, int] | None) -> bool:
    """Whether the unix socket's file ``made`` (its :func:`socket_file` when opened) was
    removed or replaced since: Postfix then reaches nothing of ours by the path, though
    libmilter goes on listening. Logged here, as the caller then stops."""
    try:
        if made is None or socket_file(connection) == made:
            return False
    except OSError:  # cannot look (its directory closed to us): not known to be gone
        return False
    log.error("the socket file of %s was removed or replaced: Postfix cannot reach the "
              "milter; stopping so that the service manager restarts it", connection)
    return True


def remove_socket_file(connection: str, made: tuple[int, int] | None) -> None:
    """Remove the unix socket's file of ``connection`` if it is still the one ``made``
    (its :func:`socket_file` when opened), not one another milter has put there since."""
    path = unix_path(connection)
    # Gone, or its directory closed to us: left (a stop goes on, its workers' too).
    with contextlib.suppress(OSError):
        if path is not None and made is not None and socket_file(connection) == made:
            os.unlink(path)
