"""What drove a forecast, from the TFT itself: its variable-selection weights and its attention.

The network (forecasting.engine.network) returns ``Attributions``, plain numpy arrays per window;
this module turns one window's row into the JSON an operator reads (``explanation``) and into words
for alert messages (``drivers``). numpy only: the web and the tests import it without torch.

Definitions (also in the README):

* ``variables``: per group (static, encoder = the past, decoder = the known future) every input of
  forecasting.engine.inputs with its variable-selection weight, heaviest first. The network's
  softmax weighs each group's inputs to 1 per time step; the encoder's are averaged over the
  window's own steps, the decoder's over the horizon, so each group still sums to 1.
* ``attention``: the attention of the forecast steps over the encoder (history) steps, normalised
  to 1 per forecast step and averaged over the horizon (every 4th step: network.EXPLAIN_QUERY_STRIDE), split into ``last_hour`` (the 12 buckets
  before the origin), ``same_time_yesterday`` (±30 min around each forecast step's own time 24 h
  earlier) and ``rest``; ``blocks`` is the same attention in 30-minute blocks ending at the origin
  (oldest first, 0 where the window has no history), for shading the history chart.
* ``state``: the state whose buckets received the most attention (the value behind "state").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forecasting.engine.spec import CONTEXT, METRICS, STATES, STEP_MINUTES

HEURISTIC_TEXT = "heuristic: no model explanation"
STEADY_TEXT = "steady forecast: explained when it rises toward a limit or calls for an alert"
HOUR_STEPS = 60 // STEP_MINUTES
BAND_STEPS = 30 // STEP_MINUTES  # ±30 min around the same time yesterday
DAY_STEPS = 24 * 60 // STEP_MINUTES
BLOCK_STEPS = 30 // STEP_MINUTES
N_BLOCKS = CONTEXT // BLOCK_STEPS
GROUPS = ("static", "encoder", "decoder")
# An attention region is named in words when it holds this many times its share of the steps.
FOCUS_RATIO = 1.5


@dataclass
class Attributions:
    """The network's attributions for a batch of windows, one row per window."""

    names: dict[str, tuple[str, ...]]  # group -> input names, in the columns' order
    weights: dict[str, np.ndarray]  # group -> (B, n_inputs), each row sums to 1
    attention: np.ndarray  # (B, L) over encoder steps, left-aligned like the inputs; rows sum to 1
    same_time_yesterday: np.ndarray  # (B,) mass within ±30 min of each forecast step's time 24 h before
    lengths: np.ndarray  # (B,) encoder lengths


def _ranked(names: tuple[str, ...], weights: np.ndarray) -> list[dict]:
    order = np.argsort(-weights, kind="stable")
    return [{"name": names[j], "weight": round(float(weights[j]), 4)} for j in order]


def _blocks(attention: np.ndarray, length: int) -> list[float]:
    """Attention per 30-minute block ending at the origin, oldest first (right-aligned)."""
    padded = np.zeros(N_BLOCKS * BLOCK_STEPS)
    recent = attention[max(0, length - len(padded)) : length]
    padded[len(padded) - len(recent) :] = recent
    return np.round(padded.reshape(N_BLOCKS, BLOCK_STEPS).sum(axis=1), 4).tolist()


def attended_state(attention: np.ndarray, states: np.ndarray, length: int) -> str:
    """The state (of spec.STATES) whose buckets got the most attention; '' when none is known.

    ``states`` are the window's state indices (-1 unknown) aligned with the window's last buckets."""
    recent = states[-length:] if length else states[:0]
    known = recent >= 0
    if not known.any():
        return ""
    mass = np.bincount(recent[known].astype(np.int64), weights=attention[:length][known])
    return STATES[int(np.argmax(mass))] if mass.max() > 0 else ""


def _input_words(name: str, state: str) -> str:
    if name in METRICS:
        return f"{name} history"
    if name == "state":
        return f"the {state} state" if state else "the state"
    return {"hour": "the hour of day", "weekday": "the weekday", "relative_time": "the time position"}.get(name, name)


def _focus_words(attention: dict, length: int) -> str:
    """Where the attention concentrates, compared with an even spread over the window's steps."""
    length = max(int(length), 1)
    shares = {
        "the last hour": attention["last_hour"] / (min(HOUR_STEPS, length) / length),
        "the same time yesterday": attention["same_time_yesterday"] / ((2 * BAND_STEPS + 1) / length),
    }
    where, ratio = max(shares.items(), key=lambda kv: kv[1])
    if attention["same_time_yesterday"] <= 0 and where == "the same time yesterday":
        return "attends across the day"
    return f"attends to {where}" if ratio >= FOCUS_RATIO else "attends across the day"


def drivers(explanation: dict) -> str:
    """e.g. "mem_pct history and the heavy_load state; attends to the same time yesterday" (the two
    heaviest past inputs, then where the attention concentrates); '' for a heuristic forecast."""
    if "variables" not in explanation:
        return ""
    top = [v["name"] for v in explanation["variables"]["encoder"][:2]]
    words = " and ".join(_input_words(name, explanation.get("state", "")) for name in top)
    return f"{words}; {_focus_words(explanation['attention'], explanation['encoder_steps'])}"


def explanation(attr: Attributions, i: int, states: np.ndarray) -> dict:
    """The served explanation of window i (see the module docstring)."""
    length = int(attr.lengths[i])
    att = attr.attention[i].astype(np.float64)
    last_hour = float(att[max(0, length - HOUR_STEPS) : length].sum())
    yesterday = float(attr.same_time_yesterday[i])
    attention = {
        "last_hour": round(last_hour, 4),
        "same_time_yesterday": round(yesterday, 4),
        "rest": round(max(0.0, 1.0 - last_hour - yesterday), 4),
        "block_minutes": BLOCK_STEPS * STEP_MINUTES,
        "blocks": _blocks(att, length),
    }
    out = {
        "method": "tft",
        "variables": {g: _ranked(attr.names[g], attr.weights[g][i]) for g in GROUPS},
        "attention": attention,
        "encoder_steps": length,
        "state": attended_state(att, states, length),
    }
    out["text"] = f"driven by {drivers(out)}"
    return out


class Explanations(Sequence):
    """Each window's ``explanation``, built when first read (then kept): a prediction run stores the
    explanations of the few forecasts that rise toward a limit or call for an alert, and building
    all of them cost a tenth of a second per 1,000 servers (issue 25)."""

    def __init__(self) -> None:
        self._rows: list[tuple[Attributions, int, np.ndarray]] = []
        self._built: dict[int, dict] = {}

    def add(self, attr: Attributions, states: Sequence[np.ndarray]) -> None:
        """Append a batch's windows: ``attr`` has one row per window, ``states`` each window's states."""
        self._rows += [(attr, i, window_states) for i, window_states in enumerate(states)]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, k: int | slice) -> dict | list[dict]:  # an index or a slice, as a list's
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        k = range(len(self))[k]  # negative indices, IndexError as a list's
        if k not in self._built:
            attr, i, states = self._rows[k]
            self._built[k] = explanation(attr, i, states)
        return self._built[k]


def heuristic_explanation() -> dict:
    return {"method": "heuristic", "text": HEURISTIC_TEXT}


def steady_explanation() -> dict:
    """A TFT forecast the run did not explain (the explanation pass runs only where it is needed)."""
    return {"method": "tft", "text": STEADY_TEXT}


# --- The model's global variable importance (stored in its folder at training time) ---------------

IMPORTANCE_FORMAT = "tftsite-importance/1"


def global_importance(batches: list[Attributions], source: str) -> dict:
    """The model's variable importance: each group's weights and the attention shares averaged over
    the windows of ``batches`` (explanation passes over validation windows)."""
    if not batches:
        raise ValueError("global importance needs at least one batch of windows")
    n = sum(len(b.lengths) for b in batches)
    names = batches[0].names
    groups = {g: _ranked(names[g], sum(b.weights[g].sum(axis=0) for b in batches) / n) for g in GROUPS}
    last_hour = same = 0.0
    for b in batches:
        for i, length in enumerate(b.lengths):
            last_hour += float(b.attention[i, max(0, int(length) - HOUR_STEPS) : int(length)].sum())
            same += float(b.same_time_yesterday[i])
    attention = {"last_hour": round(last_hour / n, 4), "same_time_yesterday": round(same / n, 4)}
    attention["rest"] = round(max(0.0, 1.0 - attention["last_hour"] - attention["same_time_yesterday"]), 4)
    return {"format": IMPORTANCE_FORMAT, "windows": n, "source": source, "variables": groups, "attention": attention}


def importance_markdown(importance: dict) -> str:
    """The MODEL_CARD section: one table of inputs and weights per group, heaviest first."""
    lines = [
        "## Variable importance",
        "",
        f"Variable-selection weights of the network averaged over {importance['windows']} windows "
        f"({importance['source']}); each group sums to 1.",
        "",
        "| group | input | weight |",
        "|---|---|---|",
    ]
    for group in GROUPS:
        lines += [f"| {group} | {v['name']} | {v['weight']:.3f} |" for v in importance["variables"][group]]
    att = importance["attention"]
    lines += [
        "",
        f"Attention over the history: last hour {att['last_hour']:.3f}, same time yesterday (±30 min) "
        f"{att['same_time_yesterday']:.3f}, rest {att['rest']:.3f}.",
        "",
    ]
    return "\n".join(lines)
