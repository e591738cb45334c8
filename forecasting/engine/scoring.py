"""Live scoring of archived forecasts against the buckets that arrived after them. Numpy only.

A forecast made at `origin` predicts, for step h (0-based), the bucket that starts at
origin + h · STEP_MINUTES. Its steps are scored in horizon bands (0–30 min, 30 min–2 h, 2–8 h); a
band is scored once, when its last bucket is in the past of the server's own data. Per forecast,
metric and band the functions here give *sums and counts* (never means), so aggregates over hours,
servers or days are plain sums:

* n — observed targets (missing buckets are never scored);
* abs_err — Σ |y − p50|; naive_abs_err — Σ |y − last| (naive = the last value observed at the origin);
* scale — Σ s over the same targets, s = the server's in-sample 1-step naive MAE over its context,
  so MASE = abs_err / scale = MAE / s (a ratio of sums: a flat context with s = 0 adds nothing to
  either side instead of dividing by zero) and ×naive = abs_err / naive_abs_err;
* pinball — Σ over targets of the mean pinball loss over p10/p50/p90 (unscaled, in the metric's unit);
* inside / below / above — targets within [p10, p90], below p10, above p90 (the 80 % interval).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecasting.engine.metrics import pinball
from forecasting.engine.spec import BAND_STEPS, SERVED_QUANTILES

LEVELS: tuple[float, ...] = (SERVED_QUANTILES["p10"], SERVED_QUANTILES["p50"], SERVED_QUANTILES["p90"])
SUMS: tuple[str, ...] = ("n", "abs_err", "naive_abs_err", "scale", "pinball", "inside", "below", "above")


@dataclass(frozen=True, slots=True)
class CoverageCounts:
    """Scored targets of one server × metric × band in one scoring pass, and where they fell
    relative to the served 80 % interval: inside [p10, p90], below p10, above p90."""

    server_id: int
    metric: str
    band: str
    n: int
    inside: int
    below: int
    above: int


# --- Packed quantiles (the archive's raw model forecast) -------------------------------------------
# Per forecast and metric, the float32 minimum and step of a 16-bit grid over that metric's values,
# then the values as uint16 codes: (M, 2) float32 + (H, M, 3) uint16 = 2,336 bytes for H = 96,
# M = 4 (float32 would be 4,608). The error is at most half a step, (max − min) / 131,070 of the
# forecast's own range: 0.0008 on a 0–100 % range, far below any error the scorer sums.
_CODES = 65535


def pack_quantiles(quantiles: np.ndarray) -> list[bytes]:
    """One packed bytes object per forecast of ``quantiles`` (N, H, M, 3) (finite values), without
    a loop over values."""
    q = np.asarray(quantiles, dtype=np.float64)
    lo = q.min(axis=1).min(axis=-1)  # (N, M): the steps first, one axis at a time (8× axis=(1, 3))
    step = (q.max(axis=1).max(axis=-1) - lo) / _CODES
    inverse = np.divide(1.0, step, out=np.zeros_like(step), where=step > 0)
    codes = (q - lo[:, None, :, None]) * inverse[:, None, :, None]
    codes = np.rint(codes, out=codes).clip(0, _CODES, out=codes).astype(np.uint16)
    header = np.stack([lo, step], axis=-1).astype(np.float32)  # (N, M, 2)
    return [h.tobytes() + c.tobytes() for h, c in zip(header, codes, strict=True)]


def packed_size(horizon: int, metrics: int) -> int:
    """Bytes of one packed forecast."""
    return metrics * 2 * 4 + horizon * metrics * 3 * 2


def unpack_quantiles(blob: bytes, horizon: int, metrics: int) -> np.ndarray:
    """(N, H, M, 3) float64 from N packed forecasts joined into one bytes object."""
    size = packed_size(horizon, metrics)
    raw = np.frombuffer(blob, dtype=np.uint8).reshape(-1, size)
    header = raw[:, : metrics * 8].copy().view(np.float32).reshape(-1, metrics, 2).astype(np.float64)
    codes = raw[:, metrics * 8 :].copy().view(np.uint16).reshape(-1, horizon, metrics, 3).astype(np.float64)
    return header[:, None, :, None, 0] + codes * header[:, None, :, None, 1]


def gather_targets(bucket_keys: np.ndarray, bucket_values: np.ndarray, target_keys: np.ndarray) -> np.ndarray:
    """Observed values for arbitrary target keys, without a loop: `bucket_keys` (B,) are sorted
    unique integers (e.g. server index · 2³² + step number), `bucket_values` (B, M), `target_keys`
    any shape S. Returns S + (M,) with NaN where no bucket has the key."""
    flat = np.asarray(target_keys, dtype=np.int64).ravel()
    out = np.full((flat.size, bucket_values.shape[1]), np.nan)
    if len(bucket_keys):
        pos = np.clip(np.searchsorted(bucket_keys, flat), 0, len(bucket_keys) - 1)
        hit = bucket_keys[pos] == flat
        out[hit] = bucket_values[pos[hit]]
    return out.reshape(*np.shape(target_keys), bucket_values.shape[1])


def band_sums(quantiles: np.ndarray, observed: np.ndarray, last: np.ndarray, scale: np.ndarray,
              band: int) -> dict[str, np.ndarray]:
    """Sums of one band for N forecasts.

    quantiles (N, H, M, 3) p10/p50/p90; observed (N, H, M) with NaN for missing buckets;
    last (N, M) the value observed at the origin; scale (N, M) the MASE scale (NaN = unknown).
    Returns {name: (N, M)} for every name in SUMS. A target counts only where it is observed and
    its forecast's `last` and `scale` are known, so the forecast, the naive forecast and the scale
    always cover the same targets.
    """
    lo, hi = BAND_STEPS[band]
    q = np.asarray(quantiles[:, lo:hi], dtype=np.float64)
    y = np.asarray(observed[:, lo:hi], dtype=np.float64)
    ok = np.isfinite(y) & (np.isfinite(last) & np.isfinite(scale))[:, None, :]
    y0 = np.where(ok, y, 0.0)
    p10, p50, p90 = q[..., 0], q[..., 1], q[..., 2]
    loss = sum(pinball(y0, q[..., k], level) for k, level in enumerate(LEVELS)) / len(LEVELS)

    def total(x: np.ndarray) -> np.ndarray:
        return np.where(ok, x, 0).sum(axis=1)

    n = ok.sum(axis=1)
    return {
        "n": n,
        "abs_err": total(np.abs(y0 - p50)),
        "naive_abs_err": total(np.abs(y0 - np.nan_to_num(last)[:, None, :])),
        "scale": np.nan_to_num(scale) * n,
        "pinball": total(loss),
        "inside": total((y0 >= p10) & (y0 <= p90)),
        "below": total(y0 < p10),
        "above": total(y0 > p90),
    }


def ratio(part: float, whole: float) -> float | None:
    """part / whole, None where whole is 0 (nothing to compare with)."""
    return float(part) / float(whole) if whole else None


def accuracy(sums: dict[str, float]) -> dict[str, float | int | None]:
    """What an operator reads from aggregated sums: MASE, MASE of the naive forecast, ×naive
    (MASE / naive MASE = MAE / naive MAE), mean pinball, 80 % coverage, and n."""
    n = int(sums.get("n", 0))
    return {
        "mase": ratio(sums.get("abs_err", 0.0), sums.get("scale", 0.0)),
        "naive_mase": ratio(sums.get("naive_abs_err", 0.0), sums.get("scale", 0.0)),
        "mase_vs_naive": ratio(sums.get("abs_err", 0.0), sums.get("naive_abs_err", 0.0)),
        "pinball": ratio(sums.get("pinball", 0.0), n),
        "coverage_80": ratio(sums.get("inside", 0), n),
        "n": n,
    }
