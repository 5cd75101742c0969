"""bench/cpu.py: the CPU figures the benchmarks print come from real process trees."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

from bench.cpu import (
    busy_fraction,
    cores_busy,
    header_cells,
    interpreter,
    measured,
    median_cells,
    per_message_ms,
    tree_seconds,
)

# Burns about 0.3 s of CPU, then says so and waits for its stdin to close.
BURN = (
    "import sys, time\n"
    "end = time.process_time() + 0.3\n"
    "while time.process_time() < end: pass\n"
    "print('done', flush=True)\n"
    "sys.stdin.read()\n"
)


def _burner(*prefix: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*prefix, sys.executable, "-c", BURN], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_a_live_descendant_counts_and_an_unrelated_process_does_not() -> None:
    # A shell between the root and the burner: the group is the whole tree.
    shell = subprocess.Popen(["sh", "-c", f"{sys.executable} -c \"$0\"; exit 0", BURN],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    bystander = _burner()
    try:
        with measured({"tree": [shell.pid], "nobody": [None]}) as used:
            assert shell.stdout is not None and bystander.stdout is not None
            assert shell.stdout.readline() == "done\n"
            bystander.stdout.readline()
        assert used["tree"] >= 0.2
        assert used["nobody"] == 0
        # The bystander's 0.3 s are not the shell's.
        assert tree_seconds({"tree": [shell.pid]})["tree"] < 0.5
    finally:
        for proc in (shell, bystander):
            proc.communicate("")


def test_reaped_children_still_count() -> None:
    with measured({"me": [os.getpid()]}) as used:
        subprocess.run([sys.executable, "-c", BURN], input="", text=True, check=True,
                       capture_output=True)
    assert used["me"] >= 0.2


def test_per_message_figures_are_milliseconds() -> None:
    assert per_message_ms({"postfix": 1.5, "filter": 0.0}, 1000) == {
        "postfix": 1.5, "filter": 0.0}


def test_table_cells_are_medians_with_a_total() -> None:
    runs = [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 2.0}, {"a": 9.0, "b": 0.5}]
    assert header_cells(["a", "b"]) == "         a         b     total"
    # Medians: a 2.0, b 2.0; totals 4.0, 4.0, 9.5: 4.0.
    assert median_cells(runs, ["a", "b"]) == "      2.00      2.00      4.00"


def test_a_burning_process_makes_the_machine_busier() -> None:
    cores = os.cpu_count() or 1
    with cores_busy() as busy:
        subprocess.run([sys.executable, "-c", BURN], input="", text=True, check=True,
                       capture_output=True)
    # One core burned for most of the block (the interpreter's start is a few
    # tens of milliseconds): at least half of one core's share.
    assert 0.5 / cores <= busy.fraction <= 1.0


def test_busy_is_the_share_of_ticks_not_idle() -> None:
    assert busy_fraction((1000, 400), (1200, 450)) == 0.75
    assert busy_fraction((1000, 400), (1000, 400)) == 0.0


def test_a_process_alone_is_its_own_time_without_its_childrens() -> None:
    with measured({"tree": [os.getpid()]}, {"alone": os.getpid()}) as used:
        subprocess.run([sys.executable, "-c", BURN], input="", text=True, check=True,
                       capture_output=True)
        end = time.process_time() + 0.3
        while time.process_time() < end:  # bounded: 0.3 s of this process's CPU
            pass
    assert used["tree"] >= 0.4  # the child's 0.3 s and this process's
    assert 0.2 <= used["alone"] < used["tree"] - 0.2


def test_the_interpreter_named_is_the_build_itself_not_a_virtualenvs_link() -> None:
    version, _, path = interpreter().removeprefix("python: ").partition(" (")
    path = path.removesuffix(")")
    assert version == platform.python_version()
    assert not os.path.islink(path) and os.path.samefile(path, sys.executable)
