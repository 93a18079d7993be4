"""The real VictoriaMetrics (Debian package, single node) on a free loopback port, in a temp dir,
and :class:`Recorder`, a pass-through that shows what its scraper asks a target for.

Started with ``-search.latencyOffset=0`` and ``-search.disableCache`` so a query sees the
newest samples, and read after ``/internal/force_flush``: VictoriaMetrics buffers new rows and
index entries for up to a few seconds before a query can see them (9 s measured for a new
series without the flush).
"""

from __future__ import annotations

import http.server
import json
import math
import os
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ..helpers import answers_ready, api_data, get_text, series_value, wait_for
from ._prometheus import free_port

VICTORIA_METRICS = shutil.which("victoria-metrics")
needs_victoriametrics = pytest.mark.skipif(
    VICTORIA_METRICS is None and not os.environ.get("BIOMETRICS_REQUIRE_PROMTOOL"),
    reason="victoria-metrics missing: scripts/test installs Debian's victoria-metrics",
)

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""What Prometheus 2.42 asks a target for: OpenMetrics first."""

Key = tuple[tuple[str, str], ...]
"""A series as its sorted label pairs, ``__name__`` included."""
Samples = dict[Key, list[tuple[int, float]]]
"""Per series, its (ms, value) samples in time order."""


class VictoriaMetrics:
    """One single-node server; ``flags`` are added to (and, repeated, override) the defaults.

    ``port`` names a server started otherwise (a README recipe's), to query it.
    """

    def __init__(
        self,
        directory: Path,
        *flags: str,
        scrape_config: str | None = None,
        port: int | None = None,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if port is None else port
        self.flags = list(flags)
        if scrape_config is not None:
            (directory / "scrape.yml").write_text(scrape_config)
            self.flags.append(f"-promscrape.config={directory / 'scrape.yml'}")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> VictoriaMetrics:
        assert VICTORIA_METRICS is not None
        log = open(self.directory / "victoria-metrics.log", "ab")  # noqa: SIM115 - child keeps it
        self.proc = subprocess.Popen(
            [VICTORIA_METRICS, f"-httpListenAddr=127.0.0.1:{self.port}",
             f"-storageDataPath={self.directory / 'data'}", "-retentionPeriod=100y",
             "-search.latencyOffset=0", "-search.disableCache", *self.flags],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        wait_for(self.ready, "victoria-metrics ready", timeout=60)
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log()[-2000:]
        return answers_ready(f"{self.url}/health")

    def log(self) -> str:
        return (self.directory / "victoria-metrics.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        """The Prometheus remote-write endpoint."""
        return f"{self.url}/api/v1/write"

    def flush(self) -> None:
        """Make every row received so far visible to queries now."""
        get_text(f"{self.url}/internal/force_flush")

    def query_data(self, promql: str, at_ms: int | None = None) -> Any:
        """The ``data`` of an instant query (at ``at_ms``, or now), as Prometheus's API has it."""
        params = {"query": promql} | ({} if at_ms is None else {"time": f"{at_ms / 1000:.3f}"})
        return api_data(f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params))

    def query(self, promql: str, at_ms: int | None = None) -> float | None:
        """The value of a query's first series; None when it has none."""
        self.flush()
        result = self.query_data(promql, at_ms)["result"]
        return float(result[0]["value"][1]) if result else None

    def by_label(self, promql: str, label: str, at_ms: int | None = None) -> dict[str, float]:
        """A query's values keyed by one label (``sum by (le) (...)``, say)."""
        self.flush()
        result = self.query_data(promql, at_ms)["result"]
        return {item["metric"].get(label, ""): float(item["value"][1]) for item in result}

    def raw(self, selector: str, at_ms: int, window: str = "1h") -> Samples:
        """Every raw sample of ``selector`` in the ``window`` before ``at_ms`` (a range query)."""
        self.flush()
        data = self.query_data(f"{selector}[{window}]", at_ms)
        assert data["resultType"] == "matrix", data
        return {
            tuple(sorted(series["metric"].items())): [
                (round(float(t) * 1000), float(v)) for t, v in series["values"]
            ]
            for series in data["result"]
        }

    def export(self, selector: str) -> Samples:
        """Every sample stored for ``selector``, duplicates included (``/api/v1/export``).

        Export is not held back by ``-search.latencyOffset`` (30 s by default), as queries are.
        A staleness marker (written as ``null``) is NaN.
        """
        self.flush()
        body = urllib.parse.urlencode({"match[]": selector}).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/export", body, timeout=10) as r:
            lines = r.read().decode().splitlines()
        out: Samples = {}
        for line in lines:
            # The values array is written with bare +Inf/-Inf/NaN, which JSON lacks; label
            # values are quoted, so the last '"values":[' is the array's.
            at = line.rindex('"values":[')
            values = line[at:].replace("+Inf", "Infinity").replace("-Inf", "-Infinity")
            series = json.loads(line[:at] + values)
            key = tuple(sorted(series["metric"].items()))
            out[key] = [(int(t), math.nan if v is None else float(v)) for t, v in zip(
                series["timestamps"], series["values"], strict=True)]  # fmt: skip
        return out

    def latest(self, selector: str) -> float:
        """The sum of the newest exported value of each series of ``selector`` (0 for none)."""
        return sum(series[-1][1] for series in self.export(selector).values())

    def own_metric(self, series: str) -> float | None:
        """One of VictoriaMetrics's own metrics (``vm_rows_ignored_total{...}``), from /metrics."""
        return series_value(get_text(f"{self.url}/metrics"), series)


class Recorder:
    """A pass-through in front of ``serve``: notes the ``Accept`` VictoriaMetrics sends, asks
    ``serve`` for OpenMetrics as Prometheus would, and notes the ``Content-Type`` it answers."""

    def __init__(self, upstream: str) -> None:
        self.accepts: list[str] = []
        self.answered: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.accepts.append(self.headers.get("Accept", ""))
                ask = urllib.request.Request(upstream, headers={"Accept": PROMETHEUS_ACCEPT})
                try:
                    with urllib.request.urlopen(ask, timeout=10) as r:
                        body, kind = r.read(), r.headers["Content-Type"]
                except OSError:  # serve stopped: the target is down
                    self.send_error(502)
                    return
                outer.answered.append(kind)
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
