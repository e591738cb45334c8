"""Deterministic fleet simulator: the contract's server families as a latent process.

The world is simulated at bucket resolution (``step_minutes``, 5 by default): per server a latent
mean of each metric and one state per bucket. Records (every ``interval_seconds``) are noise around
that latent mean, re-centred within each bucket and kept inside the metric's valid range, so the
mean of a bucket's records *is* the latent value (up to the 2-decimal rounding of the records).
Hence ``simulate_buckets`` (vectorised, no records) gives exactly the series that ingest's 5-minute
rollups of ``simulate_records`` produce, and training on it is training on what the service sees.

What is in the latent process, per profile (``spec.profile_for``):

* a daily load curve (business hours, weekends lighter, a morning surge for user-facing services),
  day-to-day amplitude changes and per-server offsets/phases;
* scheduled jobs (ETL nightly batch, risk end-of-day batch, database nightly backup, ML training
  runs at random times, web traffic surges) → ``heavy_load``;
* a weekly night maintenance window → ``maintenance`` (latency 0, low CPU), rare ``offline`` spells;
* correlated AR(1) noise (a shared load factor drives cpu, disk and latency; memory drifts slowly),
  latency that congests as CPU saturates;
* incidents: most are preceded by a precursor lasting 30 min – 4 h (memory-leak ramp, creeping
  latency, disk I/O build-up) that pushes cpu and/or mem up until they cross 95 % in the
  ``critical_issue`` episode; each episode is followed by ``recovery`` while metrics decay back.
  Without an incident the baseline CPU/memory stay below ~93 %, so crossing 95 % means trouble.

Same arguments and seed ⇒ identical output. A server's latent series depends only on the seed, its
name and the time range, not on which other servers are simulated with it.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy.signal import lfilter

from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import CRITICAL_PCT, METRICS, STATE_INDEX, STATES, STEP_MINUTES, profile_for

logger = logging.getLogger(__name__)


# Default fleet of 20: ppml0001-0004, ppdb001-003, ppweb001-008, ppcon01, ppetl001-002, pprisk001-002.
_FLEET_MIX: tuple[tuple[str, int, int], ...] = (
    # prefix, digits, share of the default 20
    ("ppml", 4, 4),
    ("ppdb", 3, 3),
    ("ppweb", 3, 8),
    ("ppcon", 2, 1),
    ("ppetl", 3, 2),
    ("pprisk", 3, 2),
)

# Per-profile baselines. cpu = c0 + c1*L, mem = m0 + m1*L, disk = d0 + d1*L (MB/s),
# latency = l0 * (1 + l1*L) * congestion(cpu). L is the load curve (≈0.1 at night, ≈1 at peak).
# fmt: off
_PROFILE_PARAMS: dict[str, dict[str, Any]] = {
    "web_api": dict(c=(10, 48), m=(40, 12), d=(3, 12), lat=(28, 0.9), night=0.12, weekend=0.35,
                    hours=(8.0, 18.5), morning=True, idle_night=True, incident_gap_h=60),
    "database": dict(c=(12, 32), m=(70, 10), d=(30, 70), lat=(6, 0.7), night=0.35, weekend=0.6,
                     hours=(7.0, 20.0), morning=False, idle_night=False, incident_gap_h=72),
    "ml_compute": dict(c=(8, 12), m=(35, 8), d=(10, 20), lat=(45, 0.3), night=0.3, weekend=0.8,
                       hours=(9.0, 19.0), morning=False, idle_night=False, incident_gap_h=72),
    "conductor": dict(c=(8, 25), m=(38, 10), d=(2, 6), lat=(15, 0.6), night=0.25, weekend=0.5,
                      hours=(7.5, 19.0), morning=True, idle_night=True, incident_gap_h=4 * 24),
    "etl": dict(c=(6, 14), m=(30, 10), d=(8, 25), lat=(80, 0.3), night=0.2, weekend=0.6,
                hours=(8.0, 18.0), morning=False, idle_night=False, incident_gap_h=72),
    "risk": dict(c=(9, 35), m=(45, 12), d=(5, 15), lat=(35, 0.7), night=0.12, weekend=0.3,
                 hours=(7.5, 18.0), morning=True, idle_night=True, incident_gap_h=72),
    "generic": dict(c=(10, 35), m=(45, 10), d=(5, 15), lat=(20, 0.6), night=0.2, weekend=0.5,
                    hours=(8.0, 18.0), morning=False, idle_night=True, incident_gap_h=80),
}
# fmt: on

# Record-level noise around the latent bucket mean: absolute sd for percentages, relative otherwise.
_RECORD_NOISE = {"cpu_pct": 3.0, "mem_pct": 0.4, "disk_io_mb_s": 0.15, "latency_ms": 0.10}
_PCT_CAP = 99.5  # latent percentages stay in [0, 99.5] so record noise never needs clipping

INCIDENT_KINDS = ("memory_leak", "latency_creep", "disk_buildup", "sudden")


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Episode:
    """One incident: ``start``/``end`` bound the ``critical_issue`` state (end exclusive)."""

    server: str
    kind: str
    start: datetime
    end: datetime
    precursor_start: datetime | None  # None: a sudden incident with no warning
    recovery_end: datetime

    @property
    def precursor_minutes(self) -> float:
        if self.precursor_start is None:
            return 0.0
        return (self.start - self.precursor_start).total_seconds() / 60.0


@dataclass(frozen=True)
class LoadShift:
    """From ``start`` on, every ``profile`` server's behaviour changes, for drift and retraining
    tests: its load curve is multiplied by ``factor`` (traffic growth) and its daily cycle (load
    curve, morning surge, idle/healthy schedule) runs ``hours`` later (the workload moved to users
    in another region). A forecaster that normalises each window by its own level barely notices
    a pure ``factor``; ``hours`` changes the shape of the day, which only a retrain can learn."""

    profile: str
    start: datetime
    factor: float = 1.0
    hours: float = 0.0


@dataclass
class FleetTruth:
    windows: list[SeriesWindow]
    episodes: list[Episode] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
def fleet_names(n: int = 20) -> list[str]:
    """``n`` server names covering every family, in the default fleet's proportions.

    ``fleet_names(20)`` is ppml0001-0004, ppdb001-003, ppweb001-008, ppcon01, ppetl001-002,
    pprisk001-002. Larger fleets scale every family; smaller ones keep at least one of each
    family while n allows.
    """
    if n <= 0:
        return []
    total = sum(share for _, _, share in _FLEET_MIX)
    counts = [max(1, int(share * n / total)) if n >= len(_FLEET_MIX) else 0 for _, _, share in _FLEET_MIX]
    if n < len(_FLEET_MIX):
        counts = [1 if i < n else 0 for i in range(len(_FLEET_MIX))]
    # hand out the remainder by largest fractional share (web first), or take back from the largest
    order = sorted(range(len(_FLEET_MIX)), key=lambda i: -_FLEET_MIX[i][2])
    k = 0
    while sum(counts) < n:
        counts[order[k % len(order)]] += 1
        k += 1
    while sum(counts) > n:
        i = max(range(len(counts)), key=lambda j: counts[j])
        counts[i] -= 1
    names: list[str] = []
    for (prefix, digits, _), count in zip(_FLEET_MIX, counts, strict=True):
        width = max(digits, len(str(count)))
        names.extend(f"{prefix}{i:0{width}d}" for i in range(1, count + 1))
    return names


# --------------------------------------------------------------------------------------------
def _aware_utc(dt: datetime, name: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return dt.astimezone(UTC)


def _floor(dt: datetime, step_minutes: int) -> datetime:
    step = step_minutes * 60
    epoch = int(dt.timestamp() // step) * step
    return datetime.fromtimestamp(epoch, tz=UTC)


def _grid(start: datetime, end: datetime, step_minutes: int) -> tuple[datetime, int]:
    start = _aware_utc(start, "start")
    end = _aware_utc(end, "end")
    if end <= start:
        raise ValueError("end must be after start")
    if step_minutes <= 0:
        raise ValueError("step_minutes must be positive")
    first = _floor(start, step_minutes)
    n = int(np.ceil((end - first).total_seconds() / (step_minutes * 60)))
    return first, max(n, 1)


def _server_rng(seed: int, server: str, salt: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(server.encode()), zlib.crc32(salt.encode())])


def _ar1(rng: np.random.Generator, n: int, sd: float, tau_steps: float) -> np.ndarray:
    """Stationary AR(1) with marginal sd ``sd`` and correlation time ``tau_steps``."""
    phi = float(np.exp(-1.0 / max(tau_steps, 1e-6)))
    eps = rng.standard_normal(n) * sd * np.sqrt(1 - phi * phi)
    x = lfilter([1.0], [1.0, -phi], eps)
    # start in the stationary distribution
    x += (rng.standard_normal() * sd) * phi ** np.arange(1, n + 1)
    return x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _soft_cap(x: np.ndarray, knee: float, cap: float) -> np.ndarray:
    """Identity below ``knee``, saturating smoothly to ``cap`` above it."""
    width = cap - knee
    return np.where(x > knee, knee + width * np.tanh((x - knee) / width), x)


def _trapezoid(n: int, ramp: int) -> np.ndarray:
    if n <= 0:
        return np.zeros(0)
    ramp = max(1, min(ramp, n // 2 or 1))
    w = np.ones(n)
    up = (np.arange(ramp) + 1) / (ramp + 1)
    w[:ramp] = up
    w[n - ramp :] = np.minimum(w[n - ramp :], up[::-1])
    return w


@dataclass
class _ServerSim:
    values: np.ndarray  # (T, 4) float64 latent bucket means
    states: np.ndarray  # (T,) int8
    episodes: list[Episode]


@dataclass
class _Clock:
    """The bucket grid of one simulated server, in its own (slightly shifted) local hours."""

    first: datetime
    n: int
    step: int
    phase_h: float
    t0: float
    hour: np.ndarray
    day_idx: np.ndarray
    weekend: np.ndarray
    day0: int
    n_days: int

    @classmethod
    def of(cls, first: datetime, n: int, step: int, phase_h: float) -> _Clock:
        t0 = first.timestamp()
        ts = t0 + np.arange(n) * step * 60.0
        hour = ((ts % 86400) / 3600.0 - phase_h) % 24.0
        day_idx = np.floor((ts - phase_h * 3600) / 86400).astype(np.int64)
        weekday = (day_idx + 3) % 7  # 1970-01-01 was a Thursday (3 with Monday = 0)
        day0 = int(day_idx[0])
        return cls(first, n, step, phase_h, t0, hour, day_idx, weekday >= 5, day0, int(day_idx[-1]) - day0 + 1)

    @property
    def per_hour(self) -> float:
        return 60.0 / self.step

    def days(self) -> range:
        """Every day touching the grid, with one day of margin each side (jobs that overlap it)."""
        return range(self.day0 - 1, self.day0 + self.n_days + 1)

    def at(self, day: int, hour_of_day: float) -> int:
        """Bucket index of a local time of day."""
        return round(((day * 86400 + self.phase_h * 3600 + hour_of_day * 3600) - self.t0) / (self.step * 60))

    def per_day(self, values: np.ndarray) -> np.ndarray:
        """Per-day draws spread over the buckets of each day."""
        return values[self.day_idx - self.day0]

    def when(self, index: int) -> datetime:
        return self.first + timedelta(minutes=self.step * index)


def _load_curve(p: dict, c: _Clock, day_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Load (≈0.1 at night, ≈1 at peak, before noise) and the morning-surge mask."""
    h0, h1 = p["hours"]
    bump = _sigmoid((c.hour - h0) / 0.8) * _sigmoid((h1 - c.hour) / 1.2)
    lunch = 1.0 - 0.12 * np.exp(-0.5 * ((c.hour - 12.5) / 0.6) ** 2)
    day_amp = c.per_day(np.exp(day_rng.normal(0.0, 0.12, size=c.n_days)))
    amp = np.where(c.weekend, p["weekend"], 1.0) * day_amp
    load = p["night"] + (1.0 - p["night"]) * bump * lunch * amp
    morning = np.zeros(c.n, bool)
    if p["morning"]:
        m_start = 8.0 + c.per_day(day_rng.uniform(-0.25, 0.25, size=c.n_days))
        m_len = c.per_day(day_rng.uniform(1.0, 1.75, size=c.n_days))
        morning = (~c.weekend) & (c.hour >= m_start) & (c.hour < m_start + m_len)
        surge = 0.35 * np.sin(np.pi * np.clip((c.hour - m_start) / m_len, 0, 1)) + 0.1
        load = load + np.where(morning, surge, 0.0)
    return load, morning


class _Jobs:
    """Scheduled and random jobs: extra cpu and memory, multiplicative disk, heavy_load buckets."""

    def __init__(self, c: _Clock) -> None:
        self.c = c
        self.cpu = np.zeros(c.n)
        self.mem = np.zeros(c.n)
        self.disk = np.zeros(c.n)  # disk *= 1 + disk
        self.heavy = np.zeros(c.n, bool)

    def add(self, i0: int, length: int, cpu: float, mem: float, disk: float) -> None:
        i0c, i1c = max(i0, 0), min(i0 + length, self.c.n)
        if i1c <= i0c:
            return
        w = _trapezoid(length, round(10 / self.c.step) + 1)[i0c - i0 : i1c - i0]
        self.cpu[i0c:i1c] += cpu * w
        self.mem[i0c:i1c] += mem * w
        self.disk[i0c:i1c] += disk * w
        self.heavy[i0c:i1c] |= w > 0.5


def _daily_jobs(jobs: _Jobs, profile: str, rng: np.random.Generator) -> None:
    """ETL nightly batch, risk end-of-day batch (weekdays), database nightly backup."""
    c, per_hour = jobs.c, jobs.c.per_hour
    for d in c.days():
        wd = (d + 3) % 7
        if profile == "etl":
            length = int(rng.uniform(2.5, 4.5) * per_hour)
            jobs.add(c.at(d, 0.5 + rng.uniform(-0.3, 0.3)), length, rng.uniform(55, 68), 20, 5.0)
        elif profile == "risk" and wd < 5:
            length = int(rng.uniform(1.5, 3.0) * per_hour)
            jobs.add(c.at(d, 17.0 + rng.uniform(-0.25, 0.25)), length, rng.uniform(45, 58), 18, 2.0)
        elif profile == "database":
            length = int(rng.uniform(0.75, 1.5) * per_hour)
            jobs.add(c.at(d, 1.0 + rng.uniform(-0.1, 0.1)), length, 18, 4, 3.0)


def _random_jobs(jobs: _Jobs, profile: str, rng: np.random.Generator) -> None:
    """ML training runs at random times; traffic surges for user-facing services."""
    n, per_hour = jobs.c.n, jobs.c.per_hour
    if profile == "ml_compute":
        i = int(rng.uniform(0, 12) * per_hour)
        while i < n:
            length = int(rng.uniform(2, 8) * per_hour)
            jobs.add(i, length, rng.uniform(60, 72), rng.uniform(15, 30), 4.0)
            i += length + int(rng.uniform(3, 20) * per_hour)
    elif profile in ("web_api", "conductor", "generic"):
        i = int(rng.exponential(48) * per_hour)
        while i < n:
            length = int(rng.uniform(0.5, 1.5) * per_hour)
            jobs.add(i, length, rng.uniform(25, 35), 5, 1.0)
            i += length + int(rng.exponential(48) * per_hour)


@dataclass
class _Latent:
    cpu: np.ndarray
    mem: np.ndarray
    disk: np.ndarray
    lat: np.ndarray

    def values(self) -> np.ndarray:
        return np.stack(
            [
                np.clip(self.cpu, 0, _PCT_CAP),
                np.clip(self.mem, 0, _PCT_CAP),
                np.clip(self.disk, 0, None),
                np.clip(self.lat, 0, None),
            ],
            axis=1,
        )


def _latent_metrics(p: dict, c: _Clock, rng, load: np.ndarray, shared: np.ndarray, jobs: _Jobs, scale) -> _Latent:
    """cpu = c0 + c1·L, mem = m0 + m1·L, disk = d0 + d1·L, latency congesting with cpu, plus noise."""
    c0, c1 = p["c"]
    m0, m1 = p["m"]
    d0, d1 = p["d"]
    l0, l1 = p["lat"]
    n = c.n
    cpu = (c0 + c1 * load) * scale[0] + jobs.cpu + _ar1(rng, n, 2.5, 3)
    cpu = _soft_cap(np.clip(cpu, 0.5, None), 78.0, 92.0)
    mem_drift = _ar1(rng, n, 2.0, 6 * c.per_hour)  # slow
    mem = (m0 + m1 * load) * scale[1] + jobs.mem + mem_drift + _ar1(rng, n, 0.5, 2)
    mem = _soft_cap(np.clip(mem, 1.0, None), 82.0, 92.0)
    disk = (d0 + d1 * load) * scale[2] * (1 + jobs.disk) * np.exp(_ar1(rng, n, 0.15, 3) + 0.8 * shared)
    congestion = 1 + 2.5 * np.clip((cpu - 65) / 35, 0, None) ** 2
    lat = l0 * scale[3] * (1 + l1 * load) * congestion * np.exp(_ar1(rng, n, 0.12, 2) + 1.0 * shared)
    return _Latent(cpu, mem, disk, lat)


def _schedule_states(p: dict, profile: str, c: _Clock, morning: np.ndarray, heavy: np.ndarray) -> np.ndarray:
    h0, h1 = p["hours"]
    states = np.full(c.n, STATE_INDEX["healthy"], np.int8)
    if p["idle_night"]:
        hour, weekend = c.hour, c.weekend
        idle = (hour < h0 - 1.0) | (hour >= h1 + 3.5) | (weekend & ((hour < h0 + 1) | (hour >= h1)))
        states[idle] = STATE_INDEX["idle"]
    elif profile in ("ml_compute", "etl"):
        states[:] = STATE_INDEX["idle"]
        states[(~c.weekend) & (c.hour >= h0) & (c.hour < h1)] = STATE_INDEX["healthy"]
    states[morning] = STATE_INDEX["morning_spike"]
    states[heavy] = STATE_INDEX["heavy_load"]
    return states


def _downtime(c: _Clock, seed: int, server: str) -> tuple[np.ndarray, np.ndarray]:
    """A weekly night maintenance window and rare offline spells."""
    ev_rng = _server_rng(seed, server, "events")
    mw_day = int(ev_rng.integers(5, 7))  # Saturday or Sunday
    mw_hour = float(ev_rng.uniform(1.0, 4.0))
    mw_len = int(ev_rng.uniform(0.5, 2.0) * c.per_hour)
    maint = np.zeros(c.n, bool)
    for d in c.days():
        if (d + 3) % 7 == mw_day:
            i0 = c.at(d, mw_hour)
            maint[max(i0, 0) : max(min(i0 + mw_len, c.n), 0)] = True
    offline = np.zeros(c.n, bool)
    off_rng = _server_rng(seed, server, f"offline@{c.day0}")
    i = int(off_rng.exponential(7 * 24) * c.per_hour)
    while i < c.n:
        length = max(2, int(off_rng.uniform(10, 45) / c.step))
        offline[i : i + length] = True
        i += length + int(off_rng.exponential(7 * 24) * c.per_hour)
    return maint, offline


def _apply_downtime(m: _Latent, states: np.ndarray, maint, offline, rng: np.random.Generator) -> None:
    w_m = maint.astype(float)
    m.cpu = m.cpu * (1 - w_m) + w_m * rng.uniform(3, 8, size=len(w_m))
    m.mem = m.mem * (1 - w_m) + w_m * 0.6 * m.mem
    m.disk = m.disk * (1 - w_m) + w_m * 0.3 * m.disk
    m.lat = m.lat * (1 - w_m)  # not serving
    states[maint] = STATE_INDEX["maintenance"]
    for series in (m.cpu, m.mem, m.disk, m.lat):
        series[offline] = 0.0
    states[offline] = STATE_INDEX["offline"]


# how strongly cpu and latency follow an incident during its precursor, per kind
_PRECURSOR_CPU = {"memory_leak": 0.35, "latency_creep": 0.9, "disk_buildup": 0.8, "sudden": 1.0}
_PRECURSOR_LAT = {"memory_leak": 0.4, "latency_creep": 1.0, "disk_buildup": 0.6, "sudden": 1.0}


@dataclass
class _Incident:
    kind: str
    p0: int  # precursor start
    pre: int  # precursor length (0: sudden)
    crit: int
    rec: int

    @property
    def c0(self) -> int:
        return self.p0 + self.pre

    @property
    def c1(self) -> int:
        return self.c0 + self.crit

    @property
    def r1(self) -> int:
        return self.c1 + self.rec


def _draw_incident(rng: np.random.Generator, p0: int, step: int, per_hour: float) -> _Incident:
    sudden = rng.random() < 0.15
    kind = "sudden" if sudden else str(rng.choice(INCIDENT_KINDS[:3]))
    pre = 0 if sudden else max(2, int(rng.uniform(0.5, 4.0) * per_hour))
    crit = max(2, int(rng.uniform(15, 120) / step))
    rec = max(2, int(rng.uniform(15, 90) / step))
    return _Incident(kind, p0, pre, crit, rec)


def _apply_incident(m: _Latent, states: np.ndarray, inc: _Incident, rng: np.random.Generator) -> None:
    """Precursor ramp, the critical plateau above the threshold, then recovery decaying back."""
    n = len(states)
    cpu_t = rng.uniform(CRITICAL_PCT + 1.0, 99.3)
    mem_t = rng.uniform(CRITICAL_PCT + 1.0, 99.0) if inc.kind == "memory_leak" else None
    lat_k = rng.uniform(4, 12)
    disk_k = rng.uniform(2.5, 5.0) if inc.kind == "disk_buildup" else rng.uniform(1.0, 1.6)
    shape = rng.uniform(1.2, 2.0)
    idx = np.arange(inc.p0, min(inc.r1, n))
    k = idx - inc.p0
    ramp = np.where(k < inc.pre, ((k + 1) / (inc.pre + 1)) ** shape, 1.0) if inc.pre else np.ones(len(idx))
    decay = np.where(idx >= inc.c1, np.exp(-3.0 * (idx - inc.c1 + 1) / inc.rec), 1.0)
    in_pre = idx < inc.c0
    g_cpu = np.where(in_pre, _PRECURSOR_CPU[inc.kind] * ramp, 1.0) * decay
    g_lat = np.where(in_pre, _PRECURSOR_LAT[inc.kind] * ramp, 1.0) * decay
    g = ramp * decay
    m.cpu[idx] = m.cpu[idx] + (cpu_t - m.cpu[idx]) * g_cpu
    if mem_t is not None:
        m.mem[idx] = m.mem[idx] + (mem_t - m.mem[idx]) * g
        # after a leak the process is restarted: memory dips below baseline for a while
        after = idx >= inc.c1
        m.mem[idx[after]] *= 1 - 0.25 * np.exp(-(idx[after] - inc.c1) / inc.rec)
    else:
        m.mem[idx] = m.mem[idx] + 8.0 * g
    m.lat[idx] = m.lat[idx] * (1 + (lat_k - 1) * g_lat)
    m.disk[idx] = m.disk[idx] * (1 + (disk_k - 1) * g)
    states[inc.c0 : min(inc.c1, n)] = STATE_INDEX["critical_issue"]
    states[min(inc.c1, n) : min(inc.r1, n)] = STATE_INDEX["recovery"]


def _incidents(server: str, p: dict, c: _Clock, m: _Latent, states: np.ndarray, seed: int) -> list[Episode]:
    """Incidents at random gaps; each one changes the metrics and states and becomes an Episode."""
    episodes: list[Episode] = []
    rng = _server_rng(seed, server, f"incidents@{c.day0}")
    gap_h = p["incident_gap_h"]
    i = int(rng.uniform(0.2, 1.0) * gap_h * c.per_hour)
    while True:
        inc = _draw_incident(rng, i, c.step, c.per_hour)
        if inc.c0 >= c.n:
            break
        _apply_incident(m, states, inc, rng)
        if inc.c0 >= 0:
            episodes.append(
                Episode(
                    server=server,
                    kind=inc.kind,
                    start=c.when(inc.c0),
                    end=c.when(min(inc.c1, c.n)),
                    precursor_start=c.when(inc.p0) if inc.pre else None,
                    recovery_end=c.when(min(inc.r1, c.n)),
                )
            )
        i = inc.r1 + int(max(6.0, rng.exponential(gap_h)) * c.per_hour)
    return episodes


def _shift_factor(profile: str, c: _Clock, shifts: tuple[LoadShift, ...]) -> np.ndarray:
    """Per bucket, the product of the factors of the shifts of this profile that have started."""
    factor = np.ones(c.n)
    ts = c.t0 + np.arange(c.n) * c.step * 60.0
    for shift in shifts:
        if shift.profile == profile:
            factor[ts >= _aware_utc(shift.start, "shift start").timestamp()] *= float(shift.factor)
    return factor


def _phase_shifted(profile: str, c: _Clock, shifts: tuple[LoadShift, ...]) -> list[tuple[np.ndarray, _Clock]]:
    """(from which bucket on, the clock that runs ``hours`` later) for this profile's phase shifts."""
    ts = c.t0 + np.arange(c.n) * c.step * 60.0
    return [
        (ts >= _aware_utc(s.start, "shift start").timestamp(), _Clock.of(c.first, c.n, c.step, c.phase_h + s.hours))
        for s in shifts
        if s.profile == profile and s.hours
    ]


def _daily_cycle(p: dict, profile: str, c: _Clock, shifts, seed: int, server: str):
    """Load curve and morning mask, with the phase shifts applied from their start (same draws)."""
    load, morning = _load_curve(p, c, _server_rng(seed, server, f"days@{c.day0}"))
    later = _phase_shifted(profile, c, shifts)
    for after, clock in later:
        shifted, shifted_morning = _load_curve(p, clock, _server_rng(seed, server, f"days@{c.day0}"))
        load, morning = np.where(after, shifted, load), np.where(after, shifted_morning, morning)
    return load * _shift_factor(profile, c, shifts), morning, later


def _simulate_server(
    server: str,
    first: datetime,
    n: int,
    step_minutes: int,
    seed: int,
    shifts: tuple[LoadShift, ...] = (),
    incidents: bool = True,
) -> _ServerSim:
    """The latent process of one server on the bucket grid ``first + k*step`` (k < n)."""
    profile = profile_for(server)
    p = _PROFILE_PARAMS[profile]
    rng = _server_rng(seed, server, "latent")
    scale = rng.uniform(0.85, 1.15, size=4)  # per-server character
    c = _Clock.of(first, n, step_minutes, rng.uniform(-0.5, 0.5))
    load, morning, later = _daily_cycle(p, profile, c, shifts, seed, server)
    shared = _ar1(rng, n, 0.08, 6 * c.per_hour / 12)  # ~30 min correlation, shared by all metrics
    load = np.clip(load + shared, 0.02, None)
    jobs = _Jobs(c)
    job_rng = _server_rng(seed, server, f"jobs@{c.day0}")
    _daily_jobs(jobs, profile, job_rng)
    _random_jobs(jobs, profile, job_rng)
    m = _latent_metrics(p, c, rng, load, shared, jobs, scale)
    states = _schedule_states(p, profile, c, morning, jobs.heavy)
    for after, clock in later:
        states = np.where(after, _schedule_states(p, profile, clock, morning, jobs.heavy), states)
    maint, offline = _downtime(c, seed, server)
    _apply_downtime(m, states, maint, offline, rng)
    episodes = _incidents(server, p, c, m, states, seed) if incidents else []
    return _ServerSim(values=m.values(), states=states, episodes=episodes)


# --------------------------------------------------------------------------------------------
def simulate_fleet_truth(
    *,
    servers: list[str],
    start: datetime,
    end: datetime,
    seed: int = 0,
    step_minutes: int = STEP_MINUTES,
    shifts: tuple[LoadShift, ...] = (),
    incidents: bool = True,
) -> FleetTruth:
    """Bucket-level series for ``servers`` over [start, end) plus every incident episode
    (``incidents=False``: none injected, the same fleet otherwise — what a quiet fleet reads).

    Each window covers the buckets ``floor(start)`` … the last bucket starting before ``end``;
    values are the bucket means of the records ``simulate_records`` would emit (float32, METRICS
    order), states the bucket's state (one state per bucket). ``shifts`` change profiles' load
    from a given time on (the draws are unchanged: an unshifted run is the same fleet).
    """
    first, n = _grid(start, end, step_minutes)
    windows = []
    episodes: list[Episode] = []
    for server in servers:
        sim = _simulate_server(server, first, n, step_minutes, seed, tuple(shifts), incidents)
        windows.append(
            SeriesWindow(
                server=server,
                profile=profile_for(server),
                start=first,
                step_minutes=step_minutes,
                values=sim.values.astype(np.float32),
                states=sim.states.astype(np.int8),
            )
        )
        episodes.extend(sim.episodes)
    return FleetTruth(windows=windows, episodes=episodes)


def simulate_buckets(
    *,
    servers: list[str],
    start: datetime,
    end: datetime,
    seed: int = 0,
    step_minutes: int = STEP_MINUTES,
    shifts: tuple[LoadShift, ...] = (),
) -> list:
    """The fleet as ``SeriesWindow`` bucket series (fast: no records are generated)."""
    truth = simulate_fleet_truth(
        servers=servers, start=start, end=end, seed=seed, step_minutes=step_minutes, shifts=shifts
    )
    return truth.windows




# --------------------------------------------------------------------------------------------
def _iso_z(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, tz=UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def _record_noise(rng: np.random.Generator, latent: np.ndarray, m: int) -> np.ndarray:
    """``m`` records per server around ``latent`` (S, 4): bucket mean exactly latent, in range.

    Noise is drawn in [-3, 3] sd, re-centred over the bucket's records (so within [-6, 6]) and
    scaled so that latent ± 6·sd stays inside the metric's range.
    """
    s = latent.shape[0]
    z = np.clip(rng.standard_normal((s, m, 4)), -3, 3)
    if m > 1:
        z -= z.mean(axis=1, keepdims=True)
    else:
        z[:] = 0.0
    out = np.empty((s, m, 4))
    for j, metric in enumerate(METRICS):
        base = latent[:, j][:, None]
        sd = _RECORD_NOISE[metric]
        if metric in ("cpu_pct", "mem_pct"):
            eff = np.minimum(sd, np.minimum(base, 100.0 - base) / 6.0)
            out[:, :, j] = base + eff * z[:, :, j]
        else:
            out[:, :, j] = base * (1.0 + (sd / 0.15) * 0.075 * z[:, :, j])  # |rel| ≤ 0.45·(sd/0.15)
    return out


def simulate_records(
    *,
    servers: list[str],
    start: datetime,
    end: datetime,
    interval_seconds: float = 5,
    seed: int = 0,
    step_minutes: int = STEP_MINUTES,
    shifts: tuple[LoadShift, ...] = (),
) -> Iterator[list[dict]]:
    """Contract-shaped records for every server every ``interval_seconds`` in [start, end).

    Yields one list per timestamp (all servers, in ``servers`` order). Timestamps are ISO 8601
    UTC with ``Z``. Rolled up into ``step_minutes`` buckets, the records' means equal
    ``simulate_buckets`` (to the 2-decimal rounding) and each bucket has one state.
    """
    truth = simulate_fleet_truth(
        servers=servers, start=start, end=end, seed=seed, step_minutes=step_minutes, shifts=shifts
    )
    yield from records_from_truth(truth, start=start, end=end, interval_seconds=interval_seconds, seed=seed)


def records_from_truth(
    truth: FleetTruth, *, start: datetime, end: datetime, interval_seconds: float = 5, seed: int = 0
) -> Iterator[list[dict]]:
    """Records every ``interval_seconds`` in [start, end) around an already simulated fleet.

    [start, end) must lie inside the truth's bucket grid. The feeder uses it to emit a thinned
    backfill and a live stream from one continuous latent process.
    """
    if interval_seconds <= 0:
        raise ValueError("interval_seconds must be positive")
    start = _aware_utc(start, "start")
    end = _aware_utc(end, "end")
    if not truth.windows or end <= start:
        return
    servers = [w.server for w in truth.windows]
    latent = np.stack([w.values.astype(np.float64) for w in truth.windows])  # (S, T, 4)
    states = np.stack([w.states for w in truth.windows])  # (S, T)
    first = truth.windows[0].start.timestamp()
    step_s = truth.windows[0].step_minutes * 60
    n_buckets = latent.shape[1]
    if start.timestamp() < first or end.timestamp() > first + n_buckets * step_s + 1e-6:
        raise ValueError("records range lies outside the simulated buckets")
    rng = np.random.default_rng(
        [int(seed) & 0xFFFFFFFF, zlib.crc32(b"records"), round(interval_seconds * 1000), int(start.timestamp())]
    )
    t_start, t_end = start.timestamp(), end.timestamp()
    n_ticks = int(np.ceil((t_end - t_start) / interval_seconds - 1e-9))
    tick_times = t_start + np.arange(n_ticks) * float(interval_seconds)
    tick_bucket = np.floor((tick_times - first) / step_s + 1e-9).astype(np.int64)
    state_names = np.array(STATES)
    bounds = np.flatnonzero(np.diff(tick_bucket)) + 1
    for group in np.split(np.arange(n_ticks), bounds):
        if len(group) == 0:
            continue
        b = int(tick_bucket[group[0]])
        noise = np.round(_record_noise(rng, latent[:, b, :], len(group)), 2)  # (S, m, 4)
        st = state_names[states[:, b]]
        for k, tick in enumerate(group):
            stamp = _iso_z(float(tick_times[tick]))
            vals = noise[:, k, :].tolist()
            yield [
                {
                    "timestamp": stamp,
                    "server_name": server,
                    "cpu_pct": v[0],
                    "mem_pct": v[1],
                    "disk_io_mb_s": v[2],
                    "latency_ms": v[3],
                    "state": str(st[si]),
                }
                for si, (server, v) in enumerate(zip(servers, vals, strict=True))
            ]


# --------------------------------------------------------------------------------------------
def fleet_stats(truth: FleetTruth) -> dict[str, Any]:
    """Summary numbers for reports: state shares, dwell, episodes, precursor coverage."""
    states = np.concatenate([w.states for w in truth.windows])
    step = truth.windows[0].step_minutes if truth.windows else STEP_MINUTES
    shares = {s: float(np.mean(states == i)) for i, s in enumerate(STATES)}
    dwell: dict[str, list[int]] = {s: [] for s in STATES}
    for w in truth.windows:
        st = w.states
        cuts = np.flatnonzero(np.diff(st)) + 1
        for run in np.split(st, cuts):
            dwell[STATES[int(run[0])]].append(len(run) * step)
    eps = truth.episodes
    with_pre = [e for e in eps if e.precursor_start is not None]
    crossing = 0
    for e in eps:
        w = next(w for w in truth.windows if w.server == e.server)
        i0 = int((e.start - w.start).total_seconds() // (w.step_minutes * 60))
        i1 = int((e.end - w.start).total_seconds() // (w.step_minutes * 60))
        if np.max(w.values[i0:i1, :2]) >= CRITICAL_PCT:
            crossing += 1
    return {
        "servers": len(truth.windows),
        "buckets": int(states.size),
        "state_share": shares,
        "median_dwell_minutes": {s: float(np.median(v)) if v else None for s, v in dwell.items()},
        "episodes": len(eps),
        "episodes_with_precursor": len(with_pre),
        "median_precursor_minutes": float(np.median([e.precursor_minutes for e in with_pre])) if with_pre else None,
        "episodes_crossing_95": crossing,
    }
