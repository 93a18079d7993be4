"""Gauge merging declared where the gauge is made: Gauge(merge=, live_only=) -> # MERGE / # END
lines in segments -> the parser -> serve's store, and the command line's --gauge over it all."""

from pathlib import Path

from biometrics import Collector, Counter, Gauge, RuntimeSensors
from biometrics.exporter import MergeRules, Store
from biometrics.prometheus import Options, SegmentEmitter, SlashMetrics, parse, source_of
from biometrics.runtime import Emission


def write(
    spool: Path, prefix: str, now_ms: int, *sensors: Counter | Gauge, end: bool = False
) -> None:
    """One process's emission of ``sensors`` into its own segment; ``end``: it then stops."""
    collector = Collector()
    for sensor in sensors:
        collector.register(sensor)
    with SegmentEmitter(Options(prefix=spool / prefix)) as emitter:
        collector.emit(emitter, now_ms)
        if end:
            emitter.end()


def ingest(store: Store, spool: Path) -> None:
    """Every segment in the spool, each source's in time order, as serve takes them."""
    for path in sorted(spool.glob("*.prom")):
        found = source_of(path.name)
        assert found is not None
        with open(path, "rb") as f:
            parsed = parse(f, path=str(path))
            store.ingest_segment(found[0], parsed, found[1])
        assert parsed.malformed == []


def page(store: Store) -> dict[str, float]:
    """The page's samples, by series."""
    lines = store.render().splitlines()
    return {k: float(v) for k, v in (ln.rsplit(" ", 1) for ln in lines if ln[:1] != "#")}


def gauge(value: float, label: str = "queue.depth", **declared: object) -> Gauge:
    g = Gauge(label, **declared)  # type: ignore[arg-type]
    g.set(value)
    return g


def test_a_declared_sum_adds_two_processes_without_any_gauge_rule(tmp_path: Path) -> None:
    """The segment says # MERGE before TYPE; serve sums with no --gauge; pages never show it."""
    write(tmp_path, "web.h.1.", 1000, gauge(3, merge="sum"))
    write(tmp_path, "web.h.2.", 1000, gauge(4, merge="sum"))
    text = (tmp_path / "web.h.1.1000.prom").read_text()
    assert "# MERGE queue_depth sum\n# TYPE queue_depth gauge\nqueue_depth 3.0 1000\n" in text
    assert text.count("# MERGE") == 1  # once per family per segment, like TYPE
    store = Store()
    ingest(store, tmp_path)
    assert page(store)["queue_depth"] == 7.0
    assert "MERGE" not in store.render() + store.render(openmetrics=True)
    slash = SlashMetrics()  # OpenMetrics allows no other comments: pages never carry it
    slash.emit_gauge(gauge(3, merge="sum", help="Queued."), 1000)
    assert "MERGE" not in slash.render() + slash.render_openmetrics()


def test_the_command_line_pattern_wins_but_the_default_mode_does_not(tmp_path: Path) -> None:
    """--gauge PATTERN=MODE overrides the writer; --gauge-mode only covers undeclared gauges."""
    write(tmp_path, "web.h.1.", 1000, gauge(3, merge="sum"), gauge(3, "plain"))
    write(tmp_path, "web.h.2.", 1001, gauge(4, merge="sum"), gauge(4, "plain"))
    override = Store(MergeRules(gauges=(("queue_*", "max"),)))
    ingest(override, tmp_path)
    assert page(override)["queue_depth"] == 4.0
    default = Store(MergeRules(gauge_mode="min"))
    ingest(default, tmp_path)
    assert page(default)["queue_depth"] == 7.0
    assert page(default)["plain"] == 3.0  # undeclared: --gauge-mode min


def test_a_live_only_value_leaves_the_merge_when_its_source_ends(tmp_path: Path) -> None:
    """# END drops the ended source from live-only gauges; its counters and plain gauges stay."""
    jobs_a, jobs_b = Counter("jobs"), Counter("jobs")
    jobs_a.count(2)
    jobs_b.count(3)
    write(tmp_path, "web.h.1.", 1000, gauge(2, "in_flight", merge="sum", live_only=True),
          gauge(3, merge="sum"), jobs_a, end=True)  # fmt: skip
    write(tmp_path, "web.h.2.", 1001, gauge(5, "in_flight", merge="sum", live_only=True),
          gauge(4, merge="sum"), jobs_b)  # fmt: skip
    written = (tmp_path / "web.h.1.1000.prom").read_text()
    assert written.endswith("jobs_total 2 1000\n# EMITTED 1000\n# END\n")
    store = Store()
    ingest(store, tmp_path)
    got = page(store)
    assert (got["in_flight"], got["queue_depth"], got["jobs_total"]) == (5.0, 7.0, 5.0)
    assert store.source_series("web.h.1") == store.source_series("web.h.2") - 1
    store.forget_stale(10_000, 1)  # forgetting drops the other one too, as before
    assert "in_flight" not in page(store)


def test_the_command_line_sets_the_mode_and_the_writer_keeps_liveness(tmp_path: Path) -> None:
    """--gauge in_*=max over a 'sum live' declaration: the max of the live sources."""
    write(tmp_path, "web.h.1.", 1000, gauge(9, "in_flight", merge="sum", live_only=True))
    write(tmp_path, "web.h.2.", 1001, gauge(5, "in_flight", merge="sum", live_only=True))
    store = Store(MergeRules(gauges=(("in_*", "max"),)))
    ingest(store, tmp_path)
    assert page(store)["in_flight"] == 9.0
    ended = parse(
        [b"# MERGE in_flight sum live\n# TYPE in_flight gauge\nin_flight 9 2000\n# END\n"]
    )
    store.ingest_segment("web.h.1", ended, 2000)
    assert page(store)["in_flight"] == 5.0


def test_mode_all_loses_the_ended_sources_series_and_it_can_come_back() -> None:
    """'all live': one series per source, the ended one removed; newer readings return it."""
    store = Store()
    for source, value in (("a", 1), ("b", 2)):
        segment = f"# MERGE temp all live\n# TYPE temp gauge\ntemp {value} 10\n".encode()
        store.ingest_segment(source, parse([segment]), 10)
    assert page(store) == {'temp{source="a"}': 1.0, 'temp{source="b"}': 2.0}
    store.ingest_segment("a", parse([b"# END\n"]), 11)
    assert page(store) == {'temp{source="b"}': 2.0}
    assert store.source_count() == 1  # "a" fed nothing else
    store.ingest_segment("a", parse([b"temp 1 10\n"]), 10)  # a replayed old segment
    assert page(store) == {'temp{source="b"}': 2.0}
    store.ingest_segment("a", parse([b"temp 7 20\n"]), 20)  # the source is back
    assert page(store) == {'temp{source="a"}': 7.0, 'temp{source="b"}': 2.0}


def test_a_changed_declaration_re_merges_the_values_held() -> None:
    """A snapshot from before, or a deploy, changes a family's mode: the page follows at once."""
    store = Store()
    store.ingest_segment("a", parse([b'# TYPE g gauge\ng{k="x"} 3 1\n']), 1)
    store.ingest_segment("b", parse([b'# TYPE g gauge\ng{k="x"} 4 2\n']), 2)
    assert page(store) == {'g{k="x"}': 4.0}  # undeclared: latest
    store.declare_gauge("g", "sum")
    assert page(store) == {'g{k="x"}': 7.0}
    store.declare_gauge("g", "all")
    assert page(store) == {'g{k="x",source="a"}': 3.0, 'g{k="x",source="b"}': 4.0}
    assert store.entries == 2 and store.source_series("a") == 1
    store.ingest_segment("b", parse([b'# MERGE g max\n# TYPE g gauge\ng{k="x"} 5 3\n']), 3)
    assert page(store) == {'g{k="x"}': 5.0}
    assert store.entries == 2 and store.series_count() == 1
    again = Store()
    again.load_json(store.to_json())
    assert again.render() == store.render()


def test_runtime_gauges_add_up_across_a_fleet(tmp_path: Path) -> None:
    """Two workers' process_* gauges: memory, fds, threads summed, limit max, start min."""
    for prefix, scale in (("web.h.1.", 1), ("web.h.2.", 2)):
        runtime = RuntimeSensors()
        for g, value in ((runtime.resident, 100), (runtime.open_fds, 10), (runtime.threads, 3),
                         (runtime.max_fds, 1024), (runtime.start_time, 5000)):  # fmt: skip
            g.set(value * scale)
        write(tmp_path, prefix, 1000, runtime.resident, runtime.open_fds, runtime.threads,
              runtime.max_fds, runtime.start_time)  # fmt: skip
    store = Store()
    ingest(store, tmp_path)
    got = page(store)
    assert (got["process_resident_memory_bytes"], got["process_open_fds"],
            got["process_threads"]) == (300, 30, 9)  # fmt: skip
    assert (got["process_max_fds"], got["process_start_time_seconds"]) == (2048, 5000)
    store.ingest_segment("web.h.1", parse([b"# END\n"]), 2000)  # the first worker exits
    got = page(store)
    assert (got["process_resident_memory_bytes"], got["process_start_time_seconds"]) == (
        200, 10000)  # fmt: skip


def test_emit_every_ends_its_last_segment_at_stop(tmp_path: Path) -> None:
    """stop() (or the with block, or exit) writes # END after the final emission's lines."""
    collector = Collector()
    in_flight = collector.register(Gauge("in_flight", merge="sum", live_only=True))
    ticks = iter(range(1000, 2000))
    options = Options.per_process(tmp_path, "job", host="h", pid=1)
    emission = Emission(3600, collector=collector, options=options, system=False,
                        clock=lambda: next(ticks))  # fmt: skip
    with emission, in_flight.track_inprogress():
        assert emission.emit()
    last = sorted(tmp_path.glob("*.prom"))[-1].read_text()
    assert last.endswith("\n# END\n") and "in_flight 0.0 1001\n" in last
    first = sorted(tmp_path.glob("*.prom"))[0].read_text()
    assert "# MERGE in_flight sum live\n" in first and "# END" not in first
    write(tmp_path, "job.h.2.", 1000, gauge(4, "in_flight", merge="sum", live_only=True))
    store = Store()
    ingest(store, tmp_path)
    assert page(store)["in_flight"] == 4.0
