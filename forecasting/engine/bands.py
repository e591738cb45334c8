"""Backtest scores the way users read them: per horizon band, families weighted equally. Numpy only.

A window's forecast is scored per band of ``spec.HORIZON_BANDS`` (0–30 min, 30 min–2 h, 2–8 h) as
well as over the whole horizon; the band scores of every window are kept with the window's report
family (``report_family``). Pooling is by family first: each family's mean over its windows, then
the plain mean over families, so a family with 400 windows (Twitter volumes) weighs as much as one
with 6. ``x_naive`` figures are the same mean over families of each family's ratio to the naive
forecast on the same windows.

Infrastructure families (cpu, memory, disk, network, latency) are the headline; request volumes
("requests") are reported on their own, and series of no known kind ("other") per family only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from forecasting.engine.sources import source_rule
from forecasting.engine.spec import BAND_NAMES, HORIZON_BANDS

WHOLE = "0-8h"  # the whole horizon, beside the bands in per-family tables
INFRASTRUCTURE: tuple[str, ...] = ("cpu", "memory", "disk", "network", "latency")
REQUESTS = "requests"
REPORT_FAMILIES: tuple[str, ...] = (*INFRASTRUCTURE, REQUESTS, "other")
NAIVE = "naive"
_NAME_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cpu", ("cpu",)),
    ("memory", ("mem",)),
    (REQUESTS, ("twitter", "request")),
    ("network", ("network",)),
    ("disk", ("disk",)),
    ("latency", ("latency",)),
)
_METRIC_FAMILY = {"cpu_pct": "cpu", "mem_pct": "memory", "disk_io_mb_s": "disk", "latency_ms": "latency"}


def report_family(name: str, metric: str, *, mapped: bool = False) -> str:
    """The family a series × metric is reported in: from words of the series name (NAB files),
    else from the metric of a contract server's own column; a single-value file that was only
    mapped onto a metric (``mapped``) and names no known kind is "other"."""
    rule = source_rule(name)  # vendored date-less sources (SMD m18 is network-in, not requests)
    if rule is not None:
        return "network" if rule.family == "network/requests" else rule.family
    lowered = name.lower()
    for family, words in _NAME_WORDS:
        if any(word in lowered for word in words):
            return family
    return "other" if mapped else _METRIC_FAMILY.get(metric, "other")


def band_scores(y: np.ndarray, quantiles: np.ndarray, scale: float, levels: Sequence[float]) -> dict[str, dict]:
    """Scores of one window per band: y (H,), quantiles (3, H) at ``levels`` (p10, p50, p90).

    Same definitions as ``backtest.score_window`` restricted to the band's steps (MASE = mean
    |y − p50| / scale, pinball = mean pinball over the levels / scale, coverage = share inside
    [p10, p90]); a band with no observed target (or a scale ≤ 0) is left out."""
    out: dict[str, dict] = {}
    if not (scale > 0) or not math.isfinite(scale):
        return out
    for name, first, end in HORIZON_BANDS:
        yb = y[first:end]
        obs = np.isfinite(yb)
        if not obs.any():
            continue
        yo, q = yb[obs], quantiles[:, first:end][:, obs]
        diff = yo[None, :] - q
        tau = np.asarray(levels, dtype=np.float64)[:, None]
        pin = np.maximum(tau * diff, (tau - 1.0) * diff)
        out[name] = {
            "mase": float(np.mean(np.abs(yo - q[1])) / scale),
            "pinball": float(pin.mean() / scale),
            "coverage": float(np.mean((yo >= q[0]) & (yo <= q[2]))),
        }
    return out


class BandScores:
    """Band scores of every (method, family) window, pooled families-equal on demand."""

    def __init__(self) -> None:
        # (method, family, band) → list of score dicts; band WHOLE holds whole-horizon scores
        self.rows: dict[tuple[str, str, str], list[dict[str, float]]] = {}

    def add(self, method: str, family: str, whole: dict | None, by_band: dict[str, dict]) -> None:
        if whole is not None:
            self.rows.setdefault((method, family, WHOLE), []).append(whole)
        for band, score in by_band.items():
            self.rows.setdefault((method, family, band), []).append(score)

    def families(self) -> list[str]:
        present = {f for _, f, _ in self.rows}
        return [f for f in REPORT_FAMILIES if f in present] + sorted(present - set(REPORT_FAMILIES))

    def _family_mean(self, method: str, family: str, band: str) -> dict[str, float] | None:
        rows = self.rows.get((method, family, band))
        if not rows:
            return None
        return {
            "mase": float(np.mean([r["mase"] for r in rows])),
            "pinball": float(np.mean([r["pinball"] for r in rows])),
            "coverage": float(np.mean([r["coverage"] for r in rows])),
            "windows": len(rows),
        }

    def pooled(self, methods: Iterable[str], band: str, families: Iterable[str]) -> dict[str, dict]:
        """method → families-equal scores over ``families`` in ``band``: the mean over families of
        each family's mean (mase, pinball, coverage) and of its ratio to naive (mase_x_naive,
        pinball_x_naive); ``families`` counts those that took part, ``windows`` their windows."""
        out: dict[str, dict] = {}
        for method in methods:
            per: list[dict[str, float]] = []
            for family in families:
                own = self._family_mean(method, family, band)
                if own is None:
                    continue
                naive = self._family_mean(NAIVE, family, band)
                own["mase_x_naive"] = _ratio(own["mase"], naive["mase"] if naive else math.nan)
                own["pinball_x_naive"] = _ratio(own["pinball"], naive["pinball"] if naive else math.nan)
                per.append(own)
            if per:
                keys = ("mase", "pinball", "coverage", "mase_x_naive", "pinball_x_naive")
                out[method] = {k: float(np.nanmean([p[k] for p in per])) for k in keys}
                out[method]["windows"] = int(sum(p["windows"] for p in per))
                out[method]["families"] = len(per)
        return out

    def report(self, methods: Sequence[str]) -> dict[str, dict]:
        """The backtest's per-band keys: ``per_band`` (band → method → infrastructure families
        weighted equally), ``per_band_requests`` (the same over request volumes),
        ``per_band_family`` (family → band or "0-8h" → method, every family) and
        ``families_equal`` (method → whole-horizon scores, infrastructure families equal)."""
        families = self.families()
        infra = [f for f in families if f in INFRASTRUCTURE]
        return {
            "per_band": {band: self.pooled(methods, band, infra) for band in BAND_NAMES},
            "per_band_requests": {band: self.pooled(methods, band, [REQUESTS]) for band in BAND_NAMES},
            "per_band_family": {
                f: {band: self.pooled(methods, band, [f]) for band in (*BAND_NAMES, WHOLE)} for f in families
            },
            "families_equal": self.pooled(methods, WHOLE, infra),
            "headline_families": infra,
        }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(b) else math.nan
