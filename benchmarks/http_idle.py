"""Idle CPU and scrape latency under slow clients, of a real ``biometrics serve`` process.

``.venv/bin/python -m benchmarks.http_idle`` (``--quick``: 3 s windows, 20 scrapes).

(a) CPU of an idle serve (empty spool, no scrapes), utime + stime of the whole process from
/proc over a 10 s window: once with the default ``--poll-interval`` (100 ms), once with 10 s
(so the HTTP server's share shows alone).  (b) Latency of 50 sequential scrapes of a small page
with no other client, then with 1,000 connections open that each sent a partial request head
and add a header line every second (slowloris); then how long the server held those.

Only the CLI is used, so the same script measures an older commit
(``PYTHONPATH=old/src python -m benchmarks.http_idle``).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks._machine import describe
from biometrics import Collector, Counter
from biometrics.prometheus import Options, SegmentEmitter

SLOW = 1000
SCRAPE_TIMEOUT = 15.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Serve:
    def __init__(self, spool: Path, state: Path, *extra: str) -> None:
        argv = [sys.executable, "-m", "biometrics", "serve", str(spool)]
        argv += ["--listen", "127.0.0.1:0", "--state", str(state), "--log-level", "warning"]
        self.proc = subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r":(\d+)/metrics", line)
        assert match is not None, f"serve printed {line!r}"
        self.port = int(match[1])
        deadline = time.monotonic() + 30
        while not self._ready():
            assert time.monotonic() < deadline, "serve never became ready"
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/-/ready"
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def idle_cpu(tmp: Path, window: float, *extra: str) -> float:
    spool = tmp / f"idle{len(extra)}"
    spool.mkdir()
    serve = Serve(spool, tmp / f"idle{len(extra)}.json", *extra)
    try:
        time.sleep(1.0)  # start-up work done
        cpu0, wall0 = cpu_seconds(serve.proc.pid), time.monotonic()
        time.sleep(window)
        cpu1, wall1 = cpu_seconds(serve.proc.pid), time.monotonic()
    finally:
        serve.stop()
    return 100 * (cpu1 - cpu0) / (wall1 - wall0)


def scrape(port: int) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    finally:
        conn.close()
    return time.perf_counter() - started


def scrapes(port: int, n: int) -> tuple[list[float], str]:
    """``n`` scrape times, sorted; stops at the first failure and says what it was."""
    times: list[float] = []
    for _ in range(n):
        try:
            times.append(scrape(port))
        except (OSError, AssertionError, http.client.HTTPException) as e:
            return sorted(times), f"scrape {len(times) + 1} failed: {type(e).__name__} {e}"
    return sorted(times), ""


def percentile(times: list[float], q: float) -> str:
    if not times:
        return "-"
    return f"{1000 * times[min(len(times) - 1, int(q * len(times)))]:.1f}"


class Slowloris:
    """``n`` connections, each a partial request head plus a header line every second."""

    def __init__(self, port: int, n: int) -> None:
        self.socks: list[socket.socket] = []
        self.opened: dict[socket.socket, float] = {}
        self.closed: dict[socket.socket, float] = {}
        self.refused = 0
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: slow\r\n")
            except OSError:
                self.refused += 1
                continue
            s.setblocking(False)
            self.socks.append(s)
            self.opened[s] = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ)
        next_drip = time.monotonic() + 1
        for _ in range(100_000):  # bounded: ~0.05 s a round, stopped long before
            if self._stop.is_set() or len(self.closed) == len(self.socks):
                break
            if time.monotonic() >= next_drip:
                for s in self.socks:
                    if s not in self.closed:
                        try:
                            s.send(b"X-Slow: 1\r\n")
                        except BlockingIOError:
                            pass
                        except OSError:
                            self.closed[s] = time.monotonic()
                next_drip += 1
            for key, _ in sel.select(timeout=0.05):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                try:
                    if ready.recv(4096):
                        continue  # a reply (408); the close follows
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self.closed.setdefault(ready, time.monotonic())
                sel.unregister(ready)
        sel.close()

    def wait_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.closed) < len(self.socks) and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self.socks:
            s.close()


def run(quick: bool = False) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < SLOW + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * SLOW), hard))
    window = 3.0 if quick else 10.0
    n = 20 if quick else 50
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"\n### Idle serve, empty spool, no scrapes ({window:.0f} s window)\n")
        print("| --poll-interval | CPU, % of one core |\n|---|---|")
        print(f"| 100ms (default) | {idle_cpu(tmp, window):.2f} |")
        print(f"| 10s (HTTP alone) | {idle_cpu(tmp, window, '--poll-interval', '10s'):.2f} |")

        spool = tmp / "spool"
        spool.mkdir()
        c = Collector()
        for i in range(200):
            c.register(Counter(f"requests_{i}_total", help="Requests.")).count(i)
        with SegmentEmitter(Options(prefix=str(spool / "w1."))) as e:
            c.emit(e, 1000)
        serve = Serve(spool, tmp / "state.json")
        try:
            baseline, failed0 = scrapes(serve.port, n)
            slow = Slowloris(serve.port, SLOW)
            time.sleep(0.5)
            held = len(slow.socks) - len(slow.closed)
            loaded, failed1 = scrapes(serve.port, n)
            slow.wait_closed(20)  # the default deadline is 10 s
            times = sorted(slow.closed[s] - slow.opened[s] for s in slow.closed)
            slow.close()
        finally:
            serve.stop()
    print(f"\n### {n} sequential scrapes of /metrics (200 series), ms\n")
    print("| other connections | p50 | p99 | max | failures |\n|---|---|---|---|---|")
    for label, t, failed in (("none", baseline, failed0),
                             (f"{held} slowloris (of {SLOW})", loaded, failed1)):  # fmt: skip
        print(f"| {label} | {percentile(t, 0.5)} | {percentile(t, 0.99)} | "
              f"{percentile(t, 1.0)} | {failed or 'none'} |")  # fmt: skip
    if times:
        print(f"\nslowloris connections closed by the server: {len(times)} of {len(slow.socks)}, "
              f"after {times[0]:.1f} s to {times[-1]:.1f} s "
              f"(median {statistics.median(times):.1f} s)")  # fmt: skip
    else:
        print(f"\nslowloris connections closed by the server: none of {len(slow.socks)}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_idle")
    parser.add_argument("--quick", action="store_true", help="3 s windows, 20 scrapes")
    args = parser.parse_args()
    print(describe())
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
