"""Training the TFT: data loading (database, CSV folders, simulator), window sampling, the loop,
and writing a model folder (safetensors + JSON, see forecasting.tft).

Used by ``python manage.py train_tft``; importable without Django for the CSV/simulated paths.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from forecasting import spec as dspec
from ingest.contract import METRICS, PERCENT_METRICS, STATES, profile_for

logger = logging.getLogger(__name__)

STATE_INDEX = {s: i for i, s in enumerate(STATES)}


# ----------------------------------------------------------------------------------------------
# Data sources -> list[SeriesWindow] (full histories on a regular grid, NaN for gaps)


def grid_series(
    server: str,
    profile: str,
    timestamps: np.ndarray,
    values: np.ndarray,
    states: np.ndarray | None = None,
    step_minutes: int = dspec.STEP_MINUTES,
) -> dspec.SeriesWindow | None:
    """Place bucket rows (epoch-minute timestamps, any order, duplicates averaged) on a regular grid."""
    if len(timestamps) == 0:
        return None
    ts = (np.asarray(timestamps, dtype=np.int64) // step_minutes) * step_minutes
    first = int(ts.min())
    pos = (ts - first) // step_minutes
    n = int(pos.max()) + 1
    sums = np.zeros((n, len(METRICS)), dtype=np.float64)
    counts = np.zeros(n, dtype=np.float64)
    np.add.at(sums, pos, np.asarray(values, dtype=np.float64))
    np.add.at(counts, pos, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = (sums / counts[:, None]).astype(np.float32)
    grid[counts == 0] = np.nan
    st = np.full(n, -1, dtype=np.int8)
    if states is not None:
        st[pos] = np.asarray(states, dtype=np.int8)  # last row of a bucket wins
        st[counts == 0] = -1
    return dspec.SeriesWindow(
        server=server,
        profile=profile,
        start=datetime.fromtimestamp(first * 60, tz=UTC),
        step_minutes=step_minutes,
        values=grid,
        states=st,
    )


def load_db_series(
    servers: list[str] | None = None, step_minutes: int = dspec.STEP_MINUTES
) -> list[dspec.SeriesWindow]:
    """Every (or the named) server's MetricBucket history as a gridded series."""
    from ingest.models import MetricBucket, Server, dominant_state

    qs = Server.objects.all().order_by("name")
    if servers:
        qs = qs.filter(name__in=servers)
    result = []
    for server in qs:
        rows = list(
            MetricBucket.objects.filter(server=server, count__gt=0)
            .order_by("bucket_start")
            .values("bucket_start", "count", *(f"{m}_sum" for m in METRICS), *(f"n_{s}" for s in STATES))
        )
        if not rows:
            continue
        ts = np.array([int(r["bucket_start"].timestamp() // 60) for r in rows], dtype=np.int64)
        vals = np.array([[r[f"{m}_sum"] / r["count"] for m in METRICS] for r in rows], dtype=np.float32)
        st = np.array([STATE_INDEX[dominant_state({s: r[f"n_{s}"] for s in STATES})] for r in rows], dtype=np.int8)
        w = grid_series(server.name, server.profile, ts, vals, st, step_minutes)
        if w is not None:
            result.append(w)
    return result


NAB_METRIC_BY_KEYWORD = (("cpu", "cpu_pct"), ("disk", "disk_io_mb_s"), ("network", "disk_io_mb_s"))


def nab_metric_for(name: str) -> str:
    lowered = name.lower()
    for key, metric in NAB_METRIC_BY_KEYWORD:
        if key in lowered:
            return metric
    return "cpu_pct"


def load_csv_series(
    csv_dir: Path,
    metric: str | None = None,
    fraction: float = 1.0,
    step_minutes: int = dspec.STEP_MINUTES,
) -> list[dspec.SeriesWindow]:
    """CSV files of a folder as gridded series.

    Contract-shaped files (timestamp, server_name, the 4 metrics[, state]) are rolled up to buckets
    per server. NAB-layout files (timestamp, value) become one series named after the file, the
    value going to ``metric`` ("auto": from the file name: cpu→cpu_pct, disk/network→disk_io_mb_s)
    and the other metrics 0.0. ``fraction`` keeps the first part of each series (e.g. 0.6 to train
    on the first 60 % and leave the rest to a backtest).
    """
    import pandas as pd

    files = sorted(Path(csv_dir).glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no *.csv files in {csv_dir}")
    result: list[dspec.SeriesWindow] = []
    for f in files:
        df = pd.read_csv(f)
        cols = set(df.columns)
        ts = pd.to_datetime(df["timestamp"], utc=True, format="mixed")
        minutes = ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(minutes=1)).to_numpy(dtype=np.int64)
        if {"server_name", *METRICS} <= cols:
            for name, idx in df.groupby("server_name").groups.items():
                idx = np.asarray(idx)
                vals = df.loc[idx, list(METRICS)].to_numpy(dtype=np.float32)
                st = None
                if "state" in cols:
                    st = np.array([STATE_INDEX.get(s, -1) for s in df.loc[idx, "state"]], dtype=np.int8)
                w = _grid_records(str(name), minutes[idx], vals, st, step_minutes)
                if w is not None:
                    result.append(w)
        elif {"timestamp", "value"} <= cols:
            m = nab_metric_for(f.stem) if metric in (None, "auto") else metric
            if m not in METRICS:
                raise ValueError(f"--metric must be one of {METRICS} or auto, got {m!r}")
            vals = np.zeros((len(df), len(METRICS)), dtype=np.float32)
            vals[:, METRICS.index(m)] = df["value"].to_numpy(dtype=np.float32)
            w = grid_series(f.stem, "generic", minutes, vals, None, step_minutes)
            if w is not None:
                result.append(w)
        else:
            raise ValueError(f"{f.name}: neither contract columns nor timestamp,value")
    if fraction < 1.0:
        result = [_head(w, fraction) for w in result]
    return result


def _grid_records(server, minutes, vals, states, step_minutes) -> dspec.SeriesWindow | None:
    """Raw records -> bucket means and dominant state (ties to the more severe state)."""
    if states is None or (states < 0).all():
        return grid_series(server, profile_for(server), minutes, vals, None, step_minutes)
    b = (minutes // step_minutes) * step_minutes
    w = grid_series(server, profile_for(server), minutes, vals, None, step_minutes)
    first = int(b.min())
    pos = (b - first) // step_minutes
    counts = np.zeros((len(w.values), len(STATES)), dtype=np.int64)
    ok = states >= 0
    np.add.at(counts, (pos[ok], states[ok].astype(np.int64)), 1)
    dom = (counts * (len(STATES) + 1) + np.arange(len(STATES))[None, :]).argmax(axis=1)
    w.states = np.where(counts.sum(axis=1) > 0, dom, -1).astype(np.int8)
    return w


def _head(w: dspec.SeriesWindow, fraction: float) -> dspec.SeriesWindow:
    n = max(1, int(len(w.values) * fraction))
    return dspec.SeriesWindow(w.server, w.profile, w.start, w.step_minutes, w.values[:n], w.states[:n])


def load_simulated_series(n_servers: int, days: float, seed: int, step_minutes: int = dspec.STEP_MINUTES):
    from forecasting.simulator import fleet_names, simulate_buckets

    end = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, fixed so a seed always means the same data
    start = end - timedelta(days=days)
    return simulate_buckets(servers=fleet_names(n_servers), start=start, end=end, seed=seed, step_minutes=step_minutes)


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


class WindowPool:
    """All training series concatenated, for fast vectorised window gathering."""

    def __init__(self, series: list[dspec.SeriesWindow], vocab: dspec.Vocab):
        self.series = series
        self.lengths = np.array([len(w.values) for w in series], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.values = np.concatenate([w.values for w in series], axis=0).astype(np.float32)
        self.states = np.concatenate([w.states for w in series], axis=0).astype(np.int8)
        self.start_minutes = np.array([dspec._epoch_minutes(w.start) for w in series], dtype=np.int64)
        self.server_idx = np.array([vocab.server_index(w.server) for w in series], dtype=np.int64)
        self.profile_idx = np.array([vocab.profile_index(w.profile) for w in series], dtype=np.int64)
        self.step = series[0].step_minutes
        self.vocab = vocab

    def gather(self, sid: np.ndarray, origin: np.ndarray, enc_len: np.ndarray, horizon: int = dspec.HORIZON):
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
            for m, metric in enumerate(dspec.TARGETS):
                if metric in dspec.METRIC_RANGES and math.isinf(dspec.METRIC_RANGES[metric][1]):
                    f = np.exp(rng.uniform(-cfg.scale_augment, cfg.scale_augment, size=len(sid))).astype(np.float32)
                    enc[:, :, m] *= f[:, None]
                    target[:, :, m] *= f[:, None]
    x = dspec.build_arrays(enc, enc_len, st, start, server_idx, profile_idx, pool.step)
    ts = x["target_scale"]
    y = (target - ts[:, None, :, 0]) / ts[:, None, :, 1]
    mask = ~np.isnan(y)
    y = np.clip(np.nan_to_num(y, nan=0.0), -100.0, 100.0).astype(np.float32)
    return x, y, mask


def pinball(pred, y, mask, quantiles):
    """Mean pinball loss of (B, H, M, Q) normalised predictions against (B, H, M) targets."""
    import torch

    q = torch.as_tensor(quantiles, dtype=pred.dtype, device=pred.device)
    err = y.unsqueeze(-1) - pred
    loss = torch.maximum(q * err, (q - 1) * err)
    m = mask.unsqueeze(-1).to(pred.dtype)
    return (loss * m).sum() / (m.sum() * len(quantiles)).clamp_min(1.0)


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


def model_folder_name(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"tft_model_{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def train(
    series: list[dspec.SeriesWindow],
    cfg: TrainConfig,
    out_dir: Path | None = None,
    progress: bool = True,
    data_description: str = "",
    command: str = "",
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a TFT on ``series`` and (if out_dir) write ``out_dir/tft_model_<UTC time>/``."""
    import torch

    from forecasting import tft

    log = log or logger.info
    started = time.perf_counter()
    created = datetime.now(UTC)
    series = [w for w in series if len(w.values) >= 2 and not np.isnan(w.values).all()]
    if not series:
        raise ValueError("no usable training series (need at least 2 buckets each)")
    steps = {w.step_minutes for w in series}
    if len(steps) != 1:
        raise ValueError(f"series have different steps: {sorted(steps)}")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = tft.resolve_device(cfg.device)

    hparams = {**tft.DEFAULT_HPARAMS, **cfg.hparams}
    vocab = dspec.Vocab(servers=(dspec.UNKNOWN, *sorted({w.server for w in series} - {dspec.UNKNOWN})))
    net = tft.build_network(hparams, vocab, dspec.QUANTILES, dspec.MAX_ENCODER).to(device)
    n_params = sum(p.numel() for p in net.parameters())
    pool = WindowPool(series, vocab)
    H = dspec.HORIZON  # noqa: N806
    split = _split_points(pool, cfg.val_fraction, H)
    cand, max_origin = train_candidates(pool, split, H)
    if len(cand) == 0:  # tiny data: train on whatever exists, validate on the same
        split = pool.lengths.copy()
        cand, max_origin = np.arange(len(series)), np.maximum(1, pool.lengths - 1)
    vs, vo, vl = validation_windows(pool, split, H, cfg.val_stride, dspec.MAX_ENCODER, cfg.max_val_windows, rng)
    if len(vs) == 0:  # no room for a held-out window: validate on the last training origins
        vs = cand.copy()
        vo = np.maximum(1, max_origin[cand])
        vl = np.minimum(vo, dspec.MAX_ENCODER)
    weights = np.maximum(max_origin[cand], 1).astype(np.float64)
    weights /= weights.sum()
    log(
        f"training on {len(series)} series, {int(pool.lengths.sum())} buckets, {len(vs)} validation windows, "
        f"{n_params} parameters, device {device}"
    )

    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    total_steps = max(1, cfg.epochs * cfg.batches_per_epoch)

    def set_lr(step: int) -> None:
        """Warm-up then cosine decay over the progress of the run: whichever of the step budget
        and the time budget is further along, so a time-limited run still anneals."""
        progress = max(step / total_steps, (time.perf_counter() - started) / (cfg.max_minutes * 60.0))
        progress = min(1.0, progress)
        warm = 0.05
        if progress < warm:
            factor = 0.1 + 0.9 * progress / warm
        else:
            factor = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm)))
        for group in opt.param_groups:
            group["lr"] = cfg.learning_rate * factor

    quantiles = list(dspec.QUANTILES)

    def evaluate() -> float:
        net.eval()
        total, count = 0.0, 0
        with torch.inference_mode():
            for i in range(0, len(vs), 256):
                x, y, mask = make_batch(pool, vs[i : i + 256], vo[i : i + 256], vl[i : i + 256])
                pred = net(tft.to_tensors(x, device))["prediction"]
                n = int(mask.sum())
                loss = pinball(pred, torch.from_numpy(y).to(device), torch.from_numpy(mask).to(device), quantiles)
                total += float(loss) * n
                count += n
        net.train()
        return total / max(count, 1)

    best = math.inf
    best_state = copy.deepcopy(net.state_dict())
    history = []
    bad = 0
    stopped_by = "epochs"
    deadline = started + cfg.max_minutes * 60.0
    epoch = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc="train_tft", unit="batch", dynamic_ncols=True)
    net.train()
    global_step = 0
    set_lr(0)
    for epoch in range(1, cfg.epochs + 1):
        running = 0.0
        for b in range(cfg.batches_per_epoch):
            k = rng.choice(len(cand), size=cfg.batch_size, p=weights)
            sid = cand[k]
            origin = 1 + (rng.random(cfg.batch_size) * max_origin[sid]).astype(np.int64)
            origin = np.minimum(origin, max_origin[sid])
            avail = np.minimum(origin, dspec.MAX_ENCODER)
            rand_len = 1 + (rng.random(cfg.batch_size) * avail).astype(np.int64)
            enc_len = np.where(rng.random(cfg.batch_size) < cfg.full_encoder_prob, avail, rand_len)
            x, y, mask = make_batch(pool, sid, origin, enc_len, rng, cfg)
            pred = net(tft.to_tensors(x, device))["prediction"]
            loss = pinball(pred, torch.from_numpy(y).to(device), torch.from_numpy(mask).to(device), quantiles)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.gradient_clip)
            opt.step()
            global_step += 1
            set_lr(global_step)
            running += loss.detach().item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{running / (b + 1):.4f}", best=f"{best:.4f}")
            if time.perf_counter() > deadline:
                break
        val = evaluate()
        history.append({"epoch": epoch, "train_loss": running / max(1, b + 1), "val_loss": val})
        log(f"epoch {epoch}: train {running / max(1, b + 1):.4f} val {val:.4f}")
        if val < best - 1e-5:
            best = val
            best_state = copy.deepcopy(net.state_dict())
            bad = 0
        else:
            bad += 1
        if time.perf_counter() > deadline:
            stopped_by = "max_minutes"
            break
        if bad >= cfg.patience:
            stopped_by = "early_stopping"
            break
    if bar is not None:
        bar.close()
    net.load_state_dict(best_state)
    net.eval()
    calibration = calibrate_intervals(net, pool, split, device, cfg)
    log(f"interval calibration on validation (p10-p90 coverage): {json.dumps(calibration['coverage'])}")
    duration = time.perf_counter() - started

    spec = {
        "format": tft.SPEC_FORMAT,
        "created_at": created.isoformat(),
        "targets": list(dspec.TARGETS),
        "quantiles": quantiles,
        "served_quantiles": dspec.SERVED_QUANTILES,
        "step_minutes": int(pool.step),
        "horizon": H,
        "max_encoder": dspec.MAX_ENCODER,
        "hparams": hparams,
        "vocab": vocab.to_json(),
        "x_reals": list(dspec.X_REALS),
        "x_categoricals": list(dspec.X_CATEGORICALS),
        "normalisation": {
            "kind": "per-window encoder mean/std",
            "scale_floor": dspec.SCALE_FLOOR,
            "scale_rel_floor": dspec.SCALE_REL_FLOOR,
        },
        "metric_ranges": {m: [lo, None if math.isinf(hi) else hi] for m, (lo, hi) in dspec.METRIC_RANGES.items()},
        "n_parameters": n_params,
        # quantiles are spread around the median by this factor (calibrated on validation windows)
        "interval_scale": calibration["interval_scale"],
        "interval_scale_by_profile": calibration["by_profile"],
    }
    metrics = {
        "val_loss": best,
        "val_windows": len(vs),
        "val_coverage_p10_p90": calibration["coverage"],
        "history": history,
        "epochs_run": epoch,
        "stopped_by": stopped_by,
        "duration_s": round(duration, 1),
    }
    result = TrainResult(None, metrics, spec, duration, epoch, stopped_by)
    from forecasting.tft import Forecaster

    net_cpu = net
    result.forecaster = Forecaster(net_cpu, spec, "unsaved", device)
    if out_dir is not None:
        path = Path(out_dir) / model_folder_name(created)
        tft.save_model_folder(path, net, spec, metrics)
        write_model_card(path, spec, metrics, cfg, data_description, command, duration, n_params)
        result.path = path
        result.forecaster.version = path.name
        log(f"wrote {path}")
    return result


TARGET_COVERAGE = 0.80


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
    import torch

    from forecasting import tft

    rng = np.random.default_rng(cfg.seed + 1)
    vs, vo, vl = validation_windows(pool, split, dspec.HORIZON, cfg.val_stride, dspec.MAX_ENCODER, 10**9, rng)
    named = pool.server_idx[vs] != 0
    if named.any():
        vs, vo, vl = vs[named], vo[named], vl[named]
    qs = list(dspec.QUANTILES)
    i10, i50, i90 = qs.index(0.1), qs.index(0.5), qs.index(0.9)
    parts: list[tuple[np.ndarray, ...]] = []
    cols = [dspec.X_REALS.index(m) for m in dspec.TARGETS]
    with torch.inference_mode():
        for i in range(0, len(vs), 256):
            sl = slice(i, i + 256)
            x, y, mask = make_batch(pool, vs[sl], vo[sl], vl[sl])
            z = np.sort(net(tft.to_tensors(x, device))["prediction"].float().cpu().numpy(), axis=-1)
            varying = np.abs(x["encoder_cont"][:, :, cols]).max(axis=1) > 0  # (B, M)
            keep = mask & varying[:, None, :]
            prof = np.broadcast_to(pool.profile_idx[vs[sl]][:, None, None], keep.shape)[keep]
            med = z[..., i50][keep]
            parts.append((y[keep] - med, z[..., i10][keep] - med, z[..., i90][keep] - med, prof))
    if not parts or sum(len(p[0]) for p in parts) == 0:
        return {"interval_scale": 1.0, "by_profile": {}, "coverage": {}}
    d, lo, hi, prof = (np.concatenate(p) for p in zip(*parts, strict=True))

    def fit(sel: np.ndarray) -> tuple[float, float, float]:
        dd, ll, hh = d[sel], lo[sel], hi[sel]

        def coverage(a: float) -> float:
            return float(np.mean((dd >= a * ll) & (dd <= a * hh)))

        best = 1.0
        for a in np.arange(1.0, 5.001, 0.05):
            best = round(float(a), 3)
            if coverage(a) >= target:
                break
        return best, round(coverage(1.0), 4), round(coverage(best), 4)

    overall, raw, calibrated = fit(np.ones(len(d), dtype=bool))
    by_profile, report = {}, {"all": {"raw": raw, "calibrated": calibrated, "scale": overall, "points": len(d)}}
    vocab_profiles = pool.vocab.profiles
    for p in np.unique(prof):
        sel = prof == p
        if sel.sum() < 2000:
            continue
        scale, raw_p, cal_p = fit(sel)
        name = vocab_profiles[int(p)]
        by_profile[name] = scale
        report[name] = {"raw": raw_p, "calibrated": cal_p, "scale": scale, "points": int(sel.sum())}
    return {"interval_scale": overall, "by_profile": by_profile, "coverage": report}


def write_model_card(
    path: Path, spec: dict, metrics: dict, cfg: TrainConfig, data: str, command: str, duration: float, n_params: int
) -> None:
    cfg_json = {k: v for k, v in asdict(cfg).items() if k != "hparams"}
    lines = [
        f"# {path.name}",
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
    (path / "MODEL_CARD.md").write_text("\n".join(lines))


def attach_backtest(path: Path | None, opts: dict, device: str = "auto") -> str:
    """Backtest the new model with forecasting.backtest (if that module is there) and add the
    figures to metrics.json (key "backtest") and the model card.

    CSV folders are backtested on their full series (training with --csv-fraction 0.6 leaves the
    last 40 %, which is what the backtest scores); a simulated fleet is backtested on a held-out
    seed (1000), with the lead times before its incidents.
    """
    if path is None:
        return "no model folder"
    try:
        from forecasting import backtest as bt
    except ImportError:
        return "forecasting.backtest not available"
    if not hasattr(bt, "run_backtest"):
        return "forecasting.backtest.run_backtest not available"
    from forecasting.tft import load_forecaster

    fc = load_forecaster(path, device=device)
    figures: dict = {}
    notes = []
    try:
        for csv_dir in opts.get("csv_dir") or []:
            series, mapped = bt.load_csv_dir(Path(csv_dir), metric=opts.get("metric", "auto"))
            metrics = {w.server: mapped.get(w.server, METRICS) for w in series} if mapped else None
            result = bt.run_backtest(series, fc, metrics=metrics)
            figures[f"csv:{csv_dir}"] = result
            tft_row = result["methods"].get("tft", {})
            notes.append(f"{csv_dir}: tft MASE {tft_row.get('mase', math.nan):.3f}")
        if opts.get("simulated"):
            from forecasting.simulator import fleet_names, simulate_fleet_truth

            start = datetime(2026, 3, 2, tzinfo=UTC)
            truth = simulate_fleet_truth(servers=fleet_names(20), start=start, end=start + timedelta(days=7), seed=1000)
            result = bt.run_backtest(truth.windows, fc)
            if hasattr(bt, "lead_time_evaluation"):
                result["lead_time"] = bt.lead_time_evaluation(truth.windows, truth.episodes, fc)
            figures["simulated:20 servers x 7 days, seed 1000"] = result
            notes.append(f"simulated: tft MASE {result['methods']['tft']['mase']:.3f}")
    except Exception as exc:  # a failed backtest must not lose the trained model
        logger.exception("backtest failed")
        notes.append(f"failed ({exc})")
    if not figures:
        return "; ".join(notes) or "nothing to backtest (no --csv-dir or --simulated)"
    metrics_path = path / "metrics.json"
    metrics_json = json.loads(metrics_path.read_text())
    metrics_json["backtest"] = figures
    metrics_path.write_text(json.dumps(metrics_json, indent=2, sort_keys=True, default=_json_default))
    with (path / "MODEL_CARD.md").open("a") as card:
        card.write("## Backtest (forecasting.backtest protocol)\n\n")
        for name, result in figures.items():
            card.write(f"{name}\n\n| method | MASE | pinball | p10-p90 coverage | windows |\n|---|---|---|---|---|\n")
            for method, row in result["methods"].items():
                card.write(
                    f"| {method} | {row.get('mase', math.nan):.3f} | {row.get('pinball', math.nan):.3f} | "
                    f"{row.get('coverage', math.nan):.3f} | {row.get('windows', 0)} |\n"
                )
            if "lead_time" in result:
                card.write("\nlead time before critical_issue episodes:\n\n```json\n")
                card.write(json.dumps(result["lead_time"], indent=2, sort_keys=True, default=_json_default))
                card.write("\n```\n")
            card.write("\n")
    return "; ".join(notes)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


# ----------------------------------------------------------------------------------------------
# Generic synthetic series: varied, real-looking single-metric behaviour (level shifts, spikes,
# heavy-tailed and autocorrelated noise, optional daily/weekly cycles, trends, idle zeros), so the
# model generalises beyond the simulator's fleet and a handful of real series.


def _generic_path(rng: np.random.Generator, n: int, step_minutes: int, bounded: bool) -> np.ndarray:
    per_day = 1440 // step_minutes
    t = np.arange(n)
    level = rng.uniform(0.5, 85.0) if bounded else float(np.exp(rng.uniform(np.log(1e-2), np.log(1e6))))
    if bounded and rng.random() < 0.3:
        level = rng.uniform(0.05, 3.0)  # nearly idle CPU
    rel_sd = float(np.exp(rng.uniform(np.log(0.005), np.log(0.4))))
    phi = rng.uniform(0.0, 0.97)
    eps = rng.standard_t(df=rng.uniform(2.5, 30.0), size=n)
    noise = np.empty(n)
    acc = 0.0
    for i in range(n):  # AR(1), n is a few thousand
        acc = phi * acc + eps[i]
        noise[i] = acc
    noise *= np.sqrt(1 - phi**2) * rel_sd
    mult = np.ones(n)
    if rng.random() < 0.6:  # daily cycle, optionally lighter weekends
        amp = rng.uniform(0.05, 0.7)
        phase = rng.uniform(0, 2 * np.pi)
        shape = np.sin(2 * np.pi * t / per_day + phase)
        if rng.random() < 0.5:
            shape = np.maximum(shape, rng.uniform(-1, 0.3))  # business-hours plateau
        mult *= 1 + amp * shape
        if rng.random() < 0.3:
            day = (t // per_day + rng.integers(7)) % 7
            mult *= np.where(day >= 5, rng.uniform(0.4, 0.95), 1.0)
    shifts = rng.poisson(rng.uniform(0, 4) * n / (7 * per_day))
    for _ in range(shifts):  # persistent level shifts
        at = rng.integers(n)
        mult[at:] *= float(np.exp(rng.normal(0, 0.6)))
    if rng.random() < 0.25:  # slow trend
        mult *= np.exp(np.linspace(0, rng.normal(0, 0.5), n))
    x = level * mult * (1 + noise)
    spike_rate = float(np.exp(rng.uniform(np.log(1e-4), np.log(0.05))))
    starts = np.nonzero(rng.random(n) < spike_rate)[0]
    for s in starts:  # transient spikes
        d = int(rng.integers(1, 8))
        x[s : s + d] *= float(np.exp(rng.uniform(0.3, 3.0)))
    if not bounded and rng.random() < 0.2:  # idle periods at exactly zero
        x[rng.random(n) < rng.uniform(0.05, 0.6)] = 0.0
    x = np.maximum(x, 0.0)
    if bounded:
        p90 = float(np.quantile(x, 0.9))
        if p90 > 95.0:  # keep saturation occasional, not the norm
            x *= rng.uniform(0.5, 0.95) * 95.0 / p90
        x = np.minimum(x, 100.0)
    if rng.random() < 0.3:  # quantised readings
        q = 10 ** np.floor(np.log10(max(level, 1e-6)) - rng.integers(1, 3))
        x = np.round(x / q) * q
    return x.astype(np.float32)


def load_generic_series(
    n_series: int, days: float, seed: int, step_minutes: int = dspec.STEP_MINUTES
) -> list[dspec.SeriesWindow]:
    """``n_series`` generic synthetic series (profile "generic"); about half carry a single metric
    (the others 0.0, like NAB-layout CSVs), the rest all four (independent behaviours)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    n = int(days * 1440 // step_minutes)
    end = datetime(2026, 1, 5, tzinfo=UTC)
    start = end - timedelta(minutes=step_minutes * n)
    out = []
    for _ in range(n_series):
        values = np.zeros((n, len(METRICS)), dtype=np.float32)
        slots = [int(rng.integers(len(METRICS)))] if rng.random() < 0.5 else list(range(len(METRICS)))
        for m in slots:
            values[:, m] = _generic_path(rng, n, step_minutes, METRICS[m] in PERCENT_METRICS)
        if rng.random() < 0.2:  # some gaps
            for _ in range(int(rng.integers(1, 5))):
                at = int(rng.integers(n))
                values[at : at + int(rng.integers(1, 30))] = np.nan
        # anonymous: no server embedding to learn, they train the "unknown server" path
        out.append(dspec.SeriesWindow(dspec.UNKNOWN, "generic", start, step_minutes, values))
    return out
