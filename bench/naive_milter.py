"""The naive content filter the milter issue compares against: the email package and nh3.

It buffers the message, parses it with ``email`` (its default, compat32), cleans
each text/html part with nh3 and, when that changed anything, replaces the
body with the re-serialized message. No policy, no audit, no metrics.
bench/milter_throughput.py --naive runs it beside postwarden, so the issue's
reference figures for such a filter can be checked on this machine, in the
same interleaved series.

    python bench/naive_milter.py unix:/path/to/socket
"""

from __future__ import annotations

import email
import sys

import Milter  # noqa: TID251 - a stand-alone reference filter, not part of postwarden
import nh3

CHUNK = 65535  # the largest milter packet Postfix takes


class NaiveMilter(Milter.Base):  # type: ignore[misc]
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def envfrom(self, sender: str, *params: str) -> int:
        self.parts = []
        return int(Milter.CONTINUE)

    @Milter.decode("bytes")
    def header(self, name: str, value: bytes) -> int:
        self.parts.append(name.encode() + b": " + value + b"\r\n")
        return int(Milter.CONTINUE)

    def eoh(self) -> int:
        self.parts.append(b"\r\n")
        return int(Milter.CONTINUE)

    def body(self, chunk: bytes) -> int:
        self.parts.append(chunk)
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        message = email.message_from_bytes(b"".join(self.parts))
        changed = False
        for part in message.walk():
            if part.get_content_type() == "text/html":
                charset = part.get_content_charset() or "us-ascii"
                html = part.get_payload(decode=True).decode(charset, "replace")
                clean = nh3.clean(html)
                if clean != html:
                    del part["Content-Transfer-Encoding"]
                    part.set_payload(clean, "utf-8")
                    changed = True
        if changed:
            body = message.as_bytes().split(b"\n\n", 1)[1].replace(b"\n", b"\r\n")
            for start in range(0, len(body), CHUNK):
                self.replacebody(body[start:start + CHUNK])
        return int(Milter.CONTINUE)

if __name__ == "__main__":
    Milter.factory = NaiveMilter
    Milter.set_flags(Milter.MODBODY)
    Milter.runmilter("naive", sys.argv[1], 60)
