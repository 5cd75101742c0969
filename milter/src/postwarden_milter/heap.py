"""Keep freed heap memory for the next message instead of handing it back to the kernel.

A message body arrives as 64 KB chunks, is joined once at end of message
(:class:`~postwarden_milter.session.BodyBuffer`) and is freed all at once
when the message is done. With glibc's default thresholds those megabytes go
back to the kernel as they are freed (the top of a heap is trimmed past
128 KB free), and the next message faults as many pages in again,
zero-filled by the kernel: about 600 page faults and 1 ms of CPU per 2 MB
message in bench/milter_throughput.py. Raising the trim threshold keeps the
memory for reuse, and raising the mmap threshold serves joined bodies from
that reused heap rather than from fresh mappings. The cost: the resident
size stays near its peak (about 150 MB instead of about 100 MB in that
bench, 16 2 MB messages at a time).

Applied only on glibc, and only when the admin set neither threshold through
the environment (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or
``GLIBC_TUNABLES``): theirs wins.

:func:`one_arena` makes the threads share one malloc arena. glibc gives them up
to eight per core, and each keeps what it freed up to those thresholds, so the
resident size was what the busiest moments took in every arena: in
bench/milter_memory.py, 149 MiB after 7,800 messages and 326 MiB at most over the
hostile shapes with the default arenas, 99 and 159 MiB with one; the filter CPU per
message in bench/milter_throughput.py was the same within its noise (1.70, 2.80
and 6.92 ms against 1.93, 2.78 and 6.83). The threads take turns at the GIL anyway.
``MALLOC_ARENA_MAX`` (or ``glibc.malloc.arena_max`` in ``GLIBC_TUNABLES``) in the
environment wins.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

# mallopt() parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
TRIM_THRESHOLD = 64 * 1024 * 1024
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit systems

_ENVIRONMENT = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_TUNABLES = ("glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold")


def _admin_choice(environ: Mapping[str, str], names: tuple[str, ...] = _ENVIRONMENT,
                  tunables: tuple[str, ...] = _TUNABLES) -> str | None:
    """The environment variable through which the admin set one of ``names`` (the
    thresholds, by default) or of ``tunables``, if any."""
    given = environ.get("GLIBC_TUNABLES", "")
    if any(tunable in given for tunable in tunables):
        return "GLIBC_TUNABLES"
    return next((name for name in names if name in environ), None)


def _on_glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):  # not a name this C library knows
        return False


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Raise glibc's trim and mmap thresholds; False when they are left as they are."""
    chosen = _admin_choice(environ)
    if chosen is not None:
        log.info("malloc thresholds left as %s sets them", chosen)
        return False
    if not _on_glibc():
        return False
    # Each call is independent of the other.
    trimmed = _mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    mapped = _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return trimmed and mapped


def one_arena(environ: Mapping[str, str] = os.environ) -> bool:
    """One malloc arena for every thread (before they start); False when left as is."""
    chosen = _admin_choice(environ, ("MALLOC_ARENA_MAX",), ("glibc.malloc.arena_max",))
    if chosen is not None:
        log.info("malloc arenas left as %s sets them", chosen)
        return False
    return _on_glibc() and _mallopt(M_ARENA_MAX, 1)


def _mallopt(parameter: int, value: int) -> bool:
    """glibc's mallopt(), which answers 1 on success."""
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(parameter, value) == 1)
