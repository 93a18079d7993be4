"""What a scraper asked for: OpenMetrics or 0.0.4 text (``Accept``), gzip or not.

Shared by every page we serve (``serve``'s, ``biometrics.web``'s single-process one), so a
scraper gets the same answer from each; standard library only.
"""

from __future__ import annotations

import gzip

__all__ = ["GZIP_MIN", "accepts_gzip", "gzipped", "wants_openmetrics"]

GZIP_MIN = 1024
"""A page this long or longer is gzipped for a scraper that takes it; shorter ones gain nothing."""


def _q(params: list[str]) -> float:
    for param in params:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def wants_openmetrics(accept: str) -> bool:
    """True when ``Accept`` prefers OpenMetrics 1.0 (or unversioned) over 0.0.4 text.

    Prometheus 2.42 sends OpenMetrics 1.0.0 first, 0.0.1 at q=0.75, text at q=0.5.  Only
    version 1.0.0 (or none) counts: we do not write the 0.0.1 draft.
    """
    best_om, best_text = 0.0, 0.0
    for entry in accept.split(","):
        media, *params = entry.split(";")
        media = media.strip().lower()
        q = _q(params)
        if media == "application/openmetrics-text":
            version = next((p.split("=", 1)[1].strip() for p in params
                            if p.strip().lower().startswith("version=")), "1.0.0")  # fmt: skip
            if version == "1.0.0":
                best_om = max(best_om, q)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, q)
    return best_om > 0 and best_om >= best_text


def accepts_gzip(header: str) -> bool:
    """True when ``Accept-Encoding`` takes gzip (``x-gzip`` too) at a q above 0."""
    for entry in header.split(","):
        coding, *params = entry.split(";")
        if coding.strip().lower() in ("gzip", "x-gzip") and _q(params) > 0:
            return True
    return False


def gzipped(body: bytes, accept_encoding: str) -> bytes | None:
    """``body`` gzipped when the scraper takes gzip and the page is worth it, else None.

    Level 1: a page compresses ~10x at a fraction of level 9's CPU.
    """
    if len(body) < GZIP_MIN or not accepts_gzip(accept_encoding):
        return None
    return gzip.compress(body, compresslevel=1, mtime=0)
