"""Training the TFT: window sampling, the loop, interval calibration and the model folder.

The loop is numpy; every tensor operation goes through ``forecasting.engine.network`` (the only
module that imports torch). Data comes in as engine series (see forecasting.engine.series, the
simulator and forecasting.engine.synthetic); the Django command adapts the database.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from forecasting.engine import backtest as bt
from forecasting.engine import explanation, folders, inputs, network
from forecasting.engine.series import SeriesWindow, epoch_minutes, load_csv_dir
from forecasting.engine.simulator import fleet_names, simulate_buckets, simulate_fleet_truth
from forecasting.engine.spec import CONTEXT, HORIZON, METRICS, QUANTILES, SERVED_QUANTILES, TARGETS

logger = logging.getLogger(__name__)

SIMULATION_END = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, fixed so a seed always means the same data
BACKTEST_START = datetime(2026, 3, 2, tzinfo=UTC)
BACKTEST_SEED = 1000  # the held-out simulated fleet the new model is backtested on


def load_simulated_series(n_servers: int, days: float, seed: int) -> list[SeriesWindow]:
    start = SIMULATION_END - timedelta(days=days)
    return simulate_buckets(servers=fleet_names(n_servers), start=start, end=SIMULATION_END, seed=seed)


# ----------------------------------------------------------------------------------------------
# Window sampling


@dataclass
class TrainConfig:
    epochs: int = 30
    batches_per_epoch: int = 150
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    gradient_clip: float = 1.0
    patience: int = 5
    max_minutes: float = 15.0
    val_fraction: float = 0.2
    val_stride: int = 48
    max_val_windows: int = 2048
    unknown_server_prob: float = 0.3
    full_encoder_prob: float = 0.5
    scale_augment: float = 1.0  # log-uniform random rescaling of unbounded metrics, +-this
    seed: int = 0
    device: str = "auto"
    hparams: dict = field(default_factory=dict)
    # a model folder whose weights start the training (same network hyper-parameters required)
    warm_start: str = ""


class WindowPool:
    """All training series concatenated, for fast vectorised window gathering."""

    def __init__(self, series: list[SeriesWindow], vocab: inputs.Vocab):
        self.series = series
        self.lengths = np.array([len(w.values) for w in series], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.values = np.concatenate([w.values for w in series], axis=0).astype(np.float32)
        self.states = np.concatenate([w.states for w in series], axis=0).astype(np.int8)
        self.start_minutes = np.array([epoch_minutes(w.start) for w in series], dtype=np.int64)
        self.calendar = np.array([w.calendar for w in series], dtype=bool)  # False: no wall-clock dates
        self.server_idx = np.array([vocab.server_index(w.server) for w in series], dtype=np.int64)
        self.profile_idx = np.array([vocab.profile_index(w.profile) for w in series], dtype=np.int64)
        self.step = series[0].step_minutes
        self.vocab = vocab

    def gather(self, sid: np.ndarray, origin: np.ndarray, enc_len: np.ndarray, horizon: int = HORIZON):
        """Encoder blocks (left-aligned, NaN padded) and decoder targets for windows whose first
        future step is ``origin`` (index into the series) with ``enc_len`` past steps."""
        L = int(enc_len.max())  # noqa: N806
        j = np.arange(L)[None, :]
        rel = origin[:, None] - enc_len[:, None] + j
        valid = j < enc_len[:, None]
        rel = np.where(valid, rel, origin[:, None] - 1)
        idx = self.offsets[sid][:, None] + rel
        enc = self.values[idx]
        enc[~valid] = np.nan
        st = np.where(valid, self.states[idx], -1).astype(np.int8)
        k = np.arange(horizon)[None, :]
        tpos = origin[:, None] + k
        tvalid = tpos < self.lengths[sid][:, None]
        tidx = self.offsets[sid][:, None] + np.minimum(tpos, self.lengths[sid][:, None] - 1)
        target = self.values[tidx]
        target[~tvalid] = np.nan
        start = self.start_minutes[sid] + self.step * (origin - enc_len)
        return enc, st, start, target


def _split_points(pool: WindowPool, val_fraction: float, horizon: int) -> np.ndarray:
    """Per series, the first index of its validation part (time-based split)."""
    return np.maximum(1, (pool.lengths * (1.0 - val_fraction)).astype(np.int64))


def train_candidates(pool: WindowPool, split: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(series, max origin) for series with room for a training window: origin in [1, split-horizon]
    (a shorter future is allowed for short series: at least a quarter of the horizon)."""
    max_origin = split - horizon // 4
    ok = max_origin >= 1
    return np.nonzero(ok)[0], max_origin


def validation_windows(
    pool: WindowPool, split: np.ndarray, horizon: int, stride: int, max_encoder: int, limit: int, rng
):
    sids, origins = [], []
    for i, n in enumerate(pool.lengths):
        start = max(int(split[i]), 1)
        last = int(n) - horizon
        if last < start:
            continue
        for o in range(start, last + 1, stride):
            sids.append(i)
            origins.append(o)
    sids = np.array(sids, dtype=np.int64)
    origins = np.array(origins, dtype=np.int64)
    if len(sids) > limit:
        keep = np.sort(rng.choice(len(sids), size=limit, replace=False))
        sids, origins = sids[keep], origins[keep]
    enc_len = np.minimum(origins, max_encoder)
    return sids, origins, enc_len


def make_batch(pool: WindowPool, sid, origin, enc_len, rng=None, cfg: TrainConfig | None = None):
    """Numpy x dict and normalised targets (B, H, M) with a validity mask."""
    enc, st, start, target = pool.gather(sid, origin, enc_len)
    server_idx = pool.server_idx[sid].copy()
    profile_idx = pool.profile_idx[sid].copy()
    if rng is not None and cfg is not None:
        if cfg.unknown_server_prob > 0:
            server_idx[rng.random(len(sid)) < cfg.unknown_server_prob] = 0
        if cfg.scale_augment > 0:
            for m, metric in enumerate(TARGETS):
                if metric in inputs.METRIC_RANGES and math.isinf(inputs.METRIC_RANGES[metric][1]):
                    f = np.exp(rng.uniform(-cfg.scale_augment, cfg.scale_augment, size=len(sid))).astype(np.float32)
                    enc[:, :, m] *= f[:, None]
                    target[:, :, m] *= f[:, None]
    x = inputs.build_arrays(
        enc,
        enc_len,
        st,
        start,
        server_idx,
        profile_idx,
        pool.step,
        calendar=pool.calendar[sid],
        no_calendar=pool.vocab.no_calendar,
    )
    ts = x["target_scale"]
    y = (target - ts[:, None, :, 0]) / ts[:, None, :, 1]
    mask = ~np.isnan(y)
    y = np.clip(np.nan_to_num(y, nan=0.0), -100.0, 100.0).astype(np.float32)
    return x, y, mask


# ----------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    path: Path | None
    metrics: dict
    spec: dict
    duration_s: float
    epochs_run: int
    stopped_by: str
    forecaster: object = None


@dataclass
class _Plan:
    """Where training and validation windows come from."""

    pool: WindowPool
    split: np.ndarray
    candidates: np.ndarray
    max_origin: np.ndarray
    weights: np.ndarray
    val: tuple[np.ndarray, np.ndarray, np.ndarray]  # series, origin, encoder length


@dataclass
class _LoopResult:
    best: float
    best_state: dict
    history: list[dict]
    epochs_run: int
    stopped_by: str


def _usable_series(series: list[SeriesWindow]) -> list[SeriesWindow]:
    series = [w for w in series if len(w.values) >= 2 and not np.isnan(w.values).all()]
    if not series:
        raise ValueError("no usable training series (need at least 2 buckets each)")
    steps = {w.step_minutes for w in series}
    if len(steps) != 1:
        raise ValueError(f"series have different steps: {sorted(steps)}")
    return series


def _plan(pool: WindowPool, cfg: TrainConfig, rng: np.random.Generator) -> _Plan:
    split = _split_points(pool, cfg.val_fraction, HORIZON)
    cand, max_origin = train_candidates(pool, split, HORIZON)
    if len(cand) == 0:  # tiny data: train on whatever exists, validate on the same
        split = pool.lengths.copy()
        cand, max_origin = np.arange(len(pool.series)), np.maximum(1, pool.lengths - 1)
    val = validation_windows(pool, split, HORIZON, cfg.val_stride, CONTEXT, cfg.max_val_windows, rng)
    if len(val[0]) == 0:  # no room for a held-out window: validate on the last training origins
        vo = np.maximum(1, max_origin[cand])
        val = (cand.copy(), vo, np.minimum(vo, CONTEXT))
    weights = np.maximum(max_origin[cand], 1).astype(np.float64)
    return _Plan(pool, split, cand, max_origin, weights / weights.sum(), val)


def _lr_factor(progress: float) -> float:
    """Warm-up (first 5 %) then cosine decay to 5 % of the learning rate."""
    warm = 0.05
    if progress < warm:
        return 0.1 + 0.9 * progress / warm
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm)))


def _sample_batch(plan: _Plan, cfg: TrainConfig, rng: np.random.Generator):
    """Training windows: series weighted by their room, random origins, full or random encoders."""
    k = rng.choice(len(plan.candidates), size=cfg.batch_size, p=plan.weights)
    sid = plan.candidates[k]
    origin = 1 + (rng.random(cfg.batch_size) * plan.max_origin[sid]).astype(np.int64)
    origin = np.minimum(origin, plan.max_origin[sid])
    avail = np.minimum(origin, CONTEXT)
    rand_len = 1 + (rng.random(cfg.batch_size) * avail).astype(np.int64)
    enc_len = np.where(rng.random(cfg.batch_size) < cfg.full_encoder_prob, avail, rand_len)
    return make_batch(plan.pool, sid, origin, enc_len, rng, cfg)


def _validation_loss(tn: network.TrainingNetwork, plan: _Plan) -> float:
    vs, vo, vl = plan.val
    total, count = 0.0, 0
    for i in range(0, len(vs), 256):
        x, y, mask = make_batch(plan.pool, vs[i : i + 256], vo[i : i + 256], vl[i : i + 256])
        n = int(mask.sum())
        total += tn.loss(x, y, mask, list(QUANTILES)) * n
        count += n
    return total / max(count, 1)


class _Schedule:
    """Learning rate and deadline: the progress of a run is whichever of the step budget and the
    time budget is further along, so a time-limited run still anneals."""

    def __init__(self, cfg: TrainConfig, started: float) -> None:
        self.cfg = cfg
        self.started = started
        self.total_steps = max(1, cfg.epochs * cfg.batches_per_epoch)
        self.deadline = started + cfg.max_minutes * 60.0

    def learning_rate(self, step: int) -> float:
        elapsed = (time.perf_counter() - self.started) / (self.cfg.max_minutes * 60.0)
        return self.cfg.learning_rate * _lr_factor(min(1.0, max(step / self.total_steps, elapsed)))

    def out_of_time(self) -> bool:
        return time.perf_counter() > self.deadline


def _progress_bar(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm import tqdm  # only when a person watches the run

    return tqdm(total=total, desc="train_tft", unit="batch", dynamic_ncols=True)


def _run_epoch(tn, plan: _Plan, cfg: TrainConfig, rng, schedule: _Schedule, state: dict, bar) -> float:
    """One epoch of batches (cut short by the deadline); returns the mean training loss."""
    running, batches = 0.0, 0
    for _ in range(cfg.batches_per_epoch):
        x, y, mask = _sample_batch(plan, cfg, rng)
        running += tn.step(x, y, mask, list(QUANTILES))
        batches += 1
        state["step"] += 1
        tn.set_learning_rate(schedule.learning_rate(state["step"]))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=state["epoch"], loss=f"{running / batches:.4f}", best=f"{state['best']:.4f}")
        if schedule.out_of_time():
            break
    return running / max(1, batches)


def _run_epochs(
    tn, plan: _Plan, cfg: TrainConfig, rng, schedule: _Schedule, log, bar, on_epoch=None
) -> _LoopResult:
    """Epochs until the budget, early stopping (``patience`` epochs without improvement) or time.
    ``on_epoch(row)`` sees each epoch's losses (progress reports; an exception aborts the run)."""
    result = _LoopResult(math.inf, tn.snapshot(), [], 0, "epochs")
    state = {"step": 0, "epoch": 0, "best": math.inf}
    bad = 0
    tn.set_learning_rate(schedule.learning_rate(0))
    for epoch in range(1, cfg.epochs + 1):
        state["epoch"] = result.epochs_run = epoch
        train_loss = _run_epoch(tn, plan, cfg, rng, schedule, state, bar)
        val = _validation_loss(tn, plan)
        result.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val})
        log(f"epoch {epoch}: train {train_loss:.4f} val {val:.4f}")
        if val < result.best - 1e-5:
            result.best = state["best"] = val
            result.best_state = tn.snapshot()
            bad = 0
        else:
            bad += 1
        if on_epoch is not None:
            on_epoch({**result.history[-1], "best_val_loss": result.best, "epochs": cfg.epochs})
        if schedule.out_of_time():
            result.stopped_by = "max_minutes"
            break
        if bad >= cfg.patience:
            result.stopped_by = "early_stopping"
            break
    return result


def _spec_json(created: datetime, pool: WindowPool, hparams: dict, n_params: int, calibration: dict) -> dict:
    return {
        "format": folders.SPEC_FORMAT,
        "created_at": created.isoformat(),
        "targets": list(TARGETS),
        "quantiles": list(QUANTILES),
        "served_quantiles": SERVED_QUANTILES,
        "step_minutes": int(pool.step),
        "horizon": HORIZON,
        "max_encoder": CONTEXT,
        "hparams": hparams,
        "vocab": pool.vocab.to_json(),
        "x_reals": list(inputs.X_REALS),
        "x_categoricals": list(inputs.X_CATEGORICALS),
        "normalisation": {
            "kind": "per-window encoder mean/std",
            "scale_floor": inputs.SCALE_FLOOR,
            "scale_rel_floor": inputs.SCALE_REL_FLOOR,
        },
        "metric_ranges": {m: [lo, None if math.isinf(hi) else hi] for m, (lo, hi) in inputs.METRIC_RANGES.items()},
        "n_parameters": n_params,
        # quantiles are spread around the median by this factor (calibrated on validation windows)
        "interval_scale": calibration["interval_scale"],
        "interval_scale_by_profile": calibration["by_profile"],
    }


def _metrics_json(loop: _LoopResult, plan: _Plan, calibration: dict, duration: float) -> dict:
    return {
        "val_loss": loop.best,
        "val_windows": len(plan.val[0]),
        "val_coverage_p10_p90": calibration["coverage"],
        "history": loop.history,
        "epochs_run": loop.epochs_run,
        "stopped_by": loop.stopped_by,
        "duration_s": round(duration, 1),
    }


def train(
    series: list[SeriesWindow],
    cfg: TrainConfig,
    out_dir: Path | None = None,
    progress: bool = True,
    data_description: str = "",
    command: str = "",
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    extra_metrics: dict | None = None,
) -> TrainResult:
    """Train a TFT on ``series`` and (if out_dir) write ``out_dir/tft_model_<UTC time>/``.

    The folder is written under a temporary name and renamed when complete, so a training killed
    at any point leaves no folder that looks like a model. ``extra_metrics`` go into metrics.json.
    """
    log = log or logger.info
    started = time.perf_counter()
    created = datetime.now(UTC)
    series = _usable_series(series)
    rng = np.random.default_rng(cfg.seed)
    network.seed(cfg.seed)
    device = network.resolve_device(cfg.device)
    hparams = {**network.DEFAULT_HPARAMS, **cfg.hparams}
    vocab = inputs.Vocab(servers=(inputs.UNKNOWN, *sorted({w.server for w in series} - {inputs.UNKNOWN})))
    net = network.build_network(hparams, vocab, QUANTILES, CONTEXT)
    if cfg.warm_start:
        log(f"warm start from {cfg.warm_start}: {warm_start_weights(net, Path(cfg.warm_start), vocab)} tensors")
    tn = network.TrainingNetwork(net, device, cfg)
    pool = WindowPool(series, vocab)
    plan = _plan(pool, cfg, rng)
    log(
        f"training on {len(series)} series, {int(pool.lengths.sum())} buckets, {len(plan.val[0])} validation "
        f"windows, {tn.n_parameters} parameters, device {device}"
    )
    schedule = _Schedule(cfg, started)
    bar = _progress_bar(progress, schedule.total_steps)
    loop = _run_epochs(tn, plan, cfg, rng, schedule, log, bar, on_epoch)
    if bar is not None:
        bar.close()
    tn.restore(loop.best_state)
    calibration = calibrate_intervals(tn.net, pool, plan.split, device, cfg)
    log(f"interval calibration on validation (p10-p90 coverage): {json.dumps(calibration['coverage'])}")
    importance = variable_importance(tn.net, pool, plan.split, device, "validation windows of the training data")
    duration = time.perf_counter() - started
    spec = _spec_json(created, pool, hparams, tn.n_parameters, calibration)
    metrics = {**_metrics_json(loop, plan, calibration, duration), **(extra_metrics or {})}
    result = TrainResult(None, metrics, spec, duration, loop.epochs_run, loop.stopped_by)
    result.forecaster = network.Forecaster(tn.net, spec, "unsaved", device)
    if out_dir is not None:
        path = Path(out_dir) / folders.model_folder_name(created)
        card = (spec, metrics, cfg, data_description, command, duration, tn.n_parameters)
        _write_folder_atomically(path, lambda tmp: _write_folder(tmp, tn.net, card, path.name, importance))
        result.path = path
        result.forecaster.version = path.name
        log(f"wrote {path}")
    return result


def _write_folder(tmp: Path, net, card: tuple, name: str, importance: dict) -> None:
    spec, metrics = card[0], card[1]
    network.save_model_folder(tmp, net, spec, metrics)
    write_model_card(tmp, *card, title=name)
    write_importance(tmp, importance)


IMPORTANCE_WINDOWS = 512


def variable_importance(net, pool: WindowPool, split: np.ndarray, device, source: str, seed: int = 0) -> dict:
    """Global variable importance: the explanation pass over (at most IMPORTANCE_WINDOWS)
    validation windows, averaged (forecasting.engine.explanation.global_importance)."""
    vs, vo, vl = validation_windows(pool, split, HORIZON, 12, CONTEXT, IMPORTANCE_WINDOWS, np.random.default_rng(seed))
    if len(vs) == 0:  # tiny data: no held-out window, as in _plan
        vs, vo = np.arange(len(pool.lengths)), np.maximum(1, pool.lengths - HORIZON)
        vl = np.minimum(vo, CONTEXT)
    batches = []
    for i in range(0, len(vs), 128):
        x, _, _ = make_batch(pool, vs[i : i + 128], vo[i : i + 128], vl[i : i + 128])
        batches.append(network.predict_explained(net, x, device)[1])
    return explanation.global_importance(batches, source)


def write_importance(path: Path, importance: dict) -> None:
    """importance.json and its table at the end of MODEL_CARD.md (replacing an older table)."""
    folders.write_importance(path, importance)
    card = Path(path) / folders.CARD_FILE
    text = card.read_text() if card.is_file() else ""
    text = text.split("\n## Variable importance\n")[0].rstrip("\n") + "\n\n"
    card.write_text(text + explanation.importance_markdown(importance))


def _write_folder_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` into a temporary folder next to ``path``, then rename it to ``path`` (atomic on one
    filesystem); on any failure the temporary folder is removed and nothing appears at ``path``."""
    tmp = path.parent / f"{folders.TEMP_PREFIX}{path.name}-{os.getpid()}"
    try:
        write(tmp)
        os.rename(tmp, path)  # fails rather than merging into an existing folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def warm_start_weights(net, folder: Path, vocab: inputs.Vocab) -> int:
    """Copy a trained folder's weights into a freshly built network with the same hyper-parameters.
    Servers are matched by name (a new server starts from the unknown-server embedding)."""
    from safetensors.numpy import load_file  # numpy framework: no torch here

    old = inputs.Vocab.from_json(folders.read_model_folder(folder).spec["vocab"])
    tensors = load_file(str(folder / folders.WEIGHTS_FILE))
    rows = {"input_embeddings.embeddings.server.weight": np.array([old.server_index(s) for s in vocab.servers])}
    if vocab.calendar_slot and not old.calendar_slot:
        # an older folder has no "no calendar" row: the new one starts from hour 0 / weekday 0
        rows["input_embeddings.embeddings.hour.weight"] = np.array([*range(inputs.NO_HOUR), 0])
        rows["input_embeddings.embeddings.weekday.weight"] = np.array([*range(inputs.NO_WEEKDAY), 0])
    return network.load_matching_weights(net, tensors, rows)


# ----------------------------------------------------------------------------------------------
# Interval calibration

TARGET_COVERAGE = 0.80
MIN_PROFILE_POINTS = 2000  # a profile needs this many validation points for its own factor


def _coverage(d: np.ndarray, lo: np.ndarray, hi: np.ndarray, a: float) -> float:
    return float(np.mean((d >= a * lo) & (d <= a * hi)))


def _fit_scale(d: np.ndarray, lo: np.ndarray, hi: np.ndarray, target: float) -> tuple[float, float, float]:
    """The smallest factor in 1.0, 1.05, … 5.0 reaching ``target`` coverage; (factor, raw, calibrated)."""
    best = 1.0
    for a in np.arange(1.0, 5.001, 0.05):
        best = round(float(a), 3)
        if _coverage(d, lo, hi, a) >= target:
            break
    return best, round(_coverage(d, lo, hi, 1.0), 4), round(_coverage(d, lo, hi, best), 4)


def _calibration_points(net, pool: WindowPool, split: np.ndarray, device, cfg: TrainConfig):
    """Per validation point of a named series: (target − median, p10 − median, p90 − median, profile)."""
    rng = np.random.default_rng(cfg.seed + 1)
    vs, vo, vl = validation_windows(pool, split, HORIZON, cfg.val_stride, CONTEXT, 10**9, rng)
    named = pool.server_idx[vs] != 0
    if named.any():
        vs, vo, vl = vs[named], vo[named], vl[named]
    qs = list(QUANTILES)
    i10, i50, i90 = qs.index(0.1), qs.index(0.5), qs.index(0.9)
    cols = [inputs.X_REALS.index(m) for m in TARGETS]
    parts: list[tuple[np.ndarray, ...]] = []
    for i in range(0, len(vs), 256):
        sl = slice(i, i + 256)
        x, y, mask = make_batch(pool, vs[sl], vo[sl], vl[sl])
        z = network.predict_normalised(net, x, device)
        varying = np.abs(x["encoder_cont"][:, :, cols]).max(axis=1) > 0  # (B, M)
        keep = mask & varying[:, None, :]
        prof = np.broadcast_to(pool.profile_idx[vs[sl]][:, None, None], keep.shape)[keep]
        med = z[..., i50][keep]
        parts.append((y[keep] - med, z[..., i10][keep] - med, z[..., i90][keep] - med, prof))
    if not parts or sum(len(p[0]) for p in parts) == 0:
        return None
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def calibrate_intervals(
    net, pool: WindowPool, split: np.ndarray, device, cfg: TrainConfig, target: float = TARGET_COVERAGE
) -> dict:
    """Factors (>= 1) by which spreading the quantiles around the median brings p10-p90 coverage on
    validation windows to ``target``: one overall and one per server profile.

    Calibrated on the named series only (the fleet, CSV and database series): the anonymous generic
    synthetic series are training augmentation, and real data is what the intervals must cover.
    Target dimensions that are constant over the encoder (e.g. the 0.0 filler of single-metric
    CSVs) are left out: they would be covered trivially.
    """
    points = _calibration_points(net, pool, split, device, cfg)
    if points is None:
        return {"interval_scale": 1.0, "by_profile": {}, "coverage": {}}
    d, lo, hi, prof = points
    overall, raw, calibrated = _fit_scale(d, lo, hi, target)
    by_profile, report = {}, {"all": {"raw": raw, "calibrated": calibrated, "scale": overall, "points": len(d)}}
    for p in np.unique(prof):
        sel = prof == p
        if sel.sum() < MIN_PROFILE_POINTS:
            continue
        scale, raw_p, cal_p = _fit_scale(d[sel], lo[sel], hi[sel], target)
        name = pool.vocab.profiles[int(p)]
        by_profile[name] = scale
        report[name] = {"raw": raw_p, "calibrated": cal_p, "scale": scale, "points": int(sel.sum())}
    return {"interval_scale": overall, "by_profile": by_profile, "coverage": report}


# ----------------------------------------------------------------------------------------------
# Model card and backtest figures


def write_model_card(
    path: Path,
    spec: dict,
    metrics: dict,
    cfg: TrainConfig,
    data: str,
    command: str,
    duration: float,
    n_params: int,
    title: str | None = None,
) -> None:
    cfg_json = {k: v for k, v in asdict(cfg).items() if k != "hparams"}
    lines = [
        f"# {title or path.name}",
        "",
        "Temporal Fusion Transformer (pytorch-forecasting network) forecasting cpu_pct, mem_pct, "
        f"disk_io_mb_s and latency_ms {spec['horizon']} steps of {spec['step_minutes']} minutes ahead "
        f"from up to {spec['max_encoder']} steps of context; quantiles {spec['quantiles']}.",
        "",
        "## Data",
        "",
        data or "(not recorded)",
        "",
        "## Command",
        "",
        "```",
        command or "(not recorded)",
        "```",
        "",
        "## Training",
        "",
        f"- duration: {duration / 60:.1f} min on {platform.machine()} ({platform.system()}), "
        f"{metrics['epochs_run']} epochs, stopped by {metrics['stopped_by']}",
        f"- validation pinball loss (normalised units, time-based split): {metrics['val_loss']:.4f} "
        f"on {metrics['val_windows']} windows",
        f"- parameters: {n_params}",
        f"- hyperparameters: `{json.dumps(spec['hparams'], sort_keys=True)}`",
        f"- training settings: `{json.dumps(cfg_json, sort_keys=True)}`",
        f"- server vocabulary: {len(spec['vocab']['servers']) - 1} servers + unknown",
        "",
        "## Files",
        "",
        "`weights.safetensors` (tensors only), `spec.json` (network and input spec), `metrics.json`.",
        "Loading never unpickles anything.",
        "",
    ]
    extra = {k: v for k, v in metrics.items() if k not in {"history"}}
    lines += ["## Metrics", "", "```json", json.dumps(extra, indent=2, sort_keys=True, default=str), "```", ""]
    (path / folders.CARD_FILE).write_text("\n".join(lines))


@dataclass
class BacktestSources:
    """What to backtest a new model on: CSV folders (full series) and/or a held-out simulated fleet."""

    csv_dirs: list[Path] = field(default_factory=list)
    metric: str = "auto"
    exclude: list[str] = field(default_factory=list)
    simulated: bool = False


def backtest_figures(forecaster, sources: BacktestSources) -> dict[str, dict]:
    """Backtest results per source. CSV folders are backtested on their full series (training with
    --csv-fraction 0.6 leaves the last 40 %, which is what the backtest scores); a simulated fleet
    on a held-out seed, with the lead times before its incidents."""
    figures: dict[str, dict] = {}
    for csv_dir in sources.csv_dirs:
        loaded = load_csv_dir(Path(csv_dir), sources.metric, exclude=sources.exclude)
        metrics = {w.server: loaded.metric_of.get(w.server, METRICS) for w in loaded.series}
        figures[f"csv:{csv_dir}"] = bt.run_backtest(loaded.series, forecaster, metrics=metrics or None)
    if sources.simulated:
        end = BACKTEST_START + timedelta(days=7)
        truth = simulate_fleet_truth(servers=fleet_names(20), start=BACKTEST_START, end=end, seed=BACKTEST_SEED)
        result = bt.run_backtest(truth.windows, forecaster)
        result["lead_time"] = bt.lead_time_evaluation(truth.windows, truth.episodes, forecaster)
        figures[f"simulated:20 servers x 7 days, seed {BACKTEST_SEED}"] = result
    return figures


def _card_backtest_section(figures: dict[str, dict]) -> str:
    lines = ["## Backtest (forecasting.engine.backtest protocol)", ""]
    for name, result in figures.items():
        lines += [name, "", "| method | MASE | pinball | p10-p90 coverage | windows |", "|---|---|---|---|---|"]
        for method, row in result["methods"].items():
            lines.append(
                f"| {method} | {row.get('mase', math.nan):.3f} | {row.get('pinball', math.nan):.3f} | "
                f"{row.get('coverage', math.nan):.3f} | {row.get('windows', 0)} |"
            )
        if "lead_time" in result:
            lead = json.dumps(result["lead_time"], indent=2, sort_keys=True, default=folders.json_default)
            lines += ["", "lead time before critical_issue episodes:", "", "```json", lead, "```"]
        lines.append("")
    return "\n".join(lines) + "\n"


def attach_backtest(path: Path | None, sources: BacktestSources, device: str = "auto") -> str:
    """Backtest the new model and add the figures to metrics.json (key "backtest") and the model card."""
    if path is None:
        return "no model folder"
    if not (sources.csv_dirs or sources.simulated):
        return "nothing to backtest (no --csv-dir or --simulated)"
    forecaster = network.load_forecaster(path, device=device)
    try:
        figures = backtest_figures(forecaster, sources)
    except Exception as exc:  # a failed backtest must not lose the trained model
        logger.exception("backtest failed")
        return f"failed ({exc})"
    folders.update_metrics(path, "backtest", figures)
    with (path / folders.CARD_FILE).open("a") as card:
        card.write(_card_backtest_section(figures))
    return "; ".join(f"{name}: tft MASE {r['methods'].get('tft', {}).get('mase', math.nan):.3f}" for name, r in figures.items())


def folder_importance(folder: Path, series: list[SeriesWindow], val_fraction: float, source: str) -> dict:
    """Variable importance of an existing model folder (trained before training recorded it) over
    the validation part (the last ``val_fraction``) of ``series``; written into the folder."""
    forecaster = network.load_forecaster(folder, device="cpu")
    pool = WindowPool(_usable_series(series), forecaster.vocab)
    importance = variable_importance(forecaster.net, pool, _split_points(pool, val_fraction, HORIZON), "cpu", source)
    write_importance(folder, importance)
    return importance


# ----------------------------------------------------------------------------------------------
# Incident-probability recalibration


def attach_probability_recalibration(path: Path | None, series: list[SeriesWindow], val_fraction: float,
                                     device: str = "auto") -> str:  # fmt: skip
    """Fit the isotonic recalibration of prob_30m / prob_8h on the validation tail (the last
    ``val_fraction`` of each training series, held out from the gradient steps) and store it in the
    folder (probability_calibration.json), which serving then applies (engine.probability)."""
    if path is None:
        return "no model folder"
    forecaster = network.load_forecaster(path, device=device)
    try:
        fitted = bt.fit_probability_recalibration(series, forecaster, part="test", fraction=val_fraction)
    except Exception as exc:  # like the backtest: a failed fit must not lose the trained model
        logger.exception("probability recalibration failed")
        return f"failed ({exc})"
    fitted["fitted_on"] = f"validation tail ({val_fraction:g}) of the training series"
    folders.write_probability_calibration(path, fitted)
    return f"fitted on {fitted['origins']} validation forecasts"


# ----------------------------------------------------------------------------------------------
# The event model (engine.event_model): P(an incident starts within 30 min / 8 h)


def attach_event_model(path: Path | None, series: list[SeriesWindow], val_fraction: float, device: str = "auto",
                       learner: str | None = None) -> str:  # fmt: skip
    """Fit the event model on the validation tail of the training series (forecasts the network
    was not fitted on; real and simulated series together, as the network) and store it in the
    folder (event_model.json), which serving then uses for prob_30m / prob_8h. The forecasts are
    blended as served by the folder's blend.json (train_tft fits that first)."""
    if path is None:
        return "no model folder"
    from forecasting.engine import event_training

    forecaster = network.load_forecaster(path, device=device)
    try:
        cfg = event_training.SampleConfig(blend=folders.read_blend(path))  # served blended, when fitted before
        data = event_training.event_samples(series, forecaster, part="test", fraction=val_fraction, cfg=cfg)
        model = event_training.fit_event_model(
            data,
            cfg=cfg,
            learner=learner or event_training.DEFAULT_LEARNER,
            meta={"fitted_on": f"validation tail ({val_fraction:g}) of the training series"},
        )
    except Exception as exc:  # like the backtest: a failed fit must not lose the trained model
        logger.exception("event model fit failed")
        return f"failed ({exc})"
    folders.write_event_model(path, model)
    return f"fitted on {model['samples']} validation origins"
