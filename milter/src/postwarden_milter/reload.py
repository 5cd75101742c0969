"""The policy set in force, and how it is replaced while mail flows.

:class:`PolicyHolder` holds an immutable compiled :class:`PolicySet`; a reload
builds a new one and swaps the reference, so a callback that already read
``holder.current`` finishes with the set it started with. A set that fails to
load is refused: the running one stays, and the failure is logged, counted
and, when a database is configured, raised as the webhook event
``policy.load_failed`` (:mod:`.load_failed`).

Sources: a policy directory (polled, and loaded once a change has settled;
re-read at once on SIGHUP), or
the database's active revisions (LISTEN on ``postwarden_policy``, the connection pinged
so that one whose server went away silently is replaced). In
database mode the last good sources are kept under the spool directory, so a
milter restarted while Postgres is away still filters with them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from postwarden_policies import (
    PoliciesError,
    PolicyIssue,
    PolicyLoadError,
    PolicySet,
    load_policy_set,
    load_policy_set_from_sources,
)
from postwarden_policies.loader import policy_files
from postwarden_store import connect, database_problem
from postwarden_store.policies import POLICY_CHANNEL, fetch_active_sources

from .load_failed import LoadFailedNotifier
from .loopthread import LoopThread
from .metrics import Metrics
from .settings import LAST_GOOD_NAME
from .spool import fsync_directory

log = logging.getLogger(__name__)

DB_TIMEOUT = 10.0
LISTEN_RETRY = 5.0
# How often the LISTEN connection is asked to answer: one whose server went away
# without a word (a failover that moved its address, a firewall that forgot the
# flow) is never seen closed, and every NOTIFY after it would be missed.
LISTEN_PING_SECONDS = 30.0
WATCH_ERROR_PAUSE = 1.0  # seconds the watcher rests after an unexpected error
READ_ATTEMPTS = 3  # reads of policy_dir a load makes while its files change under it
Sources = list[tuple[str, str]]
Fingerprint = tuple[tuple[str, int, int, int, int, int], ...]


class PolicyHolder:
    def __init__(self, policy_set: PolicySet) -> None:
        self._current = policy_set

    @property
    def current(self) -> PolicySet:
        return self._current

    def swap(self, policy_set: PolicySet) -> None:
        self._current = policy_set  # one reference store: atomic for readers


def _fingerprint(directory: Path) -> Fingerprint:
    """Name, file (device and inode), mtime, ctime and size of the files a load would read
    (the loader's own list). The file itself: a deploy that swaps a symlink
    (``ln -sfn releases/N current``) or moves a new directory into place may bring files
    of the same size and mtime (copied with ``cp -p``, or a Nix store's, all mtime 1).
    The ctime: a chmod or chown that lets the milter read a file that refused the set
    changes nothing else."""
    files, issues = policy_files([directory])
    entries = []
    for path in files:
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed since the listing: its absence is the change
            continue
        entries.append((str(path), stat.st_dev, stat.st_ino, stat.st_mtime_ns,
                        stat.st_ctime_ns, stat.st_size))
    # An entry named like a policy that is no file (a broken link) refuses the set: its
    # removal, or its repair, is a change too.
    entries += ((issue.file, 0, 0, 0, 0, -1) for issue in issues)
    return tuple(entries)


def _unreadable(directory: Path, exc: OSError) -> PolicyIssue:
    """policy_dir (or a file in it) that cannot be listed, as a problem of its set."""
    return PolicyIssue(str(exc.filename or directory), None, None,
                       f"cannot read: {exc.strerror or exc}")


class PolicyFiles:
    """policy_dir, and the state of its files when last read: a change is loaded once it
    has settled (see :meth:`PolicyReloader.poll_files`).

    The parent of worker processes keeps one, with the set last read from it, in step
    with its workers (the same triggers) and hands both to each worker it forks: a
    replacement starts with the set the others run, not with what the directory holds
    now, which they may have refused.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._fingerprint: Fingerprint = ()  # of the files last read, loaded or refused
        self._settling: Fingerprint | None = None  # a change seen, not yet loaded
        self._listing_problem: str | None = None  # why the last poll could not list it

    def load(self) -> PolicySet:
        """The directory's set; raises PoliciesError, for a directory that cannot be
        listed too (a set refused for its content is not read again until its files
        change).

        Files that changed while they were read are read again: a deploy's swap (a
        ConfigMap's ``..data`` link) that came between two files of a read makes a set
        the directory never held, part old and part new, run or refused for nothing.
        """
        for _ in range(READ_ATTEMPTS):
            try:
                seen = _fingerprint(self._directory)
                try:
                    read: PolicySet | PoliciesError = load_policy_set([self._directory])
                except PoliciesError as exc:
                    read = exc
                changed = _fingerprint(self._directory) != seen
            except OSError as exc:  # not the files' fault: the last read stays the reference
                raise PolicyLoadError([_unreadable(self._directory, exc)]) from None
            if not changed:
                self._fingerprint = seen
                if isinstance(read, PoliciesError):
                    raise read
                return read
        # Not the reference either: once the files settle, the poll reads them again.
        raise PolicyLoadError([PolicyIssue(
            str(self._directory), None, None,
            f"its files changed while read, {READ_ATTEMPTS} times in a row")])

    def settled(self) -> bool:
        """Whether the files changed since last read, then stayed unchanged for a poll.

        A checkout or a sync writes the files one by one: loading the first
        state seen could refuse a half-written set (and raise
        ``policy.load_failed`` to the admins for nothing). A directory that cannot be
        listed has not changed: it is logged once, not at each poll.
        """
        try:
            seen = _fingerprint(self._directory)
        except OSError as exc:
            problem = str(_unreadable(self._directory, exc))
            if problem != self._listing_problem:
                log.warning("policy_dir: %s; the running set stays", problem)
            self._listing_problem, self._settling = problem, None
            return False
        if self._listing_problem is not None:
            log.info("policy_dir %s: readable again", self._directory)
            self._listing_problem = None
        if seen == self._fingerprint:
            self._settling = None
            return False
        if seen == self._settling:
            self._settling = None
            return True
        self._settling = seen
        return False


@dataclass(frozen=True)
class RunningSet:
    """A set loaded from policy_dir and the files it was read from (see PolicyFiles)."""

    policy_set: PolicySet
    files: PolicyFiles


def save_last_good(spool_dir: Path, sources: Sources) -> None:
    """Replace the last good set whole. Its data reaches the disk before the rename, and
    the rename before this returns: after a power cut the file is the old set or the
    new one, never an empty file (the set a start falls back on without Postgres)."""
    target = spool_dir / LAST_GOOD_NAME
    temporary = target.with_suffix(f".{os.getpid()}.tmp")  # worker processes write it too
    # 0600 whatever the umask (0022 without systemd): the policies are the milter's.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        with open(os.open(temporary, flags, 0o600), "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # a file a killed writer left kept its mode
            json.dump(sources, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)  # no part of a set left on a full filesystem
        raise
    fsync_directory(spool_dir)


class LastGoodUnusable(Exception):
    """The last good set in spool_dir cannot be run: its message names the file and why."""


def load_last_good(spool_dir: Path) -> Sources | None:
    """The sources save_last_good kept; None when none are. LastGoodUnusable for a file
    that cannot be read or holds no set (emptied, damaged on disk, edited by hand): it
    failed a start in an outage of Postgres with a traceback, or as an outage."""
    path = spool_dir / LAST_GOOD_NAME
    try:
        data = json.loads(text := path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LastGoodUnusable(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise LastGoodUnusable(f"{path}: not UTF-8 text") from None
    except ValueError as exc:
        raise LastGoodUnusable(f"{path}: empty" if not text.strip()
                               else f"{path}: not JSON ({exc})") from None
    if not (isinstance(data, list) and all(
            isinstance(pair, list) and len(pair) == 2
            and all(isinstance(item, str) for item in pair) for pair in data)):
        raise LastGoodUnusable(f"{path}: not a list of [file name, policy text] pairs")
    return [(label, source) for label, source in data]


def last_good_set(spool_dir: Path) -> PolicySet | None:
    """The last good set, loaded; None when none is kept. LastGoodUnusable for one that
    does not load as well (a policy this version refuses)."""
    sources = load_last_good(spool_dir)
    if sources is None:
        return None
    try:
        return load_policy_set_from_sources(sources)
    except PoliciesError as exc:
        raise LastGoodUnusable(f"{spool_dir / LAST_GOOD_NAME}: {exc}") from None


NO_ACTIVE_POLICY = ("no policy is active in the database: every message is accepted "
                    "unchanged (and audited) until one is (postwarden-admin policy push)")


def _say_if_empty(policy_set: PolicySet) -> None:
    """A database with no active policy (a milter started before the first push, or every
    policy deactivated) gives a set that accepts every message unchanged: said, since a
    policy_dir without policies refuses the start."""
    if not policy_set.policies:
        log.warning("%s", NO_ACTIVE_POLICY)


class PolicyReloader:
    """Loads the first set, then reloads on SIGHUP, file changes or NOTIFY.

    A requested reload (:meth:`request`) runs inside ``around_request(reason)``:
    the milter tells systemd it reloads, and once the set is loaded or refused,
    that it is ready again.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        spool_dir: Path,
        policy_dir: Path | None,
        database_url: str | None,
        poll_seconds: float,
        loop_thread: LoopThread,
        instance_name: str,
        announce_failures: bool = True,
        around_request: Callable[[str], AbstractContextManager[None]] = (
            lambda _reason: nullcontext()),
    ) -> None:
        self._metrics = metrics
        self._spool_dir = spool_dir
        self._files = PolicyFiles(policy_dir) if policy_dir is not None else None
        self._dsn = database_url if policy_dir is None else None
        self._poll = poll_seconds
        self._loop_thread = loop_thread
        # Events go to the database even when policies come from files; of several
        # worker processes, one announces (each would refuse the same set).
        self._notifier = LoadFailedNotifier(database_url if announce_failures else None,
                                            instance_name, loop_thread, metrics)
        self._requested = threading.Event()
        # Reasons asked for, not yet acted on (SimpleQueue.put is reentrant: a signal
        # handler may run in the middle of another request()).
        self._requests: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._around_request = around_request
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="postwarden-reload",
                                        daemon=True)
        self._listen_task: asyncio.Task[None] | None = None
        self.holder: PolicyHolder | None = None
        self._refusing = False  # the last load was refused (policy_reload_failing)

    # --- loading -------------------------------------------------------------

    def _load(self) -> PolicySet:
        if self._files is not None:
            return self._files.load()
        sources = self._fetch_sources()
        policy_set = load_policy_set_from_sources(sources)
        self._keep_last_good(sources)
        return policy_set

    def _keep_last_good(self, sources: Sources) -> None:
        """Keep the set for a start without Postgres. A spool_dir that cannot take it (its
        filesystem full, say with an audit spool grown during an outage) refuses no set:
        it runs, and such a start falls back on the set kept before."""
        try:
            save_last_good(self._spool_dir, sources)
        except OSError as exc:
            log.warning("cannot keep the policy set in %s for a start without Postgres (%s); "
                        "it runs all the same", self._spool_dir, exc.strerror or exc)

    def _fetch_sources(self) -> Sources:
        assert self._dsn is not None  # noqa: S101 - database mode only
        dsn = self._dsn

        async def fetch() -> Sources:
            conn = await connect(dsn, connect_timeout=DB_TIMEOUT)
            try:
                return await fetch_active_sources(conn)
            finally:
                await conn.close()

        return self._loop_thread.submit(fetch()).result(DB_TIMEOUT * 2)

    def load_initial(self, running: RunningSet | None = None) -> PolicyHolder:
        """The first set: ``running`` when given (from the parent of worker processes),
        else loaded; raises PoliciesError (or a database error) when there is none.

        In database mode the last good set stands in for the database's when that cannot
        be read, or is refused: a restart (a worker's replacement) must not stop on an
        activation that the milter refused while running, and kept filtering through.
        """
        refused: PoliciesError | None = None
        try:
            if running is not None:
                self._files = running.files
                policy_set = running.policy_set
            else:
                policy_set = self._load()
        except (OSError, asyncpg.PostgresError, TimeoutError, PoliciesError) as exc:
            if self._dsn is None:
                raise
            policy_set = self._last_good_instead(exc)
            if isinstance(exc, PoliciesError):
                refused = exc
            else:
                log.warning("policy database unavailable (%s): using the last good policy "
                            "set", database_problem(exc))
        self.holder = PolicyHolder(policy_set)
        self._metrics.policy_reloads.labels("initial").inc()
        self._running(policy_set)
        log.info("policy set %s loaded", policy_set.content_hash[:12])
        _say_if_empty(policy_set)
        if refused is not None:  # after _running: the set that runs is not the database's
            self._refused("start", str(refused))
            self._notifier.notify("start", refused)
        return self.holder

    def _last_good_instead(self, exc: Exception) -> PolicySet:
        """The last good set, for the database's that ``exc`` says cannot be run; ``exc``
        raised when none is kept, or it is unusable (said: the start's own error then
        blames the database alone)."""
        try:
            policy_set = last_good_set(self._spool_dir)
        except LastGoodUnusable as unusable:
            log.error("cannot fall back on the last good policy set: %s", unusable)
            raise exc from None
        if policy_set is None:
            raise exc
        return policy_set

    def reload(self, reason: str) -> bool:
        assert self.holder is not None  # noqa: S101 - load_initial() ran first
        try:
            policy_set = self._load()
        except PoliciesError as exc:
            self._refused(reason, str(exc))
            self._notifier.notify(reason, exc)
            return False
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            self._refused(reason, database_problem(exc))
            return False
        except Exception as exc:  # a bug in loading refuses the set as any failure does
            log.exception("policy reload (%s): unexpected error while loading", reason)
            self._refused(reason, f"unexpected {type(exc).__name__} (logged above)")
            # Its event too; the traceback stays in the log (it may quote a policy).
            self._notifier.notify(reason, PoliciesError(
                f"unexpected {type(exc).__name__} while loading (see the milter's log)"))
            return False
        old = self.holder.current.content_hash
        if reason == "notify" and policy_set.content_hash == old and not self._refusing:
            # The NOTIFY a listener asks itself for once it listens (at start, after a
            # lost connection: an activation may have gone unheard) mostly finds the set
            # it runs. Counted and logged, it looked like a deploy at every start.
            log.debug("policy set %s unchanged (%s)", old[:12], reason)
            return True
        self.holder.swap(policy_set)
        self._metrics.policy_reloads.labels("ok").inc()
        self._running(policy_set)
        log.info("policy set reloaded (%s): %s -> %s", reason, old[:12],
                 policy_set.content_hash[:12])
        if policy_set.content_hash != old:
            _say_if_empty(policy_set)
        return True

    def _running(self, policy_set: PolicySet) -> None:
        self._refusing = False
        self._metrics.policy_reload_failing.set(0)
        self._metrics.policy_set.clear()
        self._metrics.policy_set.labels(policy_set.content_hash[:12]).set(1)

    def _refused(self, reason: str, detail: str) -> None:
        self._metrics.policy_reloads.labels("failed").inc()
        self._refusing = True
        self._metrics.policy_reload_failing.set(1)
        log.error("policy reload (%s) refused, keeping the running set: %s", reason, detail)

    # --- triggers ------------------------------------------------------------

    def request(self, reason: str = "signal") -> None:
        """Ask for a reload (SIGHUP handler, NOTIFY listener): cheap, any thread."""
        self._requests.put(reason)
        self._requested.set()

    def start(self) -> None:
        self._thread.start()
        if self._dsn is not None:
            self._loop_thread.submit(self._listen())

    def stop(self) -> None:
        self._stopping.set()
        self._requested.set()
        task = self._listen_task
        if task is not None:
            self._loop_thread.loop.call_soon_threadsafe(task.cancel)
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                requested = self._requested.wait(self._poll if self._poll > 0 else None)
                if self._stopping.is_set():
                    return
                if requested:
                    self._requested.clear()
                    self._reload_requested()
                elif self._files is not None:
                    self.poll_files()
            except Exception:  # a watcher that died would leave reloads off for good
                log.exception("policy watcher: unexpected error, still watching")
                self._metrics.errors.labels("policy_watcher").inc()
                # An error that comes back at once (in the wait itself) must not spin.
                self._stopping.wait(WATCH_ERROR_PAUSE)

    def _reload_requested(self) -> None:
        """One reload for the requests made since the last. A signal's is announced
        (around_request): its sender waits for the READY=1 that ends it, so a NOTIFY
        arriving before the reload starts must not make it a silent one."""
        # The only reader: qsize() items are there to take.
        reasons = {self._requests.get_nowait() for _ in range(self._requests.qsize())}
        if not reasons:  # taken by the reload of an earlier wake-up
            return
        reason = "signal" if "signal" in reasons else reasons.pop()
        with self._around_request(reason):
            self.reload(reason)

    def poll_files(self) -> None:
        """Reload once the directory changed and then stayed unchanged for a whole poll."""
        assert self._files is not None  # noqa: S101 - file mode only
        if self._files.settled():
            self.reload("file change")

    async def _listen(self) -> None:
        """Hold a LISTEN connection; reconnect (and reload, a NOTIFY may be lost) on failure."""
        assert self._dsn is not None  # noqa: S101 - database mode only
        # The loop keeps only weak references to tasks; this one mostly waits on itself.
        self._listen_task = asyncio.current_task()
        while True:
            try:
                conn = await connect(self._dsn, connect_timeout=DB_TIMEOUT)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                await asyncio.sleep(LISTEN_RETRY)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            silent = False
            try:
                await conn.add_listener(POLICY_CHANNEL, lambda *_args: self.request("notify"))
                self.request("notify")
                silent = not await _until_lost(conn, lost)
            finally:
                if silent:  # a close would wait for a server that does not answer
                    conn.terminate()
                else:
                    await conn.close(timeout=DB_TIMEOUT)
            await asyncio.sleep(LISTEN_RETRY)


async def _until_lost(conn: asyncpg.Connection, lost: asyncio.Event) -> bool:
    """Wait until ``conn`` is closed (True), or does not answer a ping within
    DB_TIMEOUT (False)."""
    while not lost.is_set():
        try:
            await asyncio.wait_for(lost.wait(), LISTEN_PING_SECONDS)
        except TimeoutError:
            try:
                await asyncio.wait_for(conn.execute("SELECT 1"), DB_TIMEOUT)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                log.warning("the policy LISTEN connection does not answer: reconnecting")
                return False
    return True
