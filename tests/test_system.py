import gc
import os
import resource
import sys
import time

from biometrics import Collector, Counter, Gauge, RuntimeSensors, SystemSensors
from biometrics.system import RUSAGE_FIELDS, proc_usage, rusage_values


def burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_rusage_counters_follow_getrusage_in_microseconds() -> None:
    """CPU burnt between two polls shows in utime+stime in microseconds, agrees with getrusage,
    and every rusage field (plus the error counter) is a sensor in a fixed order.
    """
    sensors = SystemSensors()

    def cpu() -> float:
        return sensors.counters["utime"].read() + sensors.counters["stime"].read()

    sensors.poll()
    before = cpu()
    burn_cpu(0.05)
    sensors.poll()
    after = cpu()
    assert after - before >= 45_000  # 50 ms of CPU, in µs
    usage = rusage_values(resource.getrusage(resource.RUSAGE_SELF))
    assert abs(usage["utime"] + usage["stime"] - after) < 1_000_000
    assert set(sensors.counters) == set(RUSAGE_FIELDS)
    assert [c.label for c in sensors.sensors()] == [
        *(f"biometrics.sys.{f}" for f in RUSAGE_FIELDS),
        "biometrics.sys.errors",
    ]


def test_counters_never_go_backwards() -> None:
    """A lower reading (a restarted source) leaves the counters where they were; a higher one moves
    them up to it.
    """
    sensors = SystemSensors(prefix="x.")
    sensors.update(dict.fromkeys(RUSAGE_FIELDS, 100))
    sensors.update(dict.fromkeys(RUSAGE_FIELDS, 40))  # a restarted source
    assert all(c.read() == 100 for c in sensors.counters.values())
    sensors.update(dict.fromkeys(RUSAGE_FIELDS, 150))
    assert all(c.read() == 150 for c in sensors.counters.values())


def test_a_failed_reading_counts_in_errors_and_never_raises() -> None:
    """getrusage refusing the ``who`` bumps the error counter once and leaves every counter at 0."""
    sensors = SystemSensors(who=-12345)  # not a valid `who`
    sensors.poll()
    assert sensors.errors.read() == 1
    assert all(c.read() == 0 for c in sensors.counters.values())


def test_registering_twice_on_one_collector_is_harmless() -> None:
    """A second SystemSensors on the same collector adds no duplicate sensor."""
    collector = Collector()
    SystemSensors().register(collector)
    SystemSensors().register(collector)
    labels = [s.label for s in collector.sensors()]
    assert labels.count("biometrics.sys.utime") == 1


def test_runtime_sensors_read_the_process() -> None:
    """Memory, fds and their limit, threads, start time, gc collections and the interpreter info
    match this process, and a gc run between two polls counts exactly once.
    """
    sensors = RuntimeSensors()
    gc.collect()
    sensors.poll()
    assert sensors.errors.read() == 0
    assert sensors.resident.read() > 1_000_000
    assert sensors.virtual.read() >= sensors.resident.read()
    assert 0 < sensors.open_fds.read() <= sensors.max_fds.read()
    assert sensors.max_fds.read() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert sensors.threads.read() >= 1
    assert time.time() - 3600 * 24 < sensors.start_time.read() <= time.time()
    collections = sensors.gc[("collections", "2")]
    before = collections.read()
    assert before >= 1
    gc.collect()
    sensors.poll()
    assert collections.read() == before + 1
    assert dict(sensors.info.labels)["version"].startswith(f"{sys.version_info.major}.")
    assert sensors.info.read() == 1
    assert all(isinstance(s, Counter) for s in sensors.gc.values())


def test_proc_usage_reads_a_running_process() -> None:
    """proc_usage of our own pid reads the CPU time and the fault and context-switch fields."""
    usage = proc_usage(os.getpid())
    assert usage["utime"] > 0 and usage["nvcsw"] >= 0
    assert set(usage) >= {"utime", "stime", "minflt", "majflt", "nvcsw", "nivcsw"}


def test_runtime_gauges_declare_how_a_fleet_adds_up() -> None:
    """Memory, fds, threads sum; the fd limit is the max, the start the min; all live only."""
    sensors = RuntimeSensors()
    declared = {g.label: g.merge_declaration for g in sensors.sensors() if isinstance(g, Gauge)}
    assert declared == {
        "process.resident_memory_bytes": "sum live",
        "process.virtual_memory_bytes": "sum live",
        "process.open_fds": "sum live",
        "process.threads": "sum live",
        "process.max_fds": "max live",
        "process.start_time_seconds": "min live",
        "python.info": "",  # one value per interpreter version: serve's default applies
    }
