"""Offline tools over segment files: ``cat`` (merged or raw), ``check`` and ``backfill``.

The library behind those commands, apart from ``exporter/`` because it serves nothing: it reads
segments the way ``serve`` does (a :class:`~biometrics.exporter.Store`, the same names) so what
it prints is what a scrape would show.  None of them consumes, locks or changes a segment: a
file still being written is read up to its last complete line.  Samples are kept in memory
(about 150 bytes each), which suits the backfill of days of one service; split larger jobs by
directory.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .errors import BiometricsError, ParseError
from .exporter import Store
from .prometheus import Metadata, Parse, Reader, Sample, SeriesNames, source_of
from .prometheus.exposition import (
    ExpositionFamily,
    format_count,
    render_labels,
    render_page,
)
from .prometheus.watcher import SUFFIX, kind_of

__all__ = ["OnFile", "Timeline", "check", "merged_page", "segment_files", "timeline"]

OnFile = Callable[[int, int], None]
"""Called with (files done, files in all) after each file: a progress bar's hook."""


def segment_files(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Each path, with directories replaced by their segment-named entries in name order.

    A directory named here is read like ``serve``'s spool (a link to it is followed, since
    whoever typed it chose it); its entries are listed whatever they are, and each is judged
    when opened (see :func:`_open_segment`), so a link, FIFO or directory named like a segment
    becomes a problem, not a failure.  Hidden names are left out, as the Watcher leaves them.
    """
    out: list[str] = []
    for path in [os.fspath(p) for p in paths]:
        if os.path.isdir(path):
            with os.scandir(path) as entries:
                names = sorted(
                    e.name for e in entries if e.name.endswith(SUFFIX) and e.name[0] != "."
                )
            out.extend(os.path.join(path, n) for n in names)
        elif os.path.lexists(path):
            out.append(path)
        else:
            raise BiometricsError(f"{path}: no such file or directory")
    return out


def _open_segment(path: str) -> int | str:
    """A descriptor of segment ``path``, or why it is skipped (the Watcher's rules).

    Never through a link and never blocking: anyone who can write a spool can plant a link
    to a secret (whose first line would be printed as a problem) or to ``/dev/zero``, or a
    FIFO (a plain open would wait forever for a writer).  So: ``O_NOFOLLOW|O_NONBLOCK``, then
    the open file must be regular.  A path named on the command line is no exception: the
    tools accept what ``serve`` would consume, so name the file a link points to instead.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENXIO):
            return f"cannot open ({e.strerror}); skipped"
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return f"cannot open ({e.strerror}); skipped"
        return _not_regular(mode)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.set_blocking(fd, True)
            return fd
    except OSError as e:
        os.close(fd)
        return f"cannot open ({e.strerror}); skipped"
    os.close(fd)
    return _not_regular(mode)


def _not_regular(mode: int) -> str:
    kind = kind_of(mode)
    problem = f"not a regular file ({kind}); skipped"
    if stat.S_ISLNK(mode):
        problem += ": never read through a link; remove it, or name the file it points to"
    return problem


def _source_and_time(path: str) -> tuple[str, int]:
    """The segment's source and time from its name; else the file name and its mtime."""
    name = os.path.basename(path)
    parsed = source_of(name)
    if parsed is not None:
        return parsed
    try:
        return name, int(os.lstat(path).st_mtime * 1000)  # never through a link
    except OSError:
        return name, 0


def _in_time_order(files: list[str]) -> list[str]:
    """Each source's segments oldest first by their name's time, as ``serve`` reads them.

    A string sort would put ``x.999.prom`` after ``x.1000.prom``.
    """
    named = [(source_of(os.path.basename(p)), i, p) for i, p in enumerate(files)]
    return [p for _, _, p in sorted(named, key=lambda t: (t[0] or ("", 0), t[1]))]


def _parse_each(files: list[str], progress: OnFile | None) -> Iterator[tuple[str, Parse]]:
    """Each file parsed in time order; one that is skipped yields a Parse holding only why."""
    files = _in_time_order(files)
    for done, path in enumerate(files, 1):
        opened = _open_segment(path)
        if isinstance(opened, str):
            parsed = Parse([], path=path)
            parsed.report(0, opened)
            yield path, parsed
        else:
            with os.fdopen(opened, "rb") as f:
                yield path, Parse(f, path=path)
        if progress is not None:
            progress(done, len(files))


def merged_page(
    paths: Iterable[str | os.PathLike[str]],
    *,
    openmetrics: bool = False,
    progress: OnFile | None = None,
) -> tuple[str, list[ParseError]]:
    """The page ``biometrics serve`` would show after taking these files, and their problems."""
    store = Store()
    problems: list[ParseError] = []
    for path, parsed in _parse_each(segment_files(paths), progress):
        source, default_ts = _source_and_time(path)
        store.ingest_segment(source, parsed, default_ts)
        problems.extend(parsed.problems)
    return store.render(openmetrics=openmetrics), problems


@dataclass
class Timeline:
    """Every sample of a set of segments, by family, each series in time order.

    Families are named and typed as ``serve``'s page has them, so backfilled history and
    scraped data are one series: a counter is ``x_total`` whatever its writer called it (the
    Rust crate's ``x``), a histogram's lines are one ``histogram`` family, a moments count is
    the ``summary`` ``m``'s ``m_count``.
    """

    families: dict[str, ExpositionFamily] = field(default_factory=dict)
    samples: dict[str, list[tuple[int, int, Sample]]] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    shared: set[str] = field(default_factory=set)
    """Series (rendered ``name{labels}``) that more than one source wrote."""
    problems: list[ParseError] = field(default_factory=list)
    count: int = 0
    declared: dict[str, str] = field(default_factory=dict)
    """Each name's TYPE, as the first file declaring it said."""
    claims: dict[str, str] = field(default_factory=dict)
    """Each family's OpenMetrics name -> the family: two families never share one."""

    def take_metadata(self, item: Metadata, names: SeriesNames, parsed: Parse) -> None:
        """Record a file's HELP or TYPE line; a type contradicting another file's is a problem."""
        if item.kind == "HELP":
            self.helps.setdefault(item.name, item.text)
            return
        if item.kind != "TYPE":
            return
        known = self.declared.setdefault(item.name, item.text)
        if known == item.text:
            names.declare(item.name, item.text)
        else:
            parsed.report(item.line, f"{item.name} is a {known} in an earlier file; "
                          f"this TYPE {item.text} is ignored")  # fmt: skip

    def family_of(self, name: str, names: SeriesNames) -> tuple[str, str, str]:
        """``(family, type, sample name)`` a sample called ``name`` belongs to."""
        role, family = names.classify(name)
        if role == "counter":
            return family, "counter", family
        if role == "histogram":
            return family, "histogram", name
        if role == "moments":
            return (family, "summary", name) if name == family + "_count" else (name, "gauge", name)
        return name, "gauge" if self.declared.get(name) == "gauge" else "untyped", name

    def admit(self, family: str, kind: str) -> str | None:
        """Make room for ``family``; why not, if another family holds its name."""
        known = self.families.get(family)
        if known is not None:
            return None if known.type == kind else f"the {known.type} {family}"
        holder = self.claims.setdefault(family[:-6] if kind == "counter" else family, family)
        if holder != family:
            return f"the {self.families[holder].type} {holder}"
        self.families[family] = ExpositionFamily(family, kind, None)
        self.samples[family] = []
        return None

    def render(self, *, openmetrics: bool = False) -> str:
        """0.0.4 text with millisecond timestamps, or OpenMetrics with seconds and ``# EOF``."""

        def rows(name: str) -> Iterator[tuple[tuple[str, str, str], int]]:
            for ts, _, s in sorted(self.samples[name], key=lambda r: (r[0], r[1])):
                value = format_count(s.value) if math.isfinite(s.value) else _special(s.value)
                yield (s.name, render_labels(s.labels), value), ts

        helps = self.helps
        for name, family in self.families.items():
            family.help = helps.get(name)
            if family.help is None and family.type == "counter":
                family.help = helps.get(name[:-6])  # the Rust crate's counter, renamed
            elif family.help is None and family.type == "summary":
                family.help = helps.get(name + "_count")  # moments: the segment's count
        page = ((self.families[n], rows(n)) for n in sorted(self.families))
        return render_page(page, openmetrics=openmetrics)


def _special(x: float) -> str:
    return "NaN" if math.isnan(x) else ("+Inf" if x > 0 else "-Inf")


def timeline(
    paths: Iterable[str | os.PathLike[str]],
    *,
    source_label: str | None = None,
    progress: OnFile | None = None,
) -> Timeline:
    """Collect every sample with its time (the segment's name time when a line has none).

    With ``source_label``, each sample gets that label set to its segment's source (an existing
    label of that name becomes ``exported_<name>``), so several processes writing one series
    stay apart instead of interleaving.
    """
    out = Timeline()
    order = 0
    writer: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    names = SeriesNames()
    for path, parsed in _parse_each(segment_files(paths), progress):
        source, default_ts = _source_and_time(path)
        names.segment()
        refused: set[str] = set()
        for item in parsed:
            if isinstance(item, Metadata):
                out.take_metadata(item, names, parsed)
                continue
            family, kind, name = out.family_of(item.name, names)
            holder = out.admit(family, kind)
            if holder is not None:
                if family not in refused:
                    refused.add(family)
                    parsed.report(
                        item.line,
                        f"{item.name} would be the {kind} {family}, but {holder} holds that "
                        "name; its samples are left out",
                    )
                continue
            sample = item if name == item.name else item._replace(name=name)
            if source_label is not None:
                sample = sample._replace(labels=_with_label(item.labels, source_label, source))
            elif writer.setdefault((name, item.labels), source) != source:
                out.shared.add(name + render_labels(item.labels))
            ts = item.timestamp_ms if item.timestamp_ms is not None else default_ts
            out.samples[family].append((ts, order, sample))
            order += 1
        out.problems.extend(parsed.problems)
    out.count = order
    return out


def _with_label(
    labels: tuple[tuple[str, str], ...], name: str, value: str
) -> tuple[tuple[str, str], ...]:
    pairs = [(f"exported_{k}" if k == name else k, v) for k, v in labels]
    pairs.append((name, value))
    return tuple(sorted(pairs))


def check(
    paths: Iterable[str | os.PathLike[str]], *, progress: OnFile | None = None
) -> tuple[int, list[str]]:
    """``(files checked, problems)``; each problem reads ``file:line: message``.

    A file is checked as the exporter reads it: names, lines, and whole readings (histogram
    buckets, moments).  A torn last line is a problem only in a finished file; in one still
    locked by its writer it is the line being written.
    """
    files = segment_files(paths)
    problems: list[str] = []
    store = Store()  # readings go through a store, so names two kinds claim are found too
    for path, parsed in _parse_each(files, progress):
        name = os.path.basename(path)
        parsed_name = source_of(name)
        if parsed_name is None:
            problems.append(f"{path}:0: name is not <prefix><epoch_ms>.prom; the exporter "
                            "quarantines it")  # fmt: skip
        source, default_ts = parsed_name or (name, 0)
        store.ingest_segment(source, parsed, default_ts)
        found = parsed.problems
        if parsed.truncated and _still_written(path):
            found = parsed.malformed
        problems.extend(str(p) for p in found)
    return len(files), problems


def _still_written(path: str) -> bool:
    """True while a writer holds ``path``'s lock (a regular file only: Reader never blocks)."""
    try:
        reader = Reader.try_open(path)
    except OSError:
        return False
    if reader is None:
        return True
    reader.close()
    return False
