"""The network's inputs: how a batch of series windows becomes the TFT's arrays.

A window is one server's recent 5-minute buckets (``SeriesWindow``). ``build_inputs`` turns a list of
windows into plain numpy arrays (the network's x dict, before conversion to tensors), with:

* the last ``CONTEXT`` buckets as the encoder (shorter series, down to a single bucket, work);
* gaps (NaN buckets) forward-filled, backward-filled at the start, and flagged by a "missing" state category;
* per-window normalisation of every target from the encoder itself (centre = mean, scale = standard
  deviation with floors), so a server never seen in training is normalised like any other;
* calendar features (hour of day, weekday, in UTC) for the encoder and the ``HORIZON`` future steps;
  a series without wall-clock dates (``SeriesWindow.calendar`` False: the vendored Azure VM,
  JumpStarter and SMD sources count steps from 2000-01-01) gets the "no calendar" category
  (``NO_HOUR`` / ``NO_WEEKDAY``) at every step instead, so the network never learns from fake dates;
* static inputs: server (with an ``<unknown>`` category), profile, and the per-target centre/scale.

This module needs numpy only (no torch), so it can be imported anywhere.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from forecasting.engine.series import SeriesWindow, epoch_minutes, fill_gaps
from forecasting.engine.spec import CONTEXT, HORIZON, METRICS, PERCENT_METRICS, PROFILES, STATES, STEP_MINUTES, TARGETS

UNKNOWN = "<unknown>"
MISSING_STATE = "<missing>"  # the bucket itself is missing (a gap)
UNKNOWN_STATE = "<unknown>"  # the bucket has values but no state (e.g. CSV data)
# Category vocabularies: index 0 is always the unknown / missing category.
STATE_VOCAB: tuple[str, ...] = (MISSING_STATE, UNKNOWN_STATE, *STATES)
PROFILE_VOCAB: tuple[str, ...] = (UNKNOWN, *PROFILES)

# Valid range of each metric: forecasts are clipped to it.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    m: ((0.0, 100.0) if m in PERCENT_METRICS else (0.0, math.inf)) for m in METRICS
}
# Smallest normalisation scale per metric (in the metric's unit), so flat series do not blow up.
SCALE_FLOOR = 1e-3
SCALE_REL_FLOOR = 0.02  # scale is at least 2 % of |centre|
# The centre is the median of the last CENTER_STEPS observed buckets: "stay at the recent level" is
# the network's starting point (robust to spikes, follows level shifts); it learns departures.
CENTER_STEPS = 12

# Column layout of the network's inputs (the order of x["encoder_cont"] / x["encoder_cat"]).
STATIC_CATEGORICALS: tuple[str, ...] = ("server", "profile")
KNOWN_CATEGORICALS: tuple[str, ...] = ("hour", "weekday")
# The "no calendar" category of each calendar input: one past the real ones (a model folder whose
# vocabulary has no such slot, trained before it existed, reads a date-less series as a constant
# hour 0 / weekday 0 instead: still nothing that moves with the fake dates).
NO_HOUR = 24
NO_WEEKDAY = 7
ENCODER_CATEGORICALS: tuple[str, ...] = ("state",)
X_CATEGORICALS: tuple[str, ...] = (*STATIC_CATEGORICALS, *KNOWN_CATEGORICALS, *ENCODER_CATEGORICALS)

STATIC_REALS: tuple[str, ...] = (
    *(f"{m}_center" for m in TARGETS),
    *(f"{m}_scale" for m in TARGETS),
    *(f"{m}_mean_z" for m in TARGETS),  # the encoder mean relative to the centre, in scales
    "encoder_length",
)
KNOWN_REALS: tuple[str, ...] = ("relative_time",)
ENCODER_REALS: tuple[str, ...] = TARGETS  # gaps are flagged by the state category
X_REALS: tuple[str, ...] = (*STATIC_REALS, *KNOWN_REALS, *ENCODER_REALS)


def calendar_indices(start_minutes: np.ndarray, step_minutes: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hour of day (0..23) and weekday (Monday=0) in UTC for n steps from each start, shape (B, n)."""
    minutes = start_minutes[:, None] + step_minutes * np.arange(n, dtype=np.int64)[None, :]
    hours = (minutes // 60) % 24
    weekday = (minutes // 1440 + 3) % 7  # 1970-01-01 was a Thursday
    return hours.astype(np.int64), weekday.astype(np.int64)


def normalisers(
    values: np.ndarray, observed: np.ndarray, lengths: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-window, per-target centre, scale and encoder mean from the encoder's observed values.

    values: (B, T, M) (gaps already filled), observed: (B, T, M) bool, lengths: (B,) encoder
    lengths (left-aligned; default T). Centre = median of the last CENTER_STEPS observed values
    (the encoder mean if none); scale = standard deviation over the encoder, floored.
    Returns three (B, M) arrays: centre, scale, mean.
    """
    B, T, _ = values.shape  # noqa: N806
    if lengths is None:
        lengths = np.full(B, T, dtype=np.int64)
    w = observed.astype(np.float64)
    n = w.sum(axis=1)
    safe_n = np.maximum(n, 1.0)
    v = values.astype(np.float64)
    mean = (v * w).sum(axis=1) / safe_n
    var = (((v - mean[:, None, :]) ** 2) * w).sum(axis=1) / safe_n
    mean = np.where(n > 0, mean, 0.0)
    k = min(CENTER_STEPS, T)
    idx = np.clip(lengths[:, None] - k + np.arange(k)[None, :], 0, T - 1)  # (B, k)
    recent = np.take_along_axis(v, idx[:, :, None], axis=1)
    recent_obs = (
        np.take_along_axis(observed, idx[:, :, None], axis=1)
        & (np.arange(k)[None, :] >= (k - np.minimum(lengths, k))[:, None])[:, :, None]
    )
    recent = np.where(recent_obs, recent, np.nan)
    has_recent = recent_obs.any(axis=1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(recent, axis=1)
    center = np.where(has_recent, med, mean)
    scale = np.maximum.reduce([np.sqrt(var), SCALE_REL_FLOOR * np.abs(center), np.full_like(center, SCALE_FLOOR)])
    return center.astype(np.float32), scale.astype(np.float32), mean.astype(np.float32)


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class Vocab:
    """Category vocabularies (JSON-serialisable through ``to_json``)."""

    servers: tuple[str, ...] = (UNKNOWN,)
    profiles: tuple[str, ...] = PROFILE_VOCAB
    states: tuple[str, ...] = STATE_VOCAB
    calendar_slot: bool = True  # hour / weekday have the NO_HOUR / NO_WEEKDAY category

    def __post_init__(self) -> None:
        self._server_index = {name: i for i, name in enumerate(self.servers)}
        self._profile_index = {name: i for i, name in enumerate(self.profiles)}

    def server_index(self, name: str) -> int:
        return self._server_index.get(name, 0)

    def profile_index(self, name: str) -> int:
        return self._profile_index.get(name, 0)

    def to_json(self) -> dict:
        return {
            "servers": list(self.servers),
            "profiles": list(self.profiles),
            "states": list(self.states),
            "calendar_slot": self.calendar_slot,
        }

    @classmethod
    def from_json(cls, data: dict) -> Vocab:
        servers = tuple(data["servers"])
        if not servers or servers[0] != UNKNOWN:
            raise ValueError("server vocabulary must start with the unknown category")
        # folders written before the "no calendar" category existed have no key: no slot
        slot = bool(data.get("calendar_slot", False))
        return cls(servers=servers, profiles=tuple(data["profiles"]), states=tuple(data["states"]), calendar_slot=slot)

    @property
    def no_calendar(self) -> tuple[int, int]:
        """The (hour, weekday) categories a date-less series reads at every step."""
        return (NO_HOUR, NO_WEEKDAY) if self.calendar_slot else (0, 0)

    @property
    def cardinalities(self) -> dict[str, int]:
        return {
            "server": len(self.servers),
            "profile": len(self.profiles),
            "hour": 24 + int(self.calendar_slot),
            "weekday": 7 + int(self.calendar_slot),
            "state": len(self.states),
        }


def build_arrays(
    values: np.ndarray,
    lengths: np.ndarray,
    states: np.ndarray,
    start_minutes: np.ndarray,
    server_idx: np.ndarray,
    profile_idx: np.ndarray,
    step_minutes: int = STEP_MINUTES,
    horizon: int = HORIZON,
    max_encoder: int = CONTEXT,
    *,
    calendar: np.ndarray | None = None,
    no_calendar: tuple[int, int] = (NO_HOUR, NO_WEEKDAY),
) -> dict[str, np.ndarray]:
    """The network's x dict (numpy) from left-aligned, NaN-padded encoder blocks.

    values: (B, L, M) float with NaN for missing buckets and for padding after each length;
    lengths: (B,) encoder lengths (>= 1); states: (B, L) state index into STATES, -1 missing;
    start_minutes: (B,) epoch minutes (UTC) of each encoder's first bucket; calendar: (B,) bool,
    False for a window without wall-clock dates (its hour / weekday become ``no_calendar``).
    """
    B, L, M = values.shape  # noqa: N806
    lengths = np.clip(lengths.astype(np.int64), 1, L)
    pos = np.arange(L)[None, :]
    valid = pos < lengths[:, None]  # (B, L)
    observed = ~np.isnan(values) & valid[:, :, None]
    filled, _ = fill_gaps(np.where(valid[:, :, None], values, np.nan))
    # padding after the end holds the last value (masked by the network anyway)
    missing = (~observed.any(axis=2)) & valid
    center, scale, mean = normalisers(filled, observed, lengths)
    z = (filled - center[:, None, :]) / scale[:, None, :]
    z = np.clip(z, -50.0, 50.0)
    z = np.where(valid[:, :, None], z, 0.0)

    n_total = L + horizon
    hours, weekday = calendar_indices(start_minutes, step_minutes, n_total)
    # future steps start right after each window's own last bucket
    fut_start = start_minutes + step_minutes * lengths
    f_hours, f_weekday = calendar_indices(fut_start, step_minutes, horizon)
    if calendar is not None and not np.all(calendar):
        dateless = ~np.asarray(calendar, dtype=bool)[:, None]
        hours, f_hours = (np.where(dateless, no_calendar[0], h) for h in (hours, f_hours))
        weekday, f_weekday = (np.where(dateless, no_calendar[1], d) for d in (weekday, f_weekday))
    rel_enc = (pos - lengths[:, None]).astype(np.float32) / max_encoder  # -len/max .. -1/max
    rel_dec = (np.arange(horizon, dtype=np.float32)[None, :].repeat(B, 0)) / max_encoder

    statics = np.concatenate(
        [
            _signed_log(center) / 5.0,
            np.log(scale) / 5.0,
            np.clip((mean - center) / scale, -10.0, 10.0) / 3.0,
            (lengths.astype(np.float32) / max_encoder)[:, None],
        ],
        axis=1,
    ).astype(np.float32)  # (B, n_static_reals)

    n_reals = len(X_REALS)
    enc_cont = np.zeros((B, L, n_reals), dtype=np.float32)
    dec_cont = np.zeros((B, horizon, n_reals), dtype=np.float32)
    ns = len(STATIC_REALS)
    enc_cont[:, :, :ns] = statics[:, None, :]
    dec_cont[:, :, :ns] = statics[:, None, :]
    enc_cont[:, :, ns] = rel_enc
    dec_cont[:, :, ns] = rel_dec
    enc_cont[:, :, ns + 1 : ns + 1 + M] = z

    # state category: 0 = missing bucket (gap or padding), 1 = values without a state, 2.. = STATES
    st = np.where(states >= 0, states.astype(np.int64) + 2, 1)
    st = np.where(valid & ~missing, st, 0)
    enc_cat = np.zeros((B, L, len(X_CATEGORICALS)), dtype=np.int64)
    dec_cat = np.zeros((B, horizon, len(X_CATEGORICALS)), dtype=np.int64)
    enc_cat[:, :, 0] = server_idx[:, None]
    enc_cat[:, :, 1] = profile_idx[:, None]
    enc_cat[:, :, 2] = np.where(valid, hours[:, :L], 0)
    enc_cat[:, :, 3] = np.where(valid, weekday[:, :L], 0)
    enc_cat[:, :, 4] = st
    dec_cat[:, :, 0] = server_idx[:, None]
    dec_cat[:, :, 1] = profile_idx[:, None]
    dec_cat[:, :, 2] = f_hours
    dec_cat[:, :, 3] = f_weekday
    # the state column of the decoder is not used by the network (unknown in the future)

    return {
        "encoder_cat": enc_cat,
        "encoder_cont": enc_cont,
        "decoder_cat": dec_cat,
        "decoder_cont": dec_cont,
        "encoder_lengths": lengths,
        "decoder_lengths": np.full(B, horizon, dtype=np.int64),
        "target_scale": np.stack([center, scale], axis=-1),  # (B, M, 2)
    }


def stack_windows(
    windows: list[SeriesWindow], max_encoder: int = CONTEXT
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Left-aligned (B, L, M) values, (B,) lengths, (B, L) states and (B,) start minutes of the
    last ``max_encoder`` buckets of each window (L = the longest of them)."""
    lengths = np.array([max(1, min(len(w.values), max_encoder)) for w in windows], dtype=np.int64)
    L = int(lengths.max()) if len(windows) else 1  # noqa: N806
    values = np.full((len(windows), L, len(TARGETS)), np.nan, dtype=np.float32)
    states = np.full((len(windows), L), -1, dtype=np.int8)
    start_minutes = np.zeros(len(windows), dtype=np.int64)
    for i, w in enumerate(windows):
        n = len(w.values)
        if n == 0:  # no bucket at all: one missing step ending at the window's start
            start_minutes[i] = epoch_minutes(w.start) - w.step_minutes
            continue
        k = lengths[i]
        values[i, :k] = w.values[n - k :]
        states[i, :k] = w.states[n - k :]
        start_minutes[i] = epoch_minutes(w.start) + w.step_minutes * (n - k)
    return values, lengths, states, start_minutes


def build_inputs(
    windows: list[SeriesWindow], vocab: Vocab, max_encoder: int = CONTEXT, horizon: int = HORIZON
) -> dict[str, np.ndarray]:
    """The network's x dict (numpy arrays) for a batch of windows."""
    if not windows:
        raise ValueError("build_inputs needs at least one window")
    step = windows[0].step_minutes
    if any(w.step_minutes != step for w in windows):
        raise ValueError("all windows of a batch must share one step")
    values, lengths, states, start_minutes = stack_windows(windows, max_encoder)
    server_idx = np.array([vocab.server_index(w.server) for w in windows], dtype=np.int64)
    profile_idx = np.array([vocab.profile_index(w.profile) for w in windows], dtype=np.int64)
    calendar = np.array([w.calendar for w in windows], dtype=bool)
    return build_arrays(
        values,
        lengths,
        states,
        start_minutes,
        server_idx,
        profile_idx,
        step,
        horizon,
        max_encoder,
        calendar=calendar,
        no_calendar=vocab.no_calendar,
    )


def denormalise(z: np.ndarray, target_scale: np.ndarray) -> np.ndarray:
    """Normalised predictions (B, H, M, Q) back to metric units, using target_scale (B, M, 2)."""
    return z * target_scale[:, None, :, 1, None] + target_scale[:, None, :, 0, None]


def clip_ranges(pred: np.ndarray) -> np.ndarray:
    """Clip (..., M, Q) predictions to each metric's valid range."""
    lo = np.array([METRIC_RANGES[m][0] for m in TARGETS], dtype=pred.dtype)
    hi = np.array([METRIC_RANGES[m][1] for m in TARGETS], dtype=np.float64)
    hi = np.where(np.isinf(hi), np.finfo(pred.dtype).max, hi).astype(pred.dtype)
    return np.clip(pred, lo[:, None], hi[:, None])
