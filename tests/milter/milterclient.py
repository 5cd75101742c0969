"""The MTA's side of the milter protocol (version 6), just enough to hold a connection
open and drive a transaction step by step against a milter process: tests of what
the process does with connections and transactions in progress (pymilter's TestCtx
calls the callbacks in process, without a socket)."""

from __future__ import annotations

import socket
import struct

# Steps the milter may negotiate as "no reply" (SMFIP_NR_*).
NO_REPLY = {b"C": 0x1000, b"H": 0x2000, b"M": 0x4000, b"R": 0x8000, b"T": 0x10000, b"L": 0x80,
            b"N": 0x40000, b"B": 0x80000}
PROGRESS = b"p"
ALL_ACTIONS = 0x1FF  # what Postfix offers (SMFIF_* of protocol version 6)
ALL_STEPS = 0x1FFFFF
MODIFICATIONS = frozenset(b"hmbie+-24q")


class MilterClient:
    def __init__(self, spec: str, timeout: float = 30.0) -> None:
        """``spec``: libmilter's syntax, ``inet:PORT@HOST`` or ``unix:PATH``."""
        family, _, address = spec.partition(":")
        if family == "unix":
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(address)
            except OSError:
                self.sock.close()
                raise
        else:
            port, _, host = address.partition("@")
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.protocol = 0
        self.modifications: list[tuple[bytes, bytes]] = []

    def close(self) -> None:
        self.sock.close()

    def _send(self, command: bytes, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">I", len(data) + 1) + command + data)

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError("the milter closed the connection")
            data += chunk
        return data

    def _receive(self) -> tuple[bytes, bytes]:
        (size,) = struct.unpack(">I", self._exactly(4))
        packet = self._exactly(size)
        return packet[:1], packet[1:]

    def _reply(self) -> tuple[bytes, bytes]:
        """The step's answer, past progress and modification packets (kept in
        ``modifications``)."""
        while True:
            command, data = self._receive()
            if command[0] in MODIFICATIONS:
                self.modifications.append((command, data))
            elif command != PROGRESS:
                return command, data

    def step(self, command: bytes, data: bytes = b"") -> tuple[bytes, bytes] | None:
        """Send one step; its answer, or None for a step negotiated as no-reply."""
        self._send(command, data)
        if self.protocol & NO_REPLY.get(command, 0):
            return None
        return self._reply()

    def tell(self, command: bytes, data: bytes = b"") -> None:
        """Send a command no answer follows in any protocol (abort, quit, quit_nc)."""
        self._send(command, data)

    def macros(self, stage: bytes, **values: str) -> None:
        self._send(b"D", stage + b"".join(f"{k}\0{v}\0".encode() for k, v in values.items()))

    def negotiate(self, actions: int = ALL_ACTIONS, steps: int = ALL_STEPS) -> int:
        """Offer ``actions`` and protocol ``steps`` (all: as Postfix does); the steps
        agreed."""
        self._send(b"O", struct.pack(">III", 6, actions, steps))
        command, data = self._receive()
        assert command == b"O", command
        self.protocol = struct.unpack(">III", data[:12])[2]
        return self.protocol

    def connect(self, name: str = "client.example", address: str = "127.0.0.1") -> None:
        """The SMTP client's connection (IPv4), as smtpd describes a new SMTP session."""
        answer = self.step(b"C", name.encode() + b"\x004" + struct.pack(">H", 25000)
                           + address.encode() + b"\x00")
        assert answer is None or answer[0] == b"c", answer

    def open(self, actions: int = ALL_ACTIONS) -> MilterClient:
        """Negotiate (offering ``actions``) and connect, as smtpd does for a new SMTP
        session."""
        self.negotiate(actions)
        self.connect()
        return self

    def begin(self, queue_id: str) -> tuple[bytes, bytes] | None:
        """MAIL FROM and RCPT TO, with the headers: a transaction up to its body."""
        self.macros(b"M", i=queue_id)
        answer = self.step(b"M", b"<alice@example.org>\0")
        if answer is not None and answer[0] != b"c":
            return answer
        self.macros(b"R", i=queue_id)
        self.step(b"R", b"<bob@example.net>\0")
        for name, value in (("From", "alice@example.org"), ("To", "bob@example.net"),
                            ("Subject", "hello"), ("Message-ID", f"<{queue_id}@example.org>")):
            self.step(b"L", f"{name}\0 {value}\0".encode())
        self.step(b"N")
        return answer

    def finish(self, queue_id: str, body: bytes = b"Hello.\r\n") -> tuple[bytes, bytes]:
        """The body and end of message: the final answer."""
        self.step(b"B", body)
        self.macros(b"E", i=queue_id)
        answer = self.step(b"E")
        assert answer is not None
        return answer

    def message(self, queue_id: str) -> tuple[bytes, bytes]:
        begun = self.begin(queue_id)
        if begun is not None and begun[0] != b"c":
            return begun
        return self.finish(queue_id)
