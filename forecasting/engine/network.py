"""The TFT network: the only module that imports torch (and pytorch-forecasting).

Builds the network from JSON-able hyperparameters, loads and saves its weights (safetensors: no
pickle), forecasts batches of series windows (``Forecaster``) and does the tensor work of training
(``TrainingNetwork``), so the training loop itself stays numpy. Imported by the worker
(forecasting.runs.inference), training and the commands that train or backtest, never by the web.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from forecasting.engine import explanation, folders, inputs
from forecasting.engine.explanation import BAND_STEPS, DAY_STEPS, Attributions
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import SERVED_QUANTILES, TARGETS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pytorch_forecasting.metrics import MultiLoss, QuantileLoss
    from pytorch_forecasting.models import TemporalFusionTransformer
    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import InterpretableMultiHeadAttention

logger = logging.getLogger(__name__)

DEFAULT_HPARAMS: dict = {
    "hidden_size": 24,
    "attention_head_size": 2,
    "hidden_continuous_size": 8,
    "lstm_layers": 1,
    "dropout": 0.1,
    "embedding_dims": {"server": 4, "profile": 3, "hour": 4, "weekday": 3, "state": 3},
}


# True inside predict_explained: the attention also returns its weights (a context variable, so a
# forecaster shared by threads never sees another call's mode).
_MATERIALISE = contextvars.ContextVar("materialise_attention", default=False)
# The explanation's attention is that of every 4th forecast step (24 of 96): the summary is an average
# over the horizon, and materialising all 96 rows doubled the cost of the forward pass (bench/predict.py).
EXPLAIN_QUERY_STRIDE = 4


class _FastAttention(InterpretableMultiHeadAttention):
    """Same parameters and maths as the original, computed with one fused SDPA call for all heads;
    attention weights are not materialised (forecasts do not need them) unless an explanation
    pass asks for them (``_MATERIALISE``): then the weights of every EXPLAIN_QUERY_STRIDE-th
    forecast step are computed besides (the output stays the fused one, so forecasts are identical)."""

    def forward(self, q, k, v, mask=None):
        B, Lq, _ = q.shape  # noqa: N806
        Lk = k.size(1)  # noqa: N806
        qs = torch.stack([layer(q) for layer in self.q_layers], dim=1)  # (B, h, Lq, d)
        ks = torch.stack([layer(k) for layer in self.k_layers], dim=1)  # (B, h, Lk, d)
        vs = self.v_layer(v).unsqueeze(1).expand(-1, self.n_head, -1, -1)
        attn_mask = None if mask is None else (~mask).unsqueeze(1)  # True = attend
        heads = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, attn_mask=attn_mask)
        heads = self.dropout(heads)
        out = heads.mean(dim=1) if self.n_head > 1 else heads[:, 0]
        out = self.dropout(self.w_h(out))
        if _MATERIALISE.get():
            return out, self._weights(qs[:, :, ::EXPLAIN_QUERY_STRIDE], ks, attn_mask)
        dummy = out.new_zeros(()).expand(B, Lq, self.n_head, Lk)
        return out, dummy


    @staticmethod
    def _weights(qs, ks, attn_mask):
        """Softmax(QKᵀ/√d) of the given query rows, as the original returns them: (B, Lq', h, Lk)."""
        scores = qs @ ks.transpose(-1, -2) / math.sqrt(qs.size(-1))
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask[:, :, ::EXPLAIN_QUERY_STRIDE], float("-inf"))
        return torch.softmax(scores, dim=-1).permute(0, 2, 1, 3)


class _TFT(TemporalFusionTransformer):
    def transform_output(self, prediction, target_scale, loss=None):
        # list of (B, H, Q) per target -> (B, H, M, Q), still normalised
        return torch.stack(list(prediction), dim=2)


def build_network(hparams: dict, vocab: inputs.Vocab, quantiles: tuple[float, ...], max_encoder: int):
    """The pytorch-forecasting TemporalFusionTransformer, built from JSON-able hyperparameters.

    We feed it tensors our inputs module builds, and take its output in normalised units: the
    class's output transformer (fit on a TimeSeriesDataSet) is replaced by an identity.
    """
    cards = vocab.cardinalities
    dims = hparams.get("embedding_dims", DEFAULT_HPARAMS["embedding_dims"])
    embedding_sizes = {name: (cards[name], int(dims[name])) for name in inputs.X_CATEGORICALS}
    q = list(quantiles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = _TFT(
            hidden_size=int(hparams["hidden_size"]),
            lstm_layers=int(hparams.get("lstm_layers", 1)),
            dropout=float(hparams.get("dropout", 0.1)),
            output_size=[len(q)] * len(TARGETS),
            loss=MultiLoss([QuantileLoss(quantiles=q) for _ in TARGETS]),
            attention_head_size=int(hparams["attention_head_size"]),
            max_encoder_length=int(max_encoder),
            static_categoricals=list(inputs.STATIC_CATEGORICALS),
            static_reals=list(inputs.STATIC_REALS),
            time_varying_categoricals_encoder=[*inputs.KNOWN_CATEGORICALS, *inputs.ENCODER_CATEGORICALS],
            time_varying_categoricals_decoder=list(inputs.KNOWN_CATEGORICALS),
            time_varying_reals_encoder=[*inputs.KNOWN_REALS, *inputs.ENCODER_REALS],
            time_varying_reals_decoder=list(inputs.KNOWN_REALS),
            x_reals=list(inputs.X_REALS),
            x_categoricals=list(inputs.X_CATEGORICALS),
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
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but CUDA is not available")
        return "cuda:0"
    return device


def set_threads(threads: int | None) -> None:
    """torch's CPU thread count for this process (None or 0: torch's default). On a machine whose
    cores are shared with other busy processes, 1 is much faster than 2 (OpenMP threads wait)."""
    if threads:
        torch.set_num_threads(int(threads))


def seed(value: int) -> None:
    torch.manual_seed(value)


def predict_normalised(net, arrays: dict[str, np.ndarray], device) -> np.ndarray:
    """The network's sorted quantiles (B, H, M, Q) in normalised units, without gradients."""
    with torch.inference_mode():
        z = net(to_tensors(arrays, device))["prediction"].float().cpu().numpy()
    return np.sort(z, axis=-1)


def _attributions(net, out: dict, lengths: torch.Tensor) -> Attributions:
    """Variable-selection weights per group and encoder attention from an explained forward."""
    B = lengths.size(0)  # noqa: N806
    enc = out["encoder_variables"].reshape(B, -1, len(net.encoder_variables)).float()
    L = enc.size(1)  # noqa: N806
    steps = torch.arange(L, device=lengths.device)
    valid = (steps[None, :] < lengths[:, None]).float()  # (B, L)
    enc = (enc * valid[:, :, None]).sum(1) / lengths[:, None].float()
    dec = out["decoder_variables"].reshape(B, -1, len(net.decoder_variables)).float().mean(1)
    static = out["static_variables"].reshape(B, len(net.static_variables)).float()
    # (B, H', heads, L) of every EXPLAIN_QUERY_STRIDE-th forecast step -> mean over heads,
    # renormalised to the encoder per forecast step
    att = out["encoder_attention"].float().mean(2)
    att = att / att.sum(-1, keepdim=True).clamp_min(1e-12)
    h = torch.arange(att.size(1), device=lengths.device) * EXPLAIN_QUERY_STRIDE
    # forecast step h's own time 24 h earlier is encoder step (length - DAY_STEPS + h)
    same = lengths[:, None, None] - DAY_STEPS + h[None, :, None]
    band = ((steps[None, None, :] - same).abs() <= BAND_STEPS).float() * valid[:, None, :]
    yesterday = (att * band).sum(-1).mean(-1)
    return Attributions(
        names={
            "static": tuple(net.static_variables),
            "encoder": tuple(net.encoder_variables),
            "decoder": tuple(net.decoder_variables),
        },
        weights={"static": static.cpu().numpy(), "encoder": enc.cpu().numpy(), "decoder": dec.cpu().numpy()},
        attention=att.mean(1).cpu().numpy(),
        same_time_yesterday=yesterday.cpu().numpy(),
        lengths=lengths.cpu().numpy(),
    )


def predict_explained(net, arrays: dict[str, np.ndarray], device) -> tuple[np.ndarray, Attributions]:
    """predict_normalised plus the network's attributions, from the same forward pass: the
    attention also computes its weights for every EXPLAIN_QUERY_STRIDE-th forecast step (the only
    extra cost; the variable-selection weights are computed by every forward anyway)."""
    token = _MATERIALISE.set(True)
    try:
        with torch.inference_mode():
            x = to_tensors(arrays, device)
            out = net(x)
            z = out["prediction"].float().cpu().numpy()
            attr = _attributions(net, out, x["encoder_lengths"])
    finally:
        _MATERIALISE.reset(token)
    return np.sort(z, axis=-1), attr


def save_model_folder(path: Path, net, spec: dict, metrics: dict | None = None) -> None:
    """Write weights (safetensors), spec.json and metrics.json into path (created)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # save_model drops the aliases of shared tensors (the TFT shares prescalers and gates)
    save_model(net, str(path / folders.WEIGHTS_FILE), metadata={"format": folders.SPEC_FORMAT})
    folders.write_folder_json(path, spec, metrics)


def load_matching_weights(net, tensors: dict[str, np.ndarray], rows: dict[str, np.ndarray] | None = None) -> int:
    """Warm start: copy every tensor whose name and shape match into ``net``; a tensor named in
    ``rows`` (an embedding table whose categories differ) is first re-indexed (new row i = old row
    rows[name][i]). Returns how many tensors were copied."""
    state = net.state_dict()
    copied = {}
    for key, value in tensors.items():
        if key not in state:
            continue
        if rows and key in rows:
            value = value[rows[key]]
        if tuple(value.shape) == tuple(state[key].shape):
            copied[key] = torch.from_numpy(np.ascontiguousarray(value)).to(state[key].dtype)
    net.load_state_dict(copied, strict=False)
    return len(copied)


def pinball(pred, y, mask, quantiles):
    """Mean pinball loss of (B, H, M, Q) normalised predictions against (B, H, M) targets."""
    q = torch.as_tensor(quantiles, dtype=pred.dtype, device=pred.device)
    err = y.unsqueeze(-1) - pred
    loss = torch.maximum(q * err, (q - 1) * err)
    m = mask.unsqueeze(-1).to(pred.dtype)
    return (loss * m).sum() / (m.sum() * len(quantiles)).clamp_min(1.0)


class TrainingNetwork:
    """A network being trained: AdamW steps on numpy batches, validation loss, best-state snapshots."""

    def __init__(self, net, device: str, cfg) -> None:
        self.net = net.to(device)
        self.device = device
        self.opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.gradient_clip = cfg.gradient_clip

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def set_learning_rate(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def _loss(self, x, y, mask, quantiles):
        pred = self.net(to_tensors(x, self.device))["prediction"]
        return pinball(pred, torch.from_numpy(y).to(self.device), torch.from_numpy(mask).to(self.device), quantiles)

    def step(self, x, y, mask, quantiles) -> float:
        """One optimiser step on a batch; returns its loss."""
        self.net.train()
        loss = self._loss(x, y, mask, quantiles)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.gradient_clip)
        self.opt.step()
        return loss.detach().item()

    def loss(self, x, y, mask, quantiles) -> float:
        """A batch's loss without gradients, in eval mode (dropout off)."""
        self.net.eval()
        with torch.inference_mode():
            return float(self._loss(x, y, mask, quantiles))

    def snapshot(self) -> dict:
        return copy.deepcopy(self.net.state_dict())

    def restore(self, state: dict) -> None:
        self.net.load_state_dict(state)
        self.net.eval()


class Forecaster:
    """A loaded TFT: ``predict(windows)`` forecasts a batch of servers."""

    def __init__(self, net, spec: dict, version: str, device: str, chunk_size: int | None = None):
        self.net = net
        self.spec = spec
        self.version = version
        self.device = device
        # ~128 windows per forward keeps the activations in cache on CPU; GPUs take bigger chunks
        self.chunk_size = chunk_size or (128 if device == "cpu" else 2048)
        self.vocab = inputs.Vocab.from_json(spec["vocab"])
        self.quantiles = tuple(float(q) for q in spec["quantiles"])
        self.horizon = int(spec["horizon"])
        self.max_encoder = int(spec["max_encoder"])
        self.step_minutes = int(spec["step_minutes"])
        self.interval_scale = float(spec.get("interval_scale", 1.0))
        self.interval_scale_by_profile = {k: float(v) for k, v in spec.get("interval_scale_by_profile", {}).items()}
        self._median_index = min(range(len(self.quantiles)), key=lambda i: abs(self.quantiles[i] - 0.5))
        self._q_index = {}
        for label, q in SERVED_QUANTILES.items():
            matches = [i for i, x in enumerate(self.quantiles) if math.isclose(x, q)]
            if not matches:
                raise folders.ModelFolderError(f"{version}: model lacks quantile {q}")
            self._q_index[label] = matches[0]

    def _check_step(self, windows: list[SeriesWindow]) -> None:
        wrong_step = {w.step_minutes for w in windows} - {self.step_minutes}
        if wrong_step:
            raise ValueError(
                f"model {self.version} forecasts {self.step_minutes}-minute buckets, got windows of "
                f"{sorted(wrong_step)} minutes"
            )

    def _predict_chunk(self, chunk: list[SeriesWindow], explain: bool = False):
        arrays = inputs.build_inputs(chunk, self.vocab, self.max_encoder, self.horizon)
        if explain:
            z, attr = predict_explained(self.net, arrays, self.device)
        else:
            z, attr = predict_normalised(self.net, arrays, self.device), None
        # calibrated spread around the median, per profile (see training.calibrate_intervals)
        alpha = np.array(
            [self.interval_scale_by_profile.get(w.profile, self.interval_scale) for w in chunk], dtype=np.float32
        )
        med = z[..., self._median_index : self._median_index + 1]
        z = med + alpha[:, None, None, None] * (z - med)
        pred = np.sort(inputs.denormalise(z, arrays["target_scale"]), axis=-1)
        return inputs.clip_ranges(pred.astype(np.float32)), attr

    def _chunks(self, windows: list[SeriesWindow]) -> list[list[SeriesWindow]]:
        self._check_step(windows)
        return [windows[i : i + self.chunk_size] for i in range(0, len(windows), self.chunk_size)]

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.horizon, len(TARGETS), len(self.quantiles)), dtype=np.float32)

    def predict_array(self, windows: list[SeriesWindow]) -> np.ndarray:
        """All quantiles, (B, horizon, n_metrics, n_quantiles), sorted and clipped, float32."""
        out = [self._predict_chunk(chunk)[0] for chunk in self._chunks(windows)]
        return np.concatenate(out, axis=0) if out else self._empty()

    def predict_explained(self, windows: list[SeriesWindow]) -> tuple[np.ndarray, explanation.Explanations]:
        """predict_array's quantiles and each window's explanation (forecasting.engine.explanation),
        from the same forward passes; an explanation's JSON is built when it is first read."""
        preds, explained = [], explanation.Explanations()
        for chunk in self._chunks(windows):
            pred, attr = self._predict_chunk(chunk, explain=True)
            preds.append(pred)
            explained.add(attr, [w.states for w in chunk])
        return (np.concatenate(preds, axis=0) if preds else self._empty()), explained

    def predict(self, windows: list[SeriesWindow]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
        """{server: {metric: {"p10"|"p50"|"p90": array (horizon,)}}} for every window."""
        pred = self.predict_array(windows)
        result: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        for b, w in enumerate(windows):
            result[w.server] = {
                metric: {label: pred[b, :, m, qi] for label, qi in self._q_index.items()}
                for m, metric in enumerate(TARGETS)
            }
        return result


def load_forecaster(path: Path, device: str = "auto", threads: int | None = None) -> Forecaster:
    """Rebuild the network from spec.json and load weights.safetensors (never unpickles)."""
    set_threads(threads)
    started = time.perf_counter()
    folder = folders.read_model_folder(Path(path))
    spec = folder.spec
    dev = resolve_device(device)
    vocab = inputs.Vocab.from_json(spec["vocab"])
    net = build_network(spec["hparams"], vocab, tuple(spec["quantiles"]), int(spec["max_encoder"]))
    try:
        # safetensors only (no pickle); strict: every tensor of the network must be in the file
        load_model(net, str(Path(path) / folders.WEIGHTS_FILE), strict=True, device="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        raise folders.ModelFolderError(f"{folder.name}: weights do not match spec ({exc})") from exc
    net.eval()
    net.to(dev)
    logger.info("loaded TFT %s on %s in %.2fs", folder.name, dev, time.perf_counter() - started)
    return Forecaster(net, spec, folder.name, dev)


def runtime_info() -> dict:
    """torch's version and CPU thread count (benchmark reports)."""
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
