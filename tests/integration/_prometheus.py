"""The real Prometheus server (Debian package) on a free loopback port, in a temp dir."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from ..helpers import answers_ready, api_data, wait_for

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    (PROMETHEUS is None or PROMTOOL is None) and not os.environ.get("BIOMETRICS_REQUIRE_PROMTOOL"),
    reason="prometheus missing: scripts/test installs Debian's prometheus",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """One server; ``stop`` and ``start`` again keep its port and data (a restart)."""

    def __init__(self, directory: Path, config: str, *flags: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.flags = flags
        (directory / "prometheus.yml").write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        assert PROMETHEUS is not None
        log = open(self.directory / "prometheus.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", *self.flags],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        log.close()
        wait_for(self.ready, "prometheus ready", timeout=60)
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, (self.directory / "prometheus.log").read_text()[-2000:]
        return answers_ready(f"{self.url}/-/ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def query_data(self, promql: str, at: float | None = None) -> Any:
        params = {"query": promql} | ({} if at is None else {"time": f"{at:.3f}"})
        return api_data(f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params))

    def query(self, promql: str) -> float | None:
        result = self.query_data(promql)["result"]
        return float(result[0]["value"][1]) if result else None
