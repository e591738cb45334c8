"""Engine series: one server's buckets on the regular grid, and how files and rows become them.

One grid placement (``grid_series``), one gap fill (``fill_gaps``), one dominant-state rule
(``dominant_state_indices`` / ``dominant_state``), one loader per file format (NAB
``timestamp,value`` and contract records) and one file-name → metric mapping (``nab_metric_for``).
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from forecasting.engine.sources import folder_has_calendar, source_rule
from forecasting.engine.spec import METRICS, STATE_INDEX, STATE_SEVERITY, STATES, STEP_MINUTES, profile_for

logger = logging.getLogger(__name__)


@dataclass
class SeriesWindow:
    """Recent 5-minute bucket means of one server.

    values: (T, 4) float32 in METRICS order, NaN where a bucket is missing.
    states: (T,) int8 index into STATES (the bucket's dominant state), -1 where missing.
    start: UTC-aware start of the first bucket.
    calendar: False when the timestamps only count steps (sources without wall-clock dates): the
    network's calendar inputs are masked for such a series.
    """

    server: str
    profile: str
    start: datetime
    step_minutes: int
    values: np.ndarray
    states: np.ndarray = field(default=None)  # type: ignore[assignment]
    calendar: bool = True

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("SeriesWindow.start must be timezone-aware (UTC)")
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.values.ndim != 2 or self.values.shape[1] != len(METRICS):
            raise ValueError(f"SeriesWindow.values must be (T, {len(METRICS)}), got {self.values.shape}")
        if self.states is None:
            self.states = np.full(len(self.values), -1, dtype=np.int8)
        self.states = np.asarray(self.states, dtype=np.int8)
        if self.states.shape != (len(self.values),):
            raise ValueError("SeriesWindow.states must have one entry per bucket")

    @property
    def end(self) -> datetime:
        """Start of the first future bucket (the forecast origin)."""
        return self.start + timedelta(minutes=self.step_minutes * len(self.values))

    def head(self, fraction: float) -> SeriesWindow:
        """The first ``fraction`` of the buckets (at least one)."""
        n = max(1, int(len(self.values) * fraction))
        return SeriesWindow(
            self.server, self.profile, self.start, self.step_minutes, self.values[:n], self.states[:n], self.calendar
        )


def epoch_minutes(when: datetime) -> int:
    return int(when.astimezone(UTC).timestamp() // 60)


# --- Rules -------------------------------------------------------------------------------------


def dominant_state_indices(counts: np.ndarray) -> np.ndarray:
    """Dominant state per bucket from (N, len(STATES)) state counts: the most frequent, ties to the
    more severe (an operator would rather know); -1 for a bucket that has no state at all."""
    counts = np.asarray(counts, dtype=np.int64)
    severity = np.array([STATE_SEVERITY[s] for s in STATES], dtype=np.int64)
    # counts weigh more than any severity, so severity only breaks ties
    dominant = np.argmax(counts * (len(STATES) + 1) + severity[None, :], axis=1)
    return np.where(counts.sum(axis=1) > 0, dominant, -1).astype(np.int8)


def dominant_state(counts: Mapping[str, int]) -> str:
    """The dominant state of one bucket's ``{state: count}``; "healthy" when it has none."""
    index = int(dominant_state_indices(np.array([[counts.get(s, 0) for s in STATES]]))[0])
    return STATES[index] if index >= 0 else "healthy"


def fill_gaps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward-fill NaN along axis -2 of (B, T, M) (back-fill at the start, 0 if all missing).

    Keeps the input's float dtype. Returns (filled values, missing flag (B, T) where every metric
    of the bucket was missing).
    """
    missing = np.isnan(values)
    B, T, _ = values.shape  # noqa: N806
    if T == 0:
        return values.copy(), np.zeros((B, 0), dtype=bool)
    idx = np.where(~missing, np.arange(T)[None, :, None], -1)
    np.maximum.accumulate(idx, axis=1, out=idx)
    # back-fill leading gaps with the first observed value
    first = np.where(missing.all(axis=1), 0, (~missing).argmax(axis=1))  # (B, M)
    idx = np.where(idx < 0, first[:, None, :], idx)
    filled = np.nan_to_num(np.take_along_axis(values, idx, axis=1), nan=0.0)
    return filled, missing.all(axis=2)


def fill_series(y: np.ndarray) -> np.ndarray:
    """``fill_gaps`` of a single 1-D series."""
    return fill_gaps(np.asarray(y)[None, :, None])[0][0, :, 0]


def grid_series(
    server: str,
    profile: str,
    epoch_seconds: np.ndarray,
    values: np.ndarray,
    state_counts: np.ndarray | None = None,
    step_minutes: int = STEP_MINUTES,
) -> SeriesWindow | None:
    """Place rows on the bucket grid: timestamps (epoch seconds, any order) are floored to the step,
    rows of one bucket are averaged, gaps are NaN. ``state_counts`` (rows, len(STATES)) are summed
    per bucket and give its dominant state (-1 without any)."""
    if len(epoch_seconds) == 0:
        return None
    step_s = step_minutes * 60
    buckets = np.asarray(epoch_seconds, dtype=np.int64) // step_s
    first = int(buckets.min())
    pos = buckets - first
    n = int(pos.max()) + 1
    sums = np.zeros((n, len(METRICS)), dtype=np.float64)
    rows = np.zeros(n, dtype=np.float64)
    np.add.at(sums, pos, np.asarray(values, dtype=np.float64))
    np.add.at(rows, pos, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = (sums / rows[:, None]).astype(np.float32)
    grid[rows == 0] = np.nan
    counts = np.zeros((n, len(STATES)), dtype=np.int64)
    if state_counts is not None:
        np.add.at(counts, pos, np.asarray(state_counts, dtype=np.int64))
    return SeriesWindow(
        server=server,
        profile=profile,
        start=datetime.fromtimestamp(first * step_s, tz=UTC),
        step_minutes=step_minutes,
        values=grid,
        states=dominant_state_indices(counts),
    )


def state_one_hot(state_names: Iterable[str]) -> np.ndarray:
    """(rows, len(STATES)) counts of one record each; an unknown or empty state counts nowhere."""
    names = list(state_names)
    out = np.zeros((len(names), len(STATES)), dtype=np.int64)
    for row, name in enumerate(names):
        if name in STATE_INDEX:
            out[row, STATE_INDEX[name]] = 1
    return out


def nab_metric_for(name: str) -> str:
    """The contract metric a single-value (NAB-layout) series is read as, from its file name.

    Files of the vendored date-less sources follow ``sources.source_rule`` (Azure VM CPU and SMD
    m00 → cpu_pct, SMD m05 → mem_pct, SMD disk utilisation / network-in and JumpStarter's unnamed
    metrics → disk_io_mb_s). Otherwise: cpu → cpu_pct; latency → latency_ms; disk, network or
    bytes → disk_io_mb_s. Anything else (Twitter volumes, temperatures, occupancy, key-hold counts)
    → disk_io_mb_s: an unbounded non-negative metric, so values above 100 are neither clipped nor
    read as a saturated CPU.
    """
    rule = source_rule(name)
    if rule is not None:
        return rule.metric
    lowered = name.lower()
    if "cpu" in lowered:
        return "cpu_pct"
    if "latency" in lowered:
        return "latency_ms"
    return "disk_io_mb_s"


# --- Loaders -----------------------------------------------------------------------------------


def _epoch_seconds(text: str) -> float:
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # NAB and naive contract timestamps are UTC
    return when.timestamp()


def series_name(path: Path) -> str:
    """A data file's series name: its name without ``.csv`` or ``.csv.gz``."""
    name = Path(path).name
    return name.removesuffix(".gz").removesuffix(".csv")


def _open_text(path: Path) -> io.TextIOBase:
    """A ``.csv`` or gzip-compressed ``.csv.gz`` file, opened as text for the csv module."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", newline="")
    return path.open(newline="")


def load_nab_csv(path: Path, metric: str = "auto", step_minutes: int = STEP_MINUTES) -> tuple[SeriesWindow, str]:
    """A NAB ``timestamp,value`` file (``.csv`` or ``.csv.gz``) as one series named after the file:
    the value in ``metric`` ("auto": ``nab_metric_for`` the file name), the other metrics 0.0, no
    states. A vendored source's values are brought to the metric's unit (SMD's [0, 1] × 100)."""
    path = Path(path)
    name = series_name(path)
    metric = nab_metric_for(name) if metric in (None, "auto") else metric
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS} or auto, got {metric!r}")
    rule = source_rule(name)
    with _open_text(path) as fh:
        rows = [(_epoch_seconds(r["timestamp"]), float(r["value"])) for r in csv.DictReader(fh)]
    stamps = np.array([r[0] for r in rows], dtype=np.float64)
    values = np.zeros((len(rows), len(METRICS)), dtype=np.float64)
    values[:, METRICS.index(metric)] = [r[1] for r in rows]
    if rule is not None:
        values *= rule.factor
    window = grid_series(name, "generic", stamps, values, None, step_minutes)
    if window is None:
        raise ValueError(f"{path.name}: no rows")
    return window, metric


def load_contract_csv(path: Path, step_minutes: int = STEP_MINUTES) -> list[SeriesWindow]:
    """Contract-shaped records (timestamp, server_name, the 4 metrics[, state]) rolled up into one
    series per server; a record without a known state adds to no state count."""
    by_server: dict[str, list[dict]] = {}
    with _open_text(Path(path)) as fh:
        for row in csv.DictReader(fh):
            by_server.setdefault(row["server_name"], []).append(row)
    out = []
    for server, rows in sorted(by_server.items()):
        stamps = np.array([_epoch_seconds(r["timestamp"]) for r in rows], dtype=np.float64)
        values = np.array([[float(r[m]) for m in METRICS] for r in rows], dtype=np.float64)
        counts = state_one_hot(r.get("state") or "" for r in rows)
        out.append(grid_series(server, profile_for(server), stamps, values, counts, step_minutes))
    return out


@dataclass
class CsvSeries:
    series: list[SeriesWindow]
    metric_of: dict[str, str]  # NAB series → the metric its value was read as


def _csv_layout(path: Path) -> str:
    with _open_text(path) as fh:
        header = {h.strip() for h in next(csv.reader(fh), [])}
    if {"server_name", *METRICS} <= header:
        return "contract"
    if {"timestamp", "value"} <= header:
        return "nab"
    raise ValueError(f"{path.name}: neither contract columns nor timestamp,value")


def csv_files(directory: Path, exclude: Iterable[str] = ()) -> list[Path]:
    """The folder's ``*.csv`` and ``*.csv.gz`` files, sorted, without those whose name (or series
    name, i.e. without ``.csv``/``.csv.gz``) matches an exclude glob."""
    patterns = list(exclude)
    files = sorted([*Path(directory).glob("*.csv"), *Path(directory).glob("*.csv.gz")])
    return [
        f for f in files if not any(fnmatch.fnmatch(f.name, p) or fnmatch.fnmatch(series_name(f), p) for p in patterns)
    ]


def load_csv_dir(
    directory: Path,
    metric: str = "auto",
    *,
    fraction: float = 1.0,
    exclude: Iterable[str] = (),
    step_minutes: int = STEP_MINUTES,
) -> CsvSeries:
    """Every CSV (``.csv`` or ``.csv.gz``) of a folder (less the ``exclude`` globs): NAB layout or
    contract records.

    ``fraction`` keeps the first part of each series (0.6 trains on the first 60 % and leaves the
    rest to a backtest). A folder whose ``SOURCE.json`` says ``"calendar": false`` gives series
    with ``calendar=False`` (their timestamps count steps, they are not dates).
    """
    files = csv_files(directory, exclude)
    if not files:
        raise FileNotFoundError(f"no *.csv or *.csv.gz files in {directory}")
    result = CsvSeries([], {})
    for path in files:
        if _csv_layout(path) == "contract":
            result.series.extend(load_contract_csv(path, step_minutes))
        else:
            window, mapped = load_nab_csv(path, metric, step_minutes)
            result.series.append(window)
            result.metric_of[window.server] = mapped
    if not folder_has_calendar(Path(directory)):
        for w in result.series:
            w.calendar = False
    if fraction < 1.0:
        result.series = [w.head(fraction) for w in result.series]
    return result
