"""TFT inference: load a model folder safely and forecast a batch of servers.

Imported only by the worker and by training (it imports torch). A model folder holds:

* ``weights.safetensors`` — the network's tensors (safetensors: no code, no pickle);
* ``spec.json`` — network hyperparameters, vocabularies, quantiles, step, horizon, encoder length;
* ``metrics.json`` — validation loss and backtest figures;
* ``MODEL_CARD.md`` — data, command, duration, parameters.

Nothing here unpickles: the network is rebuilt from JSON and the tensors are read with safetensors.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from forecasting import spec as dspec

logger = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.safetensors"
METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
SPEC_FORMAT = "tftsite-tft/1"

DEFAULT_HPARAMS: dict = {
    "hidden_size": 24,
    "attention_head_size": 2,
    "hidden_continuous_size": 8,
    "lstm_layers": 1,
    "dropout": 0.1,
    "embedding_dims": {"server": 4, "profile": 3, "hour": 4, "weekday": 3, "state": 3},
}


class ModelFolderError(Exception):
    """A model folder is missing files or holds something we cannot load."""


def _torch():
    import torch

    return torch


def build_network(hparams: dict, vocab: dspec.Vocab, quantiles: tuple[float, ...], max_encoder: int):
    """The pytorch-forecasting TemporalFusionTransformer, built from JSON-able hyperparameters.

    We feed it tensors our spec builds, and take its output in normalised units: the class's
    output transformer (fit on a TimeSeriesDataSet) is replaced by an identity.
    """
    import warnings

    torch = _torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pytorch_forecasting.metrics import MultiLoss, QuantileLoss
        from pytorch_forecasting.models import TemporalFusionTransformer

    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import (
        InterpretableMultiHeadAttention,
    )

    class _FastAttention(InterpretableMultiHeadAttention):
        """Same parameters and maths as the original, computed with one fused SDPA call for
        all heads; attention weights are not materialised (forecasts do not need them)."""

        def forward(self, q, k, v, mask=None):
            functional = torch.nn.functional
            B, Lq, _ = q.shape  # noqa: N806
            Lk = k.size(1)  # noqa: N806
            qs = torch.stack([layer(q) for layer in self.q_layers], dim=1)  # (B, h, Lq, d)
            ks = torch.stack([layer(k) for layer in self.k_layers], dim=1)  # (B, h, Lk, d)
            vs = self.v_layer(v).unsqueeze(1).expand(-1, self.n_head, -1, -1)
            attn_mask = None if mask is None else (~mask).unsqueeze(1)  # True = attend
            heads = functional.scaled_dot_product_attention(qs, ks, vs, attn_mask=attn_mask)
            heads = self.dropout(heads)
            out = heads.mean(dim=1) if self.n_head > 1 else heads[:, 0]
            out = self.dropout(self.w_h(out))
            dummy = out.new_zeros(()).expand(B, Lq, self.n_head, Lk)
            return out, dummy

    class _TFT(TemporalFusionTransformer):
        def transform_output(self, prediction, target_scale, loss=None):
            # list of (B, H, Q) per target -> (B, H, M, Q), still normalised
            return torch.stack(list(prediction), dim=2)

    cards = vocab.cardinalities
    dims = hparams.get("embedding_dims", DEFAULT_HPARAMS["embedding_dims"])
    embedding_sizes = {name: (cards[name], int(dims[name])) for name in dspec.X_CATEGORICALS}
    q = list(quantiles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = _TFT(
            hidden_size=int(hparams["hidden_size"]),
            lstm_layers=int(hparams.get("lstm_layers", 1)),
            dropout=float(hparams.get("dropout", 0.1)),
            output_size=[len(q)] * len(dspec.TARGETS),
            loss=MultiLoss([QuantileLoss(quantiles=q) for _ in dspec.TARGETS]),
            attention_head_size=int(hparams["attention_head_size"]),
            max_encoder_length=int(max_encoder),
            static_categoricals=list(dspec.STATIC_CATEGORICALS),
            static_reals=list(dspec.STATIC_REALS),
            time_varying_categoricals_encoder=[*dspec.KNOWN_CATEGORICALS, *dspec.ENCODER_CATEGORICALS],
            time_varying_categoricals_decoder=list(dspec.KNOWN_CATEGORICALS),
            time_varying_reals_encoder=[*dspec.KNOWN_REALS, *dspec.ENCODER_REALS],
            time_varying_reals_decoder=list(dspec.KNOWN_REALS),
            x_reals=list(dspec.X_REALS),
            x_categoricals=list(dspec.X_CATEGORICALS),
            hidden_continuous_size=int(hparams.get("hidden_continuous_size", 8)),
            embedding_sizes=embedding_sizes,
            embedding_labels={},
            learning_rate=1e-3,
            log_interval=-1,
            logging_metrics=torch.nn.ModuleList([]),
        )
    net.multihead_attn.__class__ = _FastAttention
    return net


def to_tensors(arrays: dict[str, np.ndarray], device) -> dict:
    torch = _torch()
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}


def resolve_device(device: str = "auto") -> str:
    torch = _torch()
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but CUDA is not available")
        return "cuda:0"
    return device


def read_model_folder(path: Path) -> dict:
    """Spec and metrics of a model folder, checked without building the network.

    Returns {"name", "path", "spec", "metrics", "created_at" (ISO string or None)}; raises
    ModelFolderError with a readable message if the folder is incomplete or malformed.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"{path} is not a directory")
    for name in (SPEC_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise ModelFolderError(f"{path.name}: missing {name}")
    try:
        spec = json.loads((path / SPEC_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"{path.name}: {SPEC_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise ModelFolderError(f"{path.name}: {SPEC_FILE} is not a {SPEC_FORMAT} spec")
    for key in ("hparams", "vocab", "quantiles", "targets", "horizon", "max_encoder", "step_minutes"):
        if key not in spec:
            raise ModelFolderError(f"{path.name}: {SPEC_FILE} lacks '{key}'")
    if list(spec["targets"]) != list(dspec.TARGETS):
        raise ModelFolderError(f"{path.name}: targets {spec['targets']} differ from {list(dspec.TARGETS)}")
    if list(spec.get("x_reals", dspec.X_REALS)) != list(dspec.X_REALS) or list(
        spec.get("x_categoricals", dspec.X_CATEGORICALS)
    ) != list(dspec.X_CATEGORICALS):
        raise ModelFolderError(f"{path.name}: input layout differs from this code's spec")
    try:
        dspec.Vocab.from_json(spec["vocab"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFolderError(f"{path.name}: bad vocabulary ({exc})") from exc
    try:
        from safetensors import safe_open

        with safe_open(str(path / WEIGHTS_FILE), framework="numpy") as f:
            if not list(f.keys()):
                raise ModelFolderError(f"{path.name}: {WEIGHTS_FILE} holds no tensors")
    except ModelFolderError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFolderError(f"{path.name}: {WEIGHTS_FILE} unreadable ({exc})") from exc
    metrics: dict = {}
    if (path / METRICS_FILE).is_file():
        try:
            metrics = json.loads((path / METRICS_FILE).read_text())
        except ValueError as exc:
            raise ModelFolderError(f"{path.name}: {METRICS_FILE} is not valid JSON ({exc})") from exc
    return {
        "name": path.name,
        "path": str(path),
        "spec": spec,
        "metrics": metrics,
        "created_at": spec.get("created_at"),
    }


def save_model_folder(path: Path, net, spec: dict, metrics: dict | None = None) -> None:
    """Write weights (safetensors), spec.json and metrics.json into path (created)."""
    from safetensors.torch import save_model

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # save_model drops the aliases of shared tensors (the TFT shares prescalers and gates)
    save_model(net, str(path / WEIGHTS_FILE), metadata={"format": SPEC_FORMAT})
    (path / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    if metrics is not None:
        (path / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))


class Forecaster:
    """A loaded TFT: ``predict(windows)`` forecasts a batch of servers."""

    def __init__(self, net, spec: dict, version: str, device: str, chunk_size: int | None = None):
        self.net = net
        self.spec = spec
        self.version = version
        self.device = device
        # ~128 windows per forward keeps the activations in cache on CPU; GPUs take bigger chunks
        self.chunk_size = chunk_size or (128 if device == "cpu" else 2048)
        self.vocab = dspec.Vocab.from_json(spec["vocab"])
        self.quantiles = tuple(float(q) for q in spec["quantiles"])
        self.horizon = int(spec["horizon"])
        self.max_encoder = int(spec["max_encoder"])
        self.step_minutes = int(spec["step_minutes"])
        self.interval_scale = float(spec.get("interval_scale", 1.0))
        self.interval_scale_by_profile = {k: float(v) for k, v in spec.get("interval_scale_by_profile", {}).items()}
        self._median_index = min(range(len(self.quantiles)), key=lambda i: abs(self.quantiles[i] - 0.5))
        self._q_index = {}
        for label, q in dspec.SERVED_QUANTILES.items():
            matches = [i for i, x in enumerate(self.quantiles) if math.isclose(x, q)]
            if not matches:
                raise ModelFolderError(f"{version}: model lacks quantile {q}")
            self._q_index[label] = matches[0]

    def predict_array(self, windows: list[dspec.SeriesWindow]) -> np.ndarray:
        """All quantiles, (B, horizon, n_metrics, n_quantiles), sorted and clipped, float32."""
        torch = _torch()
        wrong_step = {w.step_minutes for w in windows} - {self.step_minutes}
        if wrong_step:
            raise ValueError(
                f"model {self.version} forecasts {self.step_minutes}-minute buckets, got windows of "
                f"{sorted(wrong_step)} minutes"
            )
        out = []
        for i in range(0, len(windows), self.chunk_size):
            chunk = windows[i : i + self.chunk_size]
            arrays = dspec.build_inputs(chunk, self.vocab, self.max_encoder, self.horizon)
            with torch.inference_mode():
                z = self.net(to_tensors(arrays, self.device))["prediction"]
                z = z.float().cpu().numpy()
            z = np.sort(z, axis=-1)
            # calibrated spread around the median, per profile (see training.calibrate_intervals)
            alpha = np.array(
                [self.interval_scale_by_profile.get(w.profile, self.interval_scale) for w in chunk], dtype=np.float32
            )
            med = z[..., self._median_index : self._median_index + 1]
            z = med + alpha[:, None, None, None] * (z - med)
            pred = dspec.denormalise(z, arrays["target_scale"])
            pred = np.sort(pred, axis=-1)
            out.append(dspec.clip_ranges(pred.astype(np.float32)))
        if not out:
            return np.zeros((0, self.horizon, len(dspec.TARGETS), len(self.quantiles)), dtype=np.float32)
        return np.concatenate(out, axis=0)

    def predict(self, windows: list[dspec.SeriesWindow]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
        """{server: {metric: {"p10"|"p50"|"p90": array (horizon,)}}} for every window."""
        pred = self.predict_array(windows)
        result: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        for b, w in enumerate(windows):
            result[w.server] = {
                metric: {label: pred[b, :, m, qi] for label, qi in self._q_index.items()}
                for m, metric in enumerate(dspec.TARGETS)
            }
        return result


def load_forecaster(path: Path, device: str = "auto", threads: int | None = None) -> Forecaster:
    """Rebuild the network from spec.json and load weights.safetensors (never unpickles).

    ``threads``: if given, torch's CPU thread count for this process. On a machine whose cores are
    shared with other busy processes, 1 is much faster than 2 (OpenMP threads wait on each other).
    """
    from safetensors.torch import load_model

    if threads:
        _torch().set_num_threads(int(threads))

    started = time.perf_counter()
    info = read_model_folder(Path(path))
    spec = info["spec"]
    dev = resolve_device(device)
    vocab = dspec.Vocab.from_json(spec["vocab"])
    net = build_network(spec["hparams"], vocab, tuple(spec["quantiles"]), int(spec["max_encoder"]))
    try:
        # safetensors only (no pickle); strict: every tensor of the network must be in the file
        load_model(net, str(Path(path) / WEIGHTS_FILE), strict=True, device="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelFolderError(f"{info['name']}: weights do not match spec ({exc})") from exc
    net.eval()
    net.to(dev)
    logger.info("loaded TFT %s on %s in %.2fs", info["name"], dev, time.perf_counter() - started)
    return Forecaster(net, spec, info["name"], dev)
