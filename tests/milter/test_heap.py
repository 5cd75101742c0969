"""heap.keep_freed_memory: a body's worth of freed chunks is reused, not faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A fresh interpreter holds a 2 MB body as 64 KB chunks, joins it, frees both,
# twenty times (as the milter does per message); prints page faults per round.
ROUNDS = """
import resource, sys
from postwarden_milter.heap import keep_freed_memory
print(keep_freed_memory(), file=sys.stderr)

def faults_per_round(rounds):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        chunks = [bytearray(65536) for _ in range(32)]
        body = b"".join(chunks)
        del chunks, body
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds

faults_per_round(2)
print(faults_per_round(20))
"""
BODY_PAGES = 2 * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")


def faults_per_round(**environ: str) -> tuple[float, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"}
    result = subprocess.run([sys.executable, "-c", ROUNDS], env={**env, **environ},
                            capture_output=True, text=True, check=True, timeout=60)
    return float(result.stdout), result.stderr.strip()


def test_freed_bodies_are_reused_not_faulted_in_again() -> None:
    faults, applied = faults_per_round()
    assert applied == "True"
    assert faults < BODY_PAGES / 10


@pytest.mark.parametrize("environ", [
    {"MALLOC_TRIM_THRESHOLD_": "131072"},
    {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
])
def test_the_admins_thresholds_win(environ: dict[str, str]) -> None:
    # glibc's default trim threshold, set explicitly: each round faults the body
    # (chunks and joined copy) in again, which is what the tuning saves.
    faults, applied = faults_per_round(**environ)
    assert applied == "False"
    assert faults > BODY_PAGES


def test_other_tunables_do_not_stop_the_tuning() -> None:
    faults, applied = faults_per_round(GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    assert applied == "True"
    assert faults < BODY_PAGES / 10


# The kernel's own memory-deny-write-execute (prctl PR_SET_MDWE, Linux 6.3),
# what contrib/systemd's MemoryDenyWriteExecute=yes enforces with seccomp.
UNDER_MDWE = """
import ctypes, mmap
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    print("no PR_SET_MDWE")
    raise SystemExit
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("W+X memory still allowed")
except PermissionError:
    from postwarden_milter.heap import keep_freed_memory
    print(keep_freed_memory({}))
"""


def test_works_where_memory_may_not_be_written_and_executed() -> None:
    result = subprocess.run([sys.executable, "-c", UNDER_MDWE], capture_output=True, text=True,
                            check=True, timeout=60)
    if result.stdout.strip() == "no PR_SET_MDWE":
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert result.stdout.strip() == "True"


# A fresh interpreter whose eight threads each allocate (past pymalloc's 512 bytes, so
# from malloc); prints how many arenas malloc_info(3) then lists.
ARENAS = """
import ctypes, os, sys, tempfile, threading
from postwarden_milter.heap import one_arena
print(one_arena(), file=sys.stderr)

def churn():
    for _ in range(200):
        held = [bytearray(4096) for _ in range(64)]
        del held

threads = [threading.Thread(target=churn) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fdopen.argtypes, libc.fdopen.restype = [ctypes.c_int, ctypes.c_char_p], ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.TemporaryFile() as report:
    stream = libc.fdopen(os.dup(report.fileno()), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    report.seek(0)
    print(report.read().count(b"<heap nr="))
"""


def arenas(**environ: str) -> tuple[int, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"}
    result = subprocess.run([sys.executable, "-c", ARENAS], env={**env, **environ},
                            capture_output=True, text=True, check=True, timeout=60)
    return int(result.stdout), result.stderr.strip()


def test_the_threads_share_one_arena() -> None:
    """Each arena keeps what it freed (keep_freed_memory): eight of them per core held
    the busiest moments' memory (bench/milter_memory.py: 326 MiB after the hostile
    shapes, 159 with one)."""
    count, applied = arenas()
    assert applied == "True"
    assert count == 1


@pytest.mark.parametrize("environ", [
    {"MALLOC_ARENA_MAX": "4"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"},
])
def test_the_admins_arena_count_wins(environ: dict[str, str]) -> None:
    count, applied = arenas(**environ)
    assert applied == "False"
    assert count > 1
