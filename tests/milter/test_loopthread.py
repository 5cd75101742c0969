"""The milter's loop thread: a start that fails before the thread runs (a database
another build migrated, say) still closes its loop. Left open, the loop was closed at
interpreter exit after its own self-pipe sockets, and printed a traceback
(``Invalid file descriptor: -1``) under the one-line refusal."""

from __future__ import annotations

from postwarden_milter.loopthread import LoopThread


def test_a_loop_thread_never_started_closes_its_loop_when_stopped() -> None:
    thread = LoopThread()
    thread.stop()
    assert thread.loop.is_closed()


def test_a_loop_thread_started_closes_its_loop_in_its_thread() -> None:
    thread = LoopThread()
    thread.start()
    assert thread.submit(_answer()).result(timeout=5) == 42
    thread.stop()
    assert thread.loop.is_closed()


async def _answer() -> int:
    return 42
