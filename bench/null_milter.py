"""A pymilter filter that reads every header and body chunk and changes nothing.

bench/milter_throughput.py runs it beside postwarden as the floor: the rate
any body-reading pymilter filter can reach through the same Postfix.

    python bench/null_milter.py inet:PORT@127.0.0.1
"""

from __future__ import annotations

import sys

import Milter  # noqa: TID251 - a stand-alone reference filter, not part of postwarden


class NullMilter(Milter.Base):  # type: ignore[misc]
    def __init__(self) -> None:
        self.size = 0

    def header(self, name: str, value: str) -> int:
        self.size += len(name) + len(value)
        return int(Milter.CONTINUE)

    def body(self, chunk: bytes) -> int:
        self.size += len(chunk)
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        return int(Milter.CONTINUE)


if __name__ == "__main__":
    Milter.factory = NullMilter
    Milter.runmilter("null", sys.argv[1], 60)
