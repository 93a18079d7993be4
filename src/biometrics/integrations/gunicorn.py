"""gunicorn: the exporter as a thread of the master, every worker emitting from its fork on.

Why in the master: it is the one process that lives as long as the service, sees every worker
come and go, and is the last to stop, so it can read each worker's final emission (a recycled
one's under ``--max-requests`` too) before it writes its own final snapshot.  No sidecar to
deploy, supervise or order at shutdown.

Why the emission starts in the master too (``when_ready``, before the first worker is forked),
not in ``post_fork``: ``emit_every`` is fork-safe, so each forked worker gets its own prefix
(``<job>.<host>.<worker pid>.``), its own thread, and counts from the fork on.  That holds with
or without ``--preload``; with it, counts the app made at import in the master are not repeated
by every worker, which a fresh emission per worker would do.  A worker's emission stops in
``worker_exit`` (its final emission and ``# END``), whatever made it exit: ``--max-requests``,
a timeout's SIGABRT, a HUP, the master's shutdown.

Nothing here imports gunicorn: the hooks take its arbiter and workers as they come.  The hooks
never raise: a failure is logged on gunicorn's error log and the app is served without metrics.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..collector import Collector, default_collector
from ..errors import InvalidValueError
from ..prometheus import Options
from ..runtime import Emission, emit_every, ensure_spool, running_emissions

__all__ = [
    "DEFAULT_LISTEN",
    "GunicornMetrics",
    "MasterExporter",
    "Settings",
]

DEFAULT_LISTEN = "127.0.0.1:9464"
"""Loopback, the port ``biometrics serve`` takes: nothing is exposed unless asked for."""
SPOOL_MODE = 0o700
"""A spool we create is private to the user the workers run as: labels may carry anything."""
DRAIN_SECONDS = 10.0
"""At shutdown, how long the exporter may take to consume the final segments."""
_START_SECONDS = 10.0
_JOIN_SECONDS = 30.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class _Log(Protocol):
    def info(self, msg: str, *args: object) -> None: ...
    def warning(self, msg: str, *args: object) -> None: ...
    def error(self, msg: str, *args: object) -> None: ...


@dataclass(frozen=True, slots=True)
class Settings:
    """What the environment says, read once at start-up (never at import)."""

    spool: str | None
    """``BIOMETRICS_SPOOL``; None: a private temporary directory, removed at exit."""
    job: str
    """``BIOMETRICS_JOB``: the first part of every segment name (the source)."""
    interval: float
    """``BIOMETRICS_INTERVAL`` seconds between emissions (10)."""
    listen: tuple[str, int] | None
    """``BIOMETRICS_LISTEN`` host and port of /metrics; None (``off``): no exporter."""
    forget_after_ms: int | None
    """``BIOMETRICS_FORGET_AFTER`` (1h): sources silent that long leave the store, their
    counts kept, so recycled workers do not pile up; None (``off``): never."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, job: str) -> Settings:
        """The settings ``environ`` (default ``os.environ``) gives; ``job`` when it names none.

        Raises :class:`~biometrics.errors.InvalidValueError` naming the variable and what it
        takes.
        """
        env = os.environ if environ is None else environ
        spool = env.get("BIOMETRICS_SPOOL") or None
        forget = env.get("BIOMETRICS_FORGET_AFTER", "1h").strip()
        interval = _seconds("BIOMETRICS_INTERVAL", env.get("BIOMETRICS_INTERVAL", "10"))
        if interval <= 0:
            raise InvalidValueError(
                f"BIOMETRICS_INTERVAL={interval:g}: give positive seconds, e.g. 10"
            )
        forget_after = None if forget == "off" else _seconds("BIOMETRICS_FORGET_AFTER", forget)
        if forget_after is not None and forget_after <= 2 * interval:
            # A live worker silent that long is forgotten between two of its emissions, and
            # its next one is counted again from its current value: every count doubled.
            raise InvalidValueError(
                f"BIOMETRICS_FORGET_AFTER={forget!r}: must be longer than two emission "
                f"intervals (BIOMETRICS_INTERVAL={interval:g}s), or live workers are forgotten "
                "and counted again; give e.g. 1h, or off"
            )
        return cls(
            spool=os.path.abspath(spool) if spool else None,
            job=env.get("BIOMETRICS_JOB") or job,
            interval=interval,
            listen=parse_listen(env.get("BIOMETRICS_LISTEN", DEFAULT_LISTEN)),
            forget_after_ms=None if forget_after is None else int(forget_after * 1000),
        )


def _seconds(name: str, text: str) -> float:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidValueError(
            f"{name}={text!r}: give seconds or a duration such as 500ms, 10s, 1h"
        )
    return float(match[1]) * _UNITS[match[2]]


def parse_listen(text: str) -> tuple[str, int] | None:
    """``HOST:PORT``, ``:PORT`` (all interfaces), ``[V6]:PORT``, or ``off`` (None)."""
    text = text.strip()
    if text == "off":
        return None
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, colon, port = text.rpartition(":")
        if not colon or ":" in host:
            host, port = "", ""
    if not port.isdigit() or int(port) > 65535:
        raise InvalidValueError(f"BIOMETRICS_LISTEN={text!r}: give HOST:PORT, e.g. "
                                f"{DEFAULT_LISTEN}, :9464 (all interfaces), [::1]:9464, "
                                "or off")  # fmt: skip
    return host, int(port)


def _give(path: str, uid: int | None, gid: int | None) -> None:
    """Hand a directory we made to the workers' user and group (gunicorn's ``user``/``group``)."""
    want_uid = -1 if uid is None or uid == os.geteuid() else uid
    want_gid = -1 if gid is None or gid == os.getegid() else gid
    if want_uid != -1 or want_gid != -1:
        os.chown(path, want_uid, want_gid)


def _job_part(spool: str, job: str) -> str:
    """What every segment of ``job`` on this host starts with (``web.<host>.``): to drain."""
    prefix = os.path.basename(os.fspath(Options.per_process(spool, job, pid=0).prefix))
    return prefix.removesuffix("0.")


def _writer_alive(name: str, job_part: str) -> bool:
    """Whether segment ``name`` (``<job_part><pid>.<ms>.prom``) is another live process's.

    At ``on_exit`` every worker of this master is gone, so such a writer is not ours: another
    master on the spool (the new one of a USR2 upgrade), whose open segments stay open.
    """
    pid = name[len(job_part) :].partition(".")[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (EPERM: another user's)
    return True


class MasterExporter:
    """``biometrics serve`` as a daemon thread of this process, stopped after a drain.

    ``serve`` installs no signal handler off the main thread, so the host keeps its own.
    """

    def __init__(
        self, spool: str, host: str, port: int, *, forget_after_ms: int | None = None
    ) -> None:
        from ..exporter import ExporterOptions  # noqa: PLC0415 - the store needs no h11

        self.options = ExporterOptions(spool, forget_after_ms=forget_after_ms)
        self.host = host
        self.port = port
        """The port asked for; once listening, the one bound (0 asks for a free one)."""
        self.error: BaseException | None = None
        """Why the exporter stopped or never started, if it did not stop when asked."""
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._sockets: list[tuple[int, int]] = []
        """The listening sockets' (fd, inode): what a forked child must not keep."""
        self._serving = False

    def start(self, timeout: float = _START_SECONDS) -> bool:
        """Start the thread; True once it listens, False if it failed (see ``error``)."""
        from ..exporter import serve  # noqa: PLC0415 - needs the exporter extra (h11)

        def listening(port: int) -> None:
            self.port = port
            self._listening.set()

        def run() -> None:
            try:
                serve(self.options, self.host, self.port, stop=self._stop,
                      on_listening=listening, create=True)  # fmt: skip
            except BaseException as e:  # the host must never see it
                self.error = e
            finally:
                self._listening.set()

        self._thread = threading.Thread(target=run, name="biometrics-exporter", daemon=True)
        self._thread.start()
        self._listening.wait(timeout)
        if self.error is not None or not self._thread.is_alive():
            return False
        self._sockets = _listening_sockets(self.port)
        self._serving = True
        method = weakref.WeakMethod(self._close_inherited)
        os.register_at_fork(after_in_child=lambda: _call(method))
        return True

    def _close_inherited(self) -> None:
        """In a forked child (a worker): close the exporter's port, claims and state files.

        Kept open, a worker would hold the port after the master died, and the lock of a
        segment the exporter had claimed at the fork, or of its state, for as long as it lives.
        The child's own segments (its pid in the name) are left alone.
        """
        if not self._serving:
            return
        self._serving = False
        for fd, inode in self._sockets:
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_ino == inode:
                    os.close(fd)
        mine = f".{os.getpid()}."
        roots = {os.path.realpath(self.options.spool),
                 os.path.realpath(os.path.dirname(self.options.state_path))}  # fmt: skip
        for fd, target in _open_files():
            inside = any(target == root or target.startswith(root + os.sep) for root in roots)
            if inside and mine not in os.path.basename(target):
                with contextlib.suppress(OSError):
                    os.close(fd)

    @property
    def alive(self) -> bool:
        """Whether the exporter thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def drain(self, job_part: str, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait until no segment named ``job_part...`` is left in the spool; False if some were.

        The writers must have stopped: what they finished, the exporter consumes within a poll.
        Segments of live writers other than this process are not waited for (they stay open).
        """
        deadline = time.monotonic() + timeout
        while any(name.startswith(job_part) and name.endswith(".prom")
                  and not _writer_alive(name, job_part)
                  for name in _listing(self.options.spool)):  # fmt: skip
            if not self.alive or time.monotonic() >= deadline:
                return False
            time.sleep(self.options.poll_interval)
        return True

    def stop(self, timeout: float = _JOIN_SECONDS) -> bool:
        """Stop ingesting, write the final snapshot; False if the thread is still running."""
        self._serving = False
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self.alive


def _call(method: weakref.WeakMethod[Any]) -> None:
    bound = method()
    if bound is not None:
        bound()


def _open_files() -> list[tuple[int, str]]:
    """Our open descriptors and what each names (Linux ``/proc``; elsewhere none)."""
    found = []
    for name in _listing("/proc/self/fd"):
        with contextlib.suppress(OSError, ValueError):
            found.append((int(name), os.readlink(f"/proc/self/fd/{name}")))
    return found


def _listening_sockets(port: int) -> list[tuple[int, int]]:
    """(fd, inode) of each socket of this process listening on ``port``."""
    found = []
    for fd, target in _open_files():
        if not target.startswith("socket:"):
            continue
        with contextlib.suppress(OSError, ValueError):
            st = os.fstat(fd)
            if not stat.S_ISSOCK(st.st_mode):
                continue
            with socket.socket(fileno=os.dup(fd)) as probe:
                address = probe.getsockname()
                if (
                    isinstance(address, tuple)
                    and address[1] == port
                    and probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                ):
                    found.append((fd, st.st_ino))
    return found


def _listing(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def other_emissions(mine: Emission | None, collector: Collector) -> list[Emission]:
    """Emissions of ``collector`` running here besides ``mine``: an app that starts its own.

    Two emissions of one collector in one process are two sources with the same counts, which
    ``serve`` adds up: every hook here adopts the app's emission rather than start a second.
    """
    return [e for e in running_emissions() if e is not mine and e.collector is collector]


class GunicornMetrics:
    """gunicorn server hooks: exporter and emission in the master, emission in each worker.

    Bound methods are the hooks (``when_ready = metrics.when_ready``); :mod:`biometrics.gunicorn`
    exports those of one default instance.  ``collector`` is what the processes emit (default:
    the default collector, where the app's sensors are).
    """

    def __init__(self, collector: Collector | None = None, *, job: str = "gunicorn") -> None:
        self.collector = collector if collector is not None else default_collector()
        self.job = job
        self.settings: Settings | None = None
        self.spool: str | None = None
        self.temporary = False
        """Whether ``spool`` is the private directory made for lack of ``BIOMETRICS_SPOOL``."""
        self.emission: Emission | None = None
        self.exporter: MasterExporter | None = None
        self._master_pid = 0

    # -- hooks (each catches its own failures) ------------------------------------------

    def when_ready(self, server: Any) -> None:
        """In the master, before the first fork: spool, exporter thread, emission."""
        log: _Log = server.log
        try:
            self._start(server, log)
        except Exception as e:  # the master must never die of its metrics
            log.error("biometrics: not started (%s); serving without metrics", e)

    def post_worker_init(self, worker: Any) -> None:
        """In a worker, the app loaded: if it started an emission of its own, ours steps aside."""
        try:
            if self.emission is not None and other_emissions(self.emission, self.collector):
                worker.log.warning("biometrics: the app runs emit_every itself; ours stops in "
                                   "this worker, so nothing is counted twice")  # fmt: skip
                self.emission.stop()
        except Exception as e:
            worker.log.warning("biometrics: post_worker_init failed: %s", e)

    def worker_exit(self, server: Any, worker: Any) -> None:
        """In an exiting worker: its final emission, and ``# END`` (the source stopped cleanly)."""
        try:
            if self.emission is not None and os.getpid() != self._master_pid:
                self.emission.stop()
        except Exception as e:
            server.log.warning("biometrics: final emission of worker %s failed: %s", os.getpid(), e)

    def on_exit(self, server: Any) -> None:
        """In the master, every worker gone: final emission, drain, final snapshot."""
        try:
            self._stop(server.log)
        except Exception as e:
            server.log.error("biometrics: stop failed: %s", e)

    # -- the work ---------------------------------------------------------------------------

    def _start(self, server: Any, log: _Log) -> None:
        if self._master_pid == os.getpid():
            return  # when_ready again in the same master: already running
        self._master_pid = os.getpid()
        settings = self.settings = Settings.from_env(job=self.job)
        cfg = getattr(server, "cfg", None)
        uid, gid = getattr(cfg, "uid", None), getattr(cfg, "gid", None)
        if settings.spool is None:
            self.spool = tempfile.mkdtemp(prefix=f"biometrics-{settings.job}-")
            self.temporary = True
            _give(self.spool, uid, gid)
        else:
            self.spool = settings.spool
            ensure_spool(self.spool, SPOOL_MODE, uid=uid, gid=gid)
        atexit.register(self._at_exit, log)
        if settings.listen is not None:
            self._start_exporter(self.spool, settings, log)
        others = other_emissions(None, self.collector)
        if others:
            log.warning("biometrics: an emission already runs in the master (the app's, with "
                        "--preload); the workers inherit it, no second one started")  # fmt: skip
            self.emission = others[0]
            return
        options = Options.per_process(self.spool, settings.job)
        self.emission = emit_every(settings.interval, collector=self.collector, options=options)

    def _start_exporter(self, spool: str, settings: Settings, log: _Log) -> None:
        assert settings.listen is not None
        host, port = settings.listen
        exporter = MasterExporter(spool, host, port, forget_after_ms=settings.forget_after_ms)
        try:
            started = exporter.start()
        except ImportError as e:
            log.error("biometrics: the exporter needs the 'exporter' extra (%s): pip install "
                      "'biometrics[exporter]'; the workers still emit to %s", e, spool)  # fmt: skip
            return
        if not started:
            log.error("biometrics: exporter not started on %s:%s (%s); the workers still emit "
                      "to %s", host, port, exporter.error, spool)  # fmt: skip
            exporter.stop()
            return
        self.exporter = exporter
        shown = f"[{host}]" if ":" in host else host or "*"
        log.info("biometrics: exporter on http://%s:%s/metrics, spool %s", shown, exporter.port,
                 spool)  # fmt: skip

    def _stop(self, log: _Log) -> None:
        if self._master_pid != os.getpid():
            return
        self._master_pid = -1  # once
        if self.emission is not None:
            self.emission.stop()
        exporter, self.exporter = self.exporter, None
        if exporter is not None and self.spool is not None and self.settings is not None:
            if not exporter.drain(_job_part(self.spool, self.settings.job)):
                log.warning("biometrics: segments left in %s at shutdown: read at the next "
                            "start", self.spool)  # fmt: skip
            if not exporter.stop():
                log.error("biometrics: the exporter did not stop within %ss", _JOIN_SECONDS)
            elif exporter.error is not None:
                log.error("biometrics: the exporter had stopped: %s", exporter.error)
        if self.temporary and self.spool is not None:
            shutil.rmtree(self.spool, ignore_errors=True)

    def _at_exit(self, log: _Log) -> None:
        """A master leaving without ``on_exit`` (gunicorn's own crash) still ends cleanly."""
        with contextlib.suppress(Exception):
            self._stop(log)
