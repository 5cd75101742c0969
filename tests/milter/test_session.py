"""The transaction's body buffer: memory up to the threshold, a file beyond, same bytes."""

from __future__ import annotations

import pytest

from postwarden_milter.session import AUDIT_HEADER_BYTES, CRLF, BodyBuffer, Transaction


def transaction(threshold: int, max_bytes: int | None = None) -> Transaction:
    txn = Transaction(sender="a@example.org", auth_user=None, memory_threshold=threshold,
                      max_bytes=max_bytes)
    txn.add_header("Subject", b" hello", leading_space=True)
    return txn


@pytest.mark.parametrize(("threshold", "spilled"), [(1 << 20, False), (100, True)])
def test_the_message_is_rebuilt_exactly_in_memory_or_spilled(
    threshold: int, spilled: bool
) -> None:
    chunks = [bytes([65 + n]) * 64 + CRLF for n in range(5)]
    txn = transaction(threshold)
    for chunk in chunks:
        assert txn.add_body(chunk)
    assert txn._body is not None and txn._body.spilled is spilled
    assert txn.raw_message() == b"Subject: hello\r\n\r\n" + b"".join(chunks)
    assert txn.raw_message() == txn.raw_message()  # reading does not consume
    assert txn.size == len(txn.raw_message())
    txn.close()
    assert txn.raw_message() == b"Subject: hello\r\n\r\n"


def test_a_spilled_body_goes_to_the_file_in_batches() -> None:
    chunks = [bytes([65 + n % 26]) * 98 + CRLF for n in range(40)]  # 100 bytes each
    body = BodyBuffer(threshold=250, batch=400)
    try:
        held = []
        for chunk in chunks:
            body.write(chunk)
            held.append(body.in_memory)
        assert body.spilled
        assert max(held[:2]) <= 250 and max(held[3:]) <= 400  # spilled at the third chunk
        assert 0 < held[-1]  # the tail is still in memory and part of the message
        assert body.after(b"H\r\n\r\n") == b"H\r\n\r\n" + b"".join(chunks)
    finally:
        body.close()


def test_the_size_limit_is_checked_on_every_chunk() -> None:
    txn = transaction(1000, max_bytes=200)
    try:
        assert txn.add_body(b"x" * 150)
        assert txn._body is not None and txn._body.in_memory == 150
        assert not txn.add_body(b"y" * 50)
        assert not txn.within_limit
        # Past the limit nothing more is stored and what was held is freed at once.
        assert txn._body.in_memory == 0
        assert not txn.add_body(b"z" * 500)
        assert txn._body.in_memory == 0
        assert txn.size == len(b"Subject: hello\r\n\r\n") + 700
    finally:
        txn.close()


def test_the_size_counts_the_blank_line_once_body_or_not() -> None:
    # Counted at the first chunk only, a header-only message was two bytes smaller
    # than it is, and one its size over the limit was refused at the limit.
    header_only = transaction(1000, max_bytes=len(b"Subject: hello\r\n\r\n"))
    assert header_only.size == len(header_only.raw_message()) and header_only.within_limit
    with_body = transaction(1000)
    with_body.add_body(b"x\r\n")
    assert with_body.size == len(with_body.raw_message())
    with_body.close()


def test_headers_past_the_limit_are_counted_not_kept() -> None:
    txn = transaction(1000, max_bytes=20_000)
    line = b" " + b"v" * 990
    for n in range(2_000):  # 2 MB of headers
        txn.add_header(f"X-H{n}", line, leading_space=True)
    assert not txn.within_limit
    assert len(txn.header_bytes) <= 20_000
    assert txn.size > 2_000 * 990
    assert txn.header_names["x-h1999"] == 1


def test_the_audit_reads_whole_leading_fields_and_the_later_from() -> None:
    txn = transaction(1000)  # no size limit: an aborted transaction holds all it got
    for n in range(64):
        txn.add_header(f"X-H{n}", b" " + b"v" * 990, leading_space=True)
    # A folded From straddling the cut: the field is read whole, or not cut into.
    txn.add_header("From", b' "ceo@bank.example"\n <mallory@evil.example>', leading_space=True)
    for n in range(64, 200):
        txn.add_header(f"X-H{n}", b" " + b"v" * 990, leading_space=True)
    txn.add_header("Message-ID", b" <late@example.org>", leading_space=True)
    head = txn.leading_headers()
    assert head.startswith(b"Subject: hello\r\n")
    assert b'From: "ceo@bank.example"\r\n <mallory@evil.example>\r\n' in head
    assert head.endswith(b"Message-ID: <late@example.org>\r\n")
    assert len(head) <= AUDIT_HEADER_BYTES + 200


def test_the_audit_reads_a_from_past_the_size_limit() -> None:
    txn = transaction(1000, max_bytes=5_000)
    for n in range(10):
        txn.add_header(f"X-H{n}", b" " + b"v" * 990, leading_space=True)
    txn.add_header("From", b" <late@example.org>", leading_space=True)
    assert not txn.within_limit
    assert txn.leading_headers().endswith(b"From: <late@example.org>\r\n")
