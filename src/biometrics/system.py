"""System sensors: ``getrusage`` counters (the Rust ``biometrics_sys`` port) and runtime vitals.

Both kinds are pull sensors: nothing moves until ``poll()``, which :func:`emit_every
<biometrics.runtime.emit_every>` calls before each emission.  ``poll()`` never raises; a
reading that cannot be taken is counted in ``biometrics.sys.errors`` and the rest still update.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Mapping
from typing import TypeVar

from .collector import Collector
from .sensors import Counter, Gauge, Sensor

__all__ = ["RUSAGE_FIELDS", "RuntimeSensors", "SystemSensors", "proc_usage", "rusage_values"]

RUSAGE_FIELDS = ("utime", "stime", "minflt", "majflt", "inblock", "oublock", "nvcsw", "nivcsw")
"""The ``biometrics.sys.*`` counters, in the Rust crate's order."""

_HELP = {
    "utime": "User CPU time, in microseconds.",
    "stime": "System CPU time, in microseconds.",
    "minflt": "Page faults served without I/O.",
    "majflt": "Page faults that needed I/O.",
    "inblock": "Block input operations.",
    "oublock": "Block output operations.",
    "nvcsw": "Voluntary context switches.",
    "nivcsw": "Involuntary context switches.",
}


def rusage_values(usage: resource.struct_rusage) -> dict[str, int]:
    """A ``getrusage`` result as integers, with CPU times in microseconds."""
    return {
        "utime": round(usage.ru_utime * 1e6),
        "stime": round(usage.ru_stime * 1e6),
        "minflt": usage.ru_minflt,
        "majflt": usage.ru_majflt,
        "inblock": usage.ru_inblock,
        "oublock": usage.ru_oublock,
        "nvcsw": usage.ru_nvcsw,
        "nivcsw": usage.ru_nivcsw,
    }


class SystemSensors:
    """Counters ``<prefix>utime`` .. ``<prefix>nivcsw`` and ``<prefix>errors``.

    The counters advance by the increase of each absolute value, so they never go backwards
    even when the source does (a forked child's usage starts again from zero).
    """

    def __init__(self, prefix: str = "biometrics.sys.", *, who: int = resource.RUSAGE_SELF) -> None:
        self.counters = {f: Counter(prefix + f, help=_HELP[f]) for f in RUSAGE_FIELDS}
        self.errors = Counter(prefix + "errors", help="System readings that failed.")
        self._who = who
        self._last: dict[str, int] = dict.fromkeys(RUSAGE_FIELDS, 0)
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def sensors(self) -> list[Sensor]:
        """Every sensor of the set."""
        return [*self.counters.values(), self.errors]

    def register(self, collector: Collector) -> SystemSensors:
        """Register the counters (ones already registered there are left as they are)."""
        collector.register_missing(*self.sensors())
        return self

    def update(self, values: Mapping[str, int]) -> None:
        """Advance each counter to ``values`` (absolute readings); lower readings add nothing."""
        with self._lock:
            pid = os.getpid()
            if pid != self._pid and self._who == resource.RUSAGE_SELF:
                self._last = dict.fromkeys(RUSAGE_FIELDS, 0)
                self._pid = pid
            _advance(self.counters, self._last, values)

    def poll(self) -> None:
        """Read ``getrusage`` and update; a failure counts in ``errors``."""
        try:
            values = rusage_values(resource.getrusage(self._who))
        except (OSError, ValueError):
            self.errors.click()
            return
        self.update(values)


K = TypeVar("K")


def _advance(counters: Mapping[K, Counter], last: dict[K, int], values: Mapping[K, int]) -> None:
    """Move each counter on by how much its absolute reading rose; a drop adds nothing."""
    for key, value in values.items():
        before = last.get(key, 0)
        if value > before and key in counters:
            counters[key].count(value - before)
            last[key] = value


def _proc_stat(pid: int | str = "self") -> list[str]:
    """``/proc/<pid>/stat`` from field 3 (state) on: the name may hold spaces and parentheses."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        return f.read().rsplit(")", 1)[1].split()


def _proc_status(pid: int | str = "self") -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        return dict(line.split(":", 1) for line in f if ":" in line)


def proc_usage(pid: int) -> dict[str, int]:
    """``pid``'s usage so far from ``/proc``, in ``getrusage`` units (µs, counts, 512 B blocks).

    Counts the process and its waited-for children, as ``getrusage`` would report it after a
    wait.  Raises ``OSError`` where there is no ``/proc`` or the process is gone.
    """
    fields = _proc_stat(pid)
    # fields[0] is field 3 of proc(5): minflt is field 10, utime 14, cstime 17.
    minflt, cminflt, majflt, cmajflt, utime, stime, cutime, cstime = (int(x) for x in fields[7:15])
    tick = 1_000_000 / os.sysconf("SC_CLK_TCK")
    status = _proc_status(pid)
    usage = {
        "utime": round((utime + cutime) * tick),
        "stime": round((stime + cstime) * tick),
        "minflt": minflt + cminflt,
        "majflt": majflt + cmajflt,
        "nvcsw": int(status["voluntary_ctxt_switches"]),
        "nivcsw": int(status["nonvoluntary_ctxt_switches"]),
    }
    with contextlib.suppress(OSError):  # /proc/<pid>/io may be refused (ptrace rules)
        with open(f"/proc/{pid}/io", encoding="ascii") as f:
            io = {k: int(v) for k, v in (line.split(":", 1) for line in f if ":" in line)}
        usage["inblock"] = io["read_bytes"] // 512
        usage["oublock"] = io["write_bytes"] // 512
    return usage


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _start_time() -> float:
    """The process's start, in epoch seconds, as the kernel recorded it (Linux)."""
    return _boot_time() + int(_proc_stat()[19]) / os.sysconf("SC_CLK_TCK")


class RuntimeSensors:
    """What ``prometheus_client``'s process, platform and GC collectors show, by the same names.

    ``process_resident_memory_bytes``, ``process_virtual_memory_bytes``, ``process_open_fds``,
    ``process_max_fds``, ``process_threads``, ``process_start_time_seconds``,
    ``python_gc_{collections,objects_collected,objects_uncollectable}_total{generation}`` and
    ``python_info``.  Memory, threads and fds come from ``/proc`` and stay 0 where there is none.

    The gauges declare how ``biometrics serve`` merges them across the processes of a spool,
    so a fleet reads as one program: memory, open fds and threads add up (``sum``), the fd
    limit is the highest (``max``), the start time the earliest (``min``); all ``live_only``,
    since a process that has stopped holds no memory, fds or threads.
    """

    def __init__(self) -> None:
        def g(label: str, merge: str, help: str) -> Gauge:
            return Gauge(label, help=help, merge=merge, live_only=True)

        self.resident = g(
            "process.resident_memory_bytes", "sum", help="Resident memory size in bytes."
        )
        self.virtual = g(
            "process.virtual_memory_bytes", "sum", help="Virtual memory size in bytes."
        )
        self.open_fds = g("process.open_fds", "sum", help="Number of open file descriptors.")
        self.max_fds = g("process.max_fds", "max", help="Maximum number of open file descriptors.")
        self.threads = g("process.threads", "sum", help="Number of OS threads in the process.")
        self.start_time = g(
            "process.start_time_seconds", "min", help="Start time of the process since unix epoch."
        )
        self.errors = Counter("biometrics.runtime.errors", help="Runtime readings that failed.")
        generations = [str(i) for i in range(len(gc.get_stats()))]
        gc_help = {
            "collections": "Number of times this generation was collected.",
            "collected": "Objects collected during gc.",
            "uncollectable": "Uncollectable objects found during GC.",
        }
        names = {
            "collections": "python.gc.collections_total",
            "collected": "python.gc.objects_collected_total",
            "uncollectable": "python.gc.objects_uncollectable_total",
        }
        self.gc = {
            (key, gen): Counter(names[key], labels={"generation": gen}, help=gc_help[key])
            for key in names
            for gen in generations
        }
        self._gc_last = dict.fromkeys(self.gc, 0)
        version = sys.version_info
        self.info = Gauge(
            "python.info",
            labels={
                "implementation": platform.python_implementation(),
                "major": str(version.major),
                "minor": str(version.minor),
                "patchlevel": str(version.micro),
                "version": platform.python_version(),
            },
            help="Python platform information.",
        )
        self.info.set(1)
        self._page = resource.getpagesize()
        self._pid = 0
        self._lock = threading.Lock()

    def sensors(self) -> list[Sensor]:
        """Every sensor of the set."""
        fixed: list[Sensor] = [
            self.resident, self.virtual, self.open_fds, self.max_fds, self.threads,
            self.start_time, self.info, self.errors,
        ]  # fmt: skip
        return [*fixed, *self.gc.values()]

    def register(self, collector: Collector) -> RuntimeSensors:
        """Register the sensors (ones already registered there are left as they are)."""
        collector.register_missing(*self.sensors())
        return self

    def poll(self) -> None:
        """Refresh every reading it can; each failure counts in ``errors``."""
        with self._lock:
            for step in (self._memory, self._fds, self._threads, self._start, self._gc):
                try:
                    step()
                except (OSError, ValueError, IndexError):
                    self.errors.click()

    def _memory(self) -> None:
        if not os.path.exists("/proc/self/statm"):
            return
        with open("/proc/self/statm", encoding="ascii") as f:
            size, resident = f.read().split()[:2]
        self.virtual.set(int(size) * self._page)
        self.resident.set(int(resident) * self._page)

    def _fds(self) -> None:
        self.max_fds.set(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        for where in ("/proc/self/fd", "/dev/fd"):
            if os.path.isdir(where):
                self.open_fds.set(len(os.listdir(where)))
                return

    def _threads(self) -> None:
        if os.path.exists("/proc/self/status"):
            self.threads.set(int(_proc_status()["Threads"]))
        else:
            self.threads.set(threading.active_count())

    def _start(self) -> None:
        if self._pid != os.getpid():  # first poll, or first in a forked child
            self._pid = os.getpid()
            if os.path.exists("/proc/self/stat"):
                self.start_time.set(_start_time())
            else:
                self.start_time.set(time.time())

    def _gc(self) -> None:
        readings = {
            (key, str(gen)): stats[key]
            for gen, stats in enumerate(gc.get_stats())
            for key in ("collections", "collected", "uncollectable")
        }
        _advance(self.gc, self._gc_last, readings)
