"""What many tests share: a bounded poll, a spool's samples, pages over HTTP, a socket's reply.

Import with a relative import (``from .helpers import wait_for``, ``from ..helpers import ...``
below ``tests/``): the tests run with ``--import-mode=importlib``, so ``tests`` is a package.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from biometrics.prometheus import Sample, parse

T = TypeVar("T")

WAIT_SECONDS = 10.0
"""How long :func:`wait_for` polls by default: far above what any condition normally takes."""


def wait_for(
    fetch: Callable[[], T],
    what: str,
    *,
    accept: Callable[[T], object] = bool,
    timeout: float = WAIT_SECONDS,
    every: float = 0.02,
) -> T:
    """Call ``fetch`` until ``accept`` takes its answer (by default: a truthy answer); return it.

    The one way the tests wait for something another thread or process does: a poll bounded by
    ``timeout`` seconds, ``every`` seconds apart, never a sleep standing in for the event.  Past
    the deadline it fails with an ``AssertionError`` naming ``what`` and the last answer.
    ``fetch`` may itself assert (that a process is still alive, say) to fail early.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = fetch()
        if accept(answer):
            return answer
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}: {answer!r}")
        time.sleep(every)


def read_samples(path: str | os.PathLike[str]) -> list[Sample]:
    """Every sample of one segment file, in file order (comments and metadata left out)."""
    with open(path, "rb") as f:
        return [item for item in parse(f) if isinstance(item, Sample)]


def spool_samples(
    directory: Path, name: str | None = None, *, pattern: str = "*.prom"
) -> dict[Path, list[Sample]]:
    """Per segment file of ``directory`` matching ``pattern``, in name order: its samples.

    Only the samples called ``name`` when it is given (a file without any maps to ``[]``).
    """
    return {
        path: [s for s in read_samples(path) if name is None or s.name == name]
        for path in sorted(directory.glob(pattern))
    }


def spool_values(directory: Path, name: str) -> list[float]:
    """The values of every sample called ``name`` in ``directory``'s segments, file by file."""
    return [s.value for found in spool_samples(directory, name).values() for s in found]


def series_value(page: str, series: str) -> float | None:
    """The value of ``series`` (its name and labels exactly as rendered) on an exposition page.

    ``None`` when the page has no such line.
    """
    for line in page.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return None


def page_value(page: str, series: str) -> float:
    """The value of ``series`` on an exposition page that must show it."""
    found = series_value(page, series)
    assert found is not None, f"{series} not in page:\n{page}"
    return found


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the peer sends until it closes, failing if that takes over ``within`` s.

    A reset counts as closed (what was read before it is returned).
    """
    deadline = time.monotonic() + within
    data = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"connection still open after {within}s; got {data[:80]!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def get_text(url: str, timeout: float = 10.0) -> str:
    """The body of GET ``url``, which must answer 200 (errors raise, as urllib raises them)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.status == 200, (url, r.status)
        return str(r.read().decode())


def scrape(port: int) -> str:
    """The /metrics page of a server listening on 127.0.0.1:``port``."""
    return get_text(f"http://127.0.0.1:{port}/metrics")


def answers_ready(url: str) -> bool:
    """Whether GET ``url`` (a readiness endpoint) answers 200 now; no answer is False."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:  # urllib.error.URLError included
        return False


def api_data(url: str) -> Any:
    """The ``data`` member of a Prometheus HTTP API answer to GET ``url``."""
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)["data"]


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_recipe(name: str) -> dict[str, str]:
    """The code blocks of README.md's ``<!-- recipe:NAME -->`` section, by the name each fence
    gives after its language (```` ```python app.py ````, ```` ```sh run ````), in order.

    The integration tests run these as written, so the README cannot drift from what works.
    """
    text = README.read_text(encoding="utf-8")
    start, end = f"<!-- recipe:{name} -->", f"<!-- /recipe:{name} -->"
    assert start in text and end in text, f"README.md has no recipe {name!r}"
    section = text[text.index(start) + len(start) : text.index(end)]
    blocks: dict[str, str] = {}
    lines = iter(section.splitlines())
    for line in lines:
        fence = line.strip()
        if fence.startswith("```") and len(fence.split()) >= 2:
            block_name = fence.split()[1]
            body = []
            for inner in lines:  # bounded by the section's lines
                if inner.strip() == "```":
                    break
                body.append(inner)
            assert block_name not in blocks, f"recipe {name!r} names {block_name!r} twice"
            blocks[block_name] = "\n".join(body) + "\n"
    assert blocks, f"README.md recipe {name!r} has no named code block"
    return blocks
