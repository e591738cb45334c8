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


def _simulate_server(server: str, first: datetime, n: int, step_minutes: int, seed: int) -> _ServerSim:
    """The latent process of one server on the bucket grid ``first + k*step`` (k < n)."""
    profile = profile_for(server)
    p = _PROFILE_PARAMS[profile]
    rng = _server_rng(seed, server, "latent")
    step = step_minutes
    per_hour = 60.0 / step

    # Per-server character.
    scale = rng.uniform(0.85, 1.15, size=4)
    phase_h = rng.uniform(-0.5, 0.5)
    h0, h1 = p["hours"]

    t0 = first.timestamp()
    ts = t0 + np.arange(n) * step * 60.0
    hour = ((ts % 86400) / 3600.0 - phase_h) % 24.0
    day_idx = np.floor((ts - phase_h * 3600) / 86400).astype(np.int64)
    weekday = (day_idx + 3) % 7  # 1970-01-01 was a Thursday (3 with Monday = 0)
    weekend = weekday >= 5
    day0 = int(day_idx[0])
    n_days = int(day_idx[-1]) - day0 + 1
    day_rng = _server_rng(seed, server, f"days@{day0}")

    # ---- load curve ------------------------------------------------------------------------
    bump = _sigmoid((hour - h0) / 0.8) * _sigmoid((h1 - hour) / 1.2)
    lunch = 1.0 - 0.12 * np.exp(-0.5 * ((hour - 12.5) / 0.6) ** 2)
    day_amp = np.exp(day_rng.normal(0.0, 0.12, size=n_days))[day_idx - day0]
    amp = np.where(weekend, p["weekend"], 1.0) * day_amp
    load = p["night"] + (1.0 - p["night"]) * bump * lunch * amp
    morning = np.zeros(n, bool)
    if p["morning"]:
        m_start = 8.0 + day_rng.uniform(-0.25, 0.25, size=n_days)[day_idx - day0]
        m_len = day_rng.uniform(1.0, 1.75, size=n_days)[day_idx - day0]
        morning = (~weekend) & (hour >= m_start) & (hour < m_start + m_len)
        load = load + np.where(morning, 0.35 * np.sin(np.pi * np.clip((hour - m_start) / m_len, 0, 1)) + 0.1, 0.0)

    shared = _ar1(rng, n, 0.08, 6 * per_hour / 12)  # ~30 min correlation, shared by all metrics
    load = np.clip(load + shared, 0.02, None)

    # ---- scheduled and random jobs (heavy_load) -----------------------------------------------
    job_cpu = np.zeros(n)
    job_mem = np.zeros(n)
    job_disk = np.zeros(n)  # multiplicative extra: disk *= 1 + job_disk
    heavy = np.zeros(n, bool)

    def add_job(i0: int, length: int, cpu: float, mem: float, disk: float) -> None:
        i0c, i1c = max(i0, 0), min(i0 + length, n)
        if i1c <= i0c:
            return
        w = _trapezoid(length, round(10 / step) + 1)[i0c - i0 : i1c - i0]
        job_cpu[i0c:i1c] += cpu * w
        job_mem[i0c:i1c] += mem * w
        job_disk[i0c:i1c] += disk * w
        heavy[i0c:i1c] |= w > 0.5

    def at(day: int, hour_of_day: float) -> int:
        return round(((day * 86400 + phase_h * 3600 + hour_of_day * 3600) - t0) / (step * 60))

    job_rng = _server_rng(seed, server, f"jobs@{day0}")
    for d in range(day0 - 1, day0 + n_days + 1):
        wd = (d + 3) % 7
        if profile == "etl":
            length = int(job_rng.uniform(2.5, 4.5) * per_hour)
            add_job(at(d, 0.5 + job_rng.uniform(-0.3, 0.3)), length, job_rng.uniform(55, 68), 20, 5.0)
        elif profile == "risk" and wd < 5:
            length = int(job_rng.uniform(1.5, 3.0) * per_hour)
            add_job(at(d, 17.0 + job_rng.uniform(-0.25, 0.25)), length, job_rng.uniform(45, 58), 18, 2.0)
        elif profile == "database":
            length = int(job_rng.uniform(0.75, 1.5) * per_hour)
            add_job(at(d, 1.0 + job_rng.uniform(-0.1, 0.1)), length, 18, 4, 3.0)
    if profile == "ml_compute":  # training runs at random times
        i = int(job_rng.uniform(0, 12) * per_hour)
        while i < n:
            length = int(job_rng.uniform(2, 8) * per_hour)
            add_job(i, length, job_rng.uniform(60, 72), job_rng.uniform(15, 30), 4.0)
            i += length + int(job_rng.uniform(3, 20) * per_hour)
    elif profile in ("web_api", "conductor", "generic"):  # traffic surges
        i = int(job_rng.exponential(48) * per_hour)
        while i < n:
            length = int(job_rng.uniform(0.5, 1.5) * per_hour)
            add_job(i, length, job_rng.uniform(25, 35), 5, 1.0)
            i += length + int(job_rng.exponential(48) * per_hour)

    # ---- metrics ------------------------------------------------------------------------------
    c0, c1 = p["c"]
    m0, m1 = p["m"]
    d0, d1 = p["d"]
    l0, l1 = p["lat"]
    cpu = (c0 + c1 * load) * scale[0] + job_cpu + _ar1(rng, n, 2.5, 3)
    cpu = _soft_cap(np.clip(cpu, 0.5, None), 78.0, 92.0)
    mem_drift = _ar1(rng, n, 2.0, 6 * per_hour)  # slow
    mem = (m0 + m1 * load) * scale[1] + job_mem + mem_drift + _ar1(rng, n, 0.5, 2)
    mem = _soft_cap(np.clip(mem, 1.0, None), 82.0, 92.0)
    disk = (d0 + d1 * load) * scale[2] * (1 + job_disk) * np.exp(_ar1(rng, n, 0.15, 3) + 0.8 * shared)
    congestion = 1 + 2.5 * np.clip((cpu - 65) / 35, 0, None) ** 2
    lat = l0 * scale[3] * (1 + l1 * load) * congestion * np.exp(_ar1(rng, n, 0.12, 2) + 1.0 * shared)

    # ---- states from the schedule -------------------------------------------------------------
    states = np.full(n, STATE_INDEX["healthy"], np.int8)
    if p["idle_night"]:
        idle = (hour < h0 - 1.0) | (hour >= h1 + 3.5) | (weekend & ((hour < h0 + 1) | (hour >= h1)))
        states[idle] = STATE_INDEX["idle"]
    elif profile in ("ml_compute", "etl"):
        states[:] = STATE_INDEX["idle"]
        states[(~weekend) & (hour >= h0) & (hour < h1)] = STATE_INDEX["healthy"]
    states[morning] = STATE_INDEX["morning_spike"]
    states[heavy] = STATE_INDEX["heavy_load"]

    # maintenance: weekly night window
    ev_rng = _server_rng(seed, server, "events")
    mw_day = int(ev_rng.integers(5, 7))  # Saturday or Sunday
    mw_hour = float(ev_rng.uniform(1.0, 4.0))
    mw_len = int(ev_rng.uniform(0.5, 2.0) * per_hour)
    maint = np.zeros(n, bool)
    for d in range(day0 - 1, day0 + n_days + 1):
        if (d + 3) % 7 == mw_day:
            i0 = at(d, mw_hour)
            maint[max(i0, 0) : max(min(i0 + mw_len, n), 0)] = True
    offline = np.zeros(n, bool)
    off_rng = _server_rng(seed, server, f"offline@{day0}")
    i = int(off_rng.exponential(7 * 24) * per_hour)
    while i < n:
        length = max(2, int(off_rng.uniform(10, 45) / step))
        offline[i : i + length] = True
        i += length + int(off_rng.exponential(7 * 24) * per_hour)

    w_m = maint.astype(float)
    cpu = cpu * (1 - w_m) + w_m * rng.uniform(3, 8, size=n)
    mem = mem * (1 - w_m) + w_m * 0.6 * mem
    disk = disk * (1 - w_m) + w_m * 0.3 * disk
    lat = lat * (1 - w_m)  # not serving
    states[maint] = STATE_INDEX["maintenance"]
    cpu[offline] = 0.0
    mem[offline] = 0.0
    disk[offline] = 0.0
    lat[offline] = 0.0
    states[offline] = STATE_INDEX["offline"]

    # ---- incidents ----------------------------------------------------------------------------
    episodes: list[Episode] = []
    inc_rng = _server_rng(seed, server, f"incidents@{day0}")
    gap_h = p["incident_gap_h"]
    i = int(inc_rng.uniform(0.2, 1.0) * gap_h * per_hour)
    while True:
        sudden = inc_rng.random() < 0.15
        kind = "sudden" if sudden else str(inc_rng.choice(INCIDENT_KINDS[:3]))
        pre = 0 if sudden else max(2, int(inc_rng.uniform(0.5, 4.0) * per_hour))
        crit = max(2, int(inc_rng.uniform(15, 120) / step))
        rec = max(2, int(inc_rng.uniform(15, 90) / step))
        p0 = i
        c0_, c1_, r1 = p0 + pre, p0 + pre + crit, p0 + pre + crit + rec
        if c0_ >= n:
            break
        cpu_t = inc_rng.uniform(CRITICAL_PCT + 1.0, 99.3)
        mem_t = inc_rng.uniform(CRITICAL_PCT + 1.0, 99.0) if kind == "memory_leak" else None
        lat_k = inc_rng.uniform(4, 12)
        disk_k = inc_rng.uniform(2.5, 5.0) if kind == "disk_buildup" else inc_rng.uniform(1.0, 1.6)
        shape = inc_rng.uniform(1.2, 2.0)
        idx = np.arange(p0, min(r1, n))
        k = idx - p0
        ramp = np.ones(len(idx))
        if pre:
            ramp = np.where(k < pre, ((k + 1) / (pre + 1)) ** shape, 1.0)
        decay = np.where(idx >= c1_, np.exp(-3.0 * (idx - c1_ + 1) / rec), 1.0)
        in_pre = idx < c0_
        # how strongly each metric follows the incident during the precursor
        w_cpu = {"memory_leak": 0.35, "latency_creep": 0.9, "disk_buildup": 0.8, "sudden": 1.0}[kind]
        w_lat = {"memory_leak": 0.4, "latency_creep": 1.0, "disk_buildup": 0.6, "sudden": 1.0}[kind]
        g_cpu = np.where(in_pre, w_cpu * ramp, 1.0) * decay
        g_lat = np.where(in_pre, w_lat * ramp, 1.0) * decay
        g = ramp * decay
        base_cpu = cpu[idx]
        cpu[idx] = base_cpu + (cpu_t - base_cpu) * g_cpu
        if mem_t is not None:
            mem[idx] = mem[idx] + (mem_t - mem[idx]) * g
            # after a leak the process is restarted: memory dips below baseline for a while
            after = idx >= c1_
            mem[idx[after]] *= 1 - 0.25 * np.exp(-(idx[after] - c1_) / rec)
        else:
            mem[idx] = mem[idx] + 8.0 * g
        lat[idx] = lat[idx] * (1 + (lat_k - 1) * g_lat)
        disk[idx] = disk[idx] * (1 + (disk_k - 1) * g)
        states[c0_ : min(c1_, n)] = STATE_INDEX["critical_issue"]
        states[min(c1_, n) : min(r1, n)] = STATE_INDEX["recovery"]
        if c0_ >= 0:
            at_dt = lambda j: first + timedelta(minutes=step * j)  # noqa: E731
            episodes.append(
                Episode(
                    server=server,
                    kind=kind,
                    start=at_dt(c0_),
                    end=at_dt(min(c1_, n)),
                    precursor_start=at_dt(p0) if pre else None,
                    recovery_end=at_dt(min(r1, n)),
                )
            )
        i = r1 + int(max(6.0, inc_rng.exponential(gap_h)) * per_hour)

    values = np.stack(
        [np.clip(cpu, 0, _PCT_CAP), np.clip(mem, 0, _PCT_CAP), np.clip(disk, 0, None), np.clip(lat, 0, None)],
        axis=1,
    )
    return _ServerSim(values=values, states=states, episodes=episodes)


# --------------------------------------------------------------------------------------------
def simulate_fleet_truth(
    *, servers: list[str], start: datetime, end: datetime, seed: int = 0, step_minutes: int = STEP_MINUTES
) -> FleetTruth:
    """Bucket-level series for ``servers`` over [start, end) plus every incident episode.

    Each window covers the buckets ``floor(start)`` … the last bucket starting before ``end``;
    values are the bucket means of the records ``simulate_records`` would emit (float32, METRICS
    order), states the bucket's state (one state per bucket).
    """
    first, n = _grid(start, end, step_minutes)
    windows = []
    episodes: list[Episode] = []
    for server in servers:
        sim = _simulate_server(server, first, n, step_minutes, seed)
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
    *, servers: list[str], start: datetime, end: datetime, seed: int = 0, step_minutes: int = STEP_MINUTES
) -> list:
    """The fleet as ``SeriesWindow`` bucket series (fast: no records are generated)."""
    return simulate_fleet_truth(servers=servers, start=start, end=end, seed=seed, step_minutes=step_minutes).windows


def simulate_episodes(
    *, servers: list[str], start: datetime, end: datetime, seed: int = 0, step_minutes: int = STEP_MINUTES
) -> list[Episode]:
    return simulate_fleet_truth(servers=servers, start=start, end=end, seed=seed, step_minutes=step_minutes).episodes


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
) -> Iterator[list[dict]]:
    """Contract-shaped records for every server every ``interval_seconds`` in [start, end).

    Yields one list per timestamp (all servers, in ``servers`` order). Timestamps are ISO 8601
    UTC with ``Z``. Rolled up into ``step_minutes`` buckets, the records' means equal
    ``simulate_buckets`` (to the 2-decimal rounding) and each bucket has one state.
    """
    truth = simulate_fleet_truth(servers=servers, start=start, end=end, seed=seed, step_minutes=step_minutes)
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
