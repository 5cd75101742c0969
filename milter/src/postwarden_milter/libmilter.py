"""The only module that imports pymilter (``Milter``, which re-exports its C extension).

:class:`PostwardenMilter` adapts libmilter's callbacks to
:class:`~postwarden_milter.handler.ConnectionHandler` and maps our
:class:`~postwarden_milter.apply.Outcome` values to libmilter's codes. It
negotiates only what postwarden uses: the actions below, no-reply for helo,
DATA, header and body (the handler answers what they find at the next step that
replies; DATA only brings Postfix's queue id), and header values with their
leading space so the message can be rebuilt exactly as received.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

import Milter

from .apply import Outcome
from .handler import ConnectionHandler
from .listener import disable_nagle, inet_port, never_block_accept, unix_path
from .services import Services

log = logging.getLogger(__name__)

# addheader, chgheader (and delete), replacebody, delrcpt, quarantine.
ACTION_NAMES = {"ADDHDRS": Milter.ADDHDRS, "CHGHDRS": Milter.CHGHDRS, "MODBODY": Milter.MODBODY,
                "DELRCPT": Milter.DELRCPT, "QUARANTINE": Milter.QUARANTINE}
ACTIONS = functools.reduce(operator.or_, ACTION_NAMES.values())

CODES: dict[Outcome, int] = {
    Outcome.CONTINUE: Milter.CONTINUE,
    Outcome.ACCEPT: Milter.ACCEPT,
    Outcome.REJECT: Milter.REJECT,
    Outcome.TEMPFAIL: Milter.TEMPFAIL,
    Outcome.DISCARD: Milter.DISCARD,
}


def _code(outcome: Outcome) -> int:
    # Nearly every answer is CONTINUE: spare it the lookup (an Enum member hashes
    # in Python, and every callback answers).
    return Milter.CONTINUE if outcome is Outcome.CONTINUE else CODES[outcome]


F = TypeVar("F", bound=Callable[..., int])
C = TypeVar("C", bound=Callable[..., Any])

# libmilter's accept loop, kept: open_then() puts its supervisor in its place.
_SERVE: Callable[[], None] = Milter.milter.main
# The PostwardenMilter whose callback runs: pymilter gives each libmilter context (one
# MTA connection) a thread state of its own, which a threading.local follows.
_serving = threading.local()


def _counted(method: C) -> C:
    """A callback, counted while it runs (``Services.callbacks``): a stop hangs the
    connections up only once none runs, and a tick later (session.Settling)."""

    @functools.wraps(method)
    def run(self: PostwardenMilter, *args: Any) -> Any:
        callbacks = self._callbacks
        callbacks.enter()
        try:
            return method(self, *args)
        finally:
            callbacks.leave()

    return cast(C, run)


def _noreply(func: F) -> F:
    """Milter.noreply, typed: the MTA does not wait for this step's answer."""
    return cast(F, Milter.noreply(func))


def _decode_bytes(func: F) -> F:
    """Milter.decode("bytes"), typed: header values arrive as the raw bytes."""
    return cast(F, Milter.decode("bytes")(func))


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def _bytes(value: str | bytes) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return value


@Milter.header_leading_space
class PostwardenMilter(Milter.Base):  # type: ignore[misc]
    services: ClassVar[Services]
    # What the last negotiation agreed (actions, protocol steps). A connection the MTA
    # keeps for its next SMTP session (SMFIC_QUIT_NC) starts again at connect, not
    # negotiated again, and pymilter serves it with a new object, which would take
    # nothing for agreed (no header leading space): it takes these, as an MTA offers
    # the same on each of its connections (wrong only where MTAs that offer
    # differently share one milter).
    _agreed: ClassVar[tuple[int, int] | None] = None

    def __init__(self) -> None:
        self._handler = ConnectionHandler(self.services, self)
        self._callbacks = self.services.callbacks
        self._negotiated = False

    @_counted
    def negotiate(self, opts: list[int]) -> int:
        """pymilter passes the MTA's offer as four ints (actions, protocol steps, two
        reserved) and takes an int back: CONTINUE, to agree to ``opts`` as changed
        here; ALL_OPTS, to keep the offer; REJECT (any other int), to refuse the
        connection."""
        # Without every action a verdict may need, a quarantine (or a forged tag's
        # removal) would fail at end of message, after other edits went out, and
        # fail_action=accept would deliver the message: refuse the connection instead,
        # so the MTA applies its milter_default_action to all of it.
        if missing := [name for name, flag in ACTION_NAMES.items() if not opts[0] & flag]:
            # Counted: no message of the connection is, and all of them get the default.
            self.services.metrics.errors.labels("negotiate").inc()
            log.error("the MTA does not offer the milter actions %s: refusing the connection",
                      ", ".join(missing))
            return _code(Outcome.REJECT)
        result: int = super().negotiate(opts)
        opts[0] = self._actions = ACTIONS
        PostwardenMilter._agreed = (self._actions, self._protocol)
        self._negotiated = True
        return result

    @_counted
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        if not self._negotiated and self._agreed is not None:
            self._actions, self._protocol = self._agreed
        self._handler.leading_space = bool(self._protocol & Milter.P_HDR_LEADSPC)
        _serving.milter = self
        address, port = None, None
        if family in (socket.AF_INET, socket.AF_INET6):
            address = hostaddr[0] if isinstance(hostaddr, tuple) else str(hostaddr)
            port = hostaddr[1] if isinstance(hostaddr, tuple) else None
        return _code(self._handler.connect(_text(hostname), address, port))

    @_noreply
    @_counted
    def hello(self, hostname: str) -> int:
        return _code(self._handler.helo(_text(hostname)))

    def undecodable_hello(self, raw: bytes) -> None:
        """A HELO that is not UTF-8 (``smtputf8_enable = no`` lets 8-bit through): pymilter
        decodes it as strict UTF-8 before any callback of ours, and gives up on the call
        (:func:`_untrapped`). Kept as every undecodable envelope field is, its bytes as
        surrogate escapes: rules match it, the audit row stores them as U+FFFD."""
        log.warning("the client's HELO is not UTF-8: kept with its 8-bit bytes escaped")
        self.hello(_text(raw))

    @_counted
    def envfrom(self, sender: str, *params: str) -> int:
        return _code(self._handler.mail(_text(sender), tuple(_text(p) for p in params)))

    @_counted
    def envrcpt(self, recipient: str, *params: str) -> int:
        return _code(self._handler.rcpt(_text(recipient), tuple(_text(p) for p in params)))

    @_noreply
    @_counted
    def data(self) -> int:
        return _code(self._handler.data())

    @_noreply
    @_decode_bytes
    @_counted
    def header(self, name: str, value: bytes) -> int:
        return _code(self._handler.header(_text(name), _bytes(value)))

    @_noreply
    @_counted
    def body(self, chunk: bytes) -> int:
        return _code(self._handler.body(chunk))

    @_counted
    def eom(self) -> int:
        return _code(self._handler.eom())

    @_counted
    def abort(self) -> int:
        return _code(self._handler.abort())

    @_counted
    def close(self) -> int:
        return _code(self._handler.close())

    # The actions, typed for handler.Actions (pymilter's signatures are untyped).
    def setreply(self, rcode: str, xcode: str | None = None, msg: str | None = None) -> None:
        super().setreply(rcode, xcode, msg)

    def getsymval(self, sym: str) -> str | None:
        try:
            value = super().getsymval(sym)
        except UnicodeDecodeError as undecodable:
            # pymilter decodes macros as strict UTF-8; the error holds their bytes. With
            # smtputf8_enable=no, {mail_addr} and {rcpt_addr} may hold 8-bit addresses,
            # and an MTA that does not sanitize it, an 8-bit {auth_authen}: taken as
            # absent, a signed-in client passed for an anonymous one. Kept as every
            # undecodable envelope field is (surrogate escapes; U+FFFD in the audit row).
            log.warning("the MTA's macro %s is not UTF-8: kept with its 8-bit bytes escaped",
                        sym)
            return _text(bytes(undecodable.object))
        return _text(value) if value is not None else None


def run(services: Services, connection: str, opened: Callable[[], None],
        socket_mode: int = 0o660, name: str = "postwarden") -> None:
    """Serve until :func:`stop` (or libmilter's own SIGTERM handling) ends the loop;
    ``opened`` is called once the socket accepts connections."""
    PostwardenMilter.services = services
    _prepare(connection, socket_mode, shared=False, opened=opened)
    Milter.runmilter(name, connection)


def open_then(connection: str, socket_mode: int, supervise: Callable[[], None],
              name: str = "postwarden") -> None:
    """Register and open the socket as :func:`run` does, then call ``supervise`` where
    libmilter would serve: it forks the workers, which call :func:`serve_opened`."""
    _prepare(connection, socket_mode, shared=True)
    Milter.milter.main = supervise
    try:
        Milter.runmilter(name, connection)
    finally:
        Milter.milter.main = _SERVE


def serve_opened(services: Services) -> None:
    """In a worker forked by :func:`open_then`'s ``supervise``: serve on the inherited
    socket with the inherited registration, until :func:`stop`."""
    PostwardenMilter.services = services
    _SERVE()


def _untrapped(kind: type[BaseException], value: BaseException, trace: Any) -> None:
    """sys.excepthook, which pymilter's C code calls (PyErr_Print) for an exception no
    callback trapped. The one our callbacks leave is its own: an argument it cannot
    decode as UTF-8 before calling us. Of what pymilter decodes strictly, only the HELO
    is the client's own text (the host name and macros are Postfix's, header names
    ASCII), and that call passes nothing else: its bytes are the HELO. Anything else
    goes to the previous hook, as before."""
    milter = getattr(_serving, "milter", None)
    if isinstance(value, UnicodeDecodeError) and trace is None and milter is not None:
        milter.undecodable_hello(bytes(value.object))
        return
    _PREVIOUS_HOOK(kind, value, trace)


_PREVIOUS_HOOK = sys.excepthook


def _prepare(connection: str, socket_mode: int, shared: bool,
             opened: Callable[[], None] | None = None) -> None:
    Milter.factory = PostwardenMilter
    sys.excepthook = _untrapped
    # Explicit, though it is libmilter's default: an exception that escapes our
    # guards still answers 451 4.3.0, never an unchecked accept.
    Milter.set_exception_policy(Milter.TEMPFAIL)
    Milter.set_flags(ACTIONS)
    _tune_after_open(connection, socket_mode, shared, opened)


def _tune_after_open(connection: str, socket_mode: int, shared: bool,
                     opened: Callable[[], None] | None) -> None:
    """Have runmilter's opensocket step also tune the socket, before the first accept:
    Nagle off on TCP, the configured permissions on a unix socket, and non-blocking
    when worker processes share it (.listener); then call ``opened``, if given."""
    port, path = inet_port(connection), unix_path(connection)
    extension = Milter.milter
    open_socket = extension.opensocket

    def opensocket(remove_old: bool) -> Any:
        result = open_socket(remove_old)  # raises when it cannot
        if port is not None:
            disable_nagle(port)
        if path is not None:
            os.chmod(path, socket_mode)
        if shared:
            never_block_accept(connection)
        log.info("listening on %s", connection)
        if opened is not None:
            opened()
        return result

    extension.opensocket = opensocket


def stop() -> None:
    """Stop serving, at once: libmilter's threads serve nothing more (not even a message
    in progress). Not waited for: smfi_stop also closes the listening socket, under the
    lock that libmilter's listener holds through each poll for a connection, up to
    5 s (MI_CHK_TIME), which made every stop wait that long."""
    threading.Thread(target=Milter.stop, name="postwarden-libmilter-stop", daemon=True).start()
