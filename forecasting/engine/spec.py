"""The forecasting rules, defined once: the grid, the horizon, the context, quantiles, metrics, states.

Everything else (the engine, the Django apps, the API) reads these names; changing the model's
geometry means training a new model, so none of it is configurable at run time.
"""

from __future__ import annotations

# --- The grid ----------------------------------------------------------------------------------
STEP_MINUTES = 5  # one bucket; the trained model is fixed at this step
HORIZON = 96  # 8 hours of 5-minute steps are forecast
# Horizon bands, the one definition (live scoring, interval calibration, the backtest, the API and
# the dashboard): name and [first, end) forecast steps. 0–30 min, 30 min–2 h, 2–8 h.
HORIZON_BANDS: tuple[tuple[str, int, int], ...] = (("0-30m", 0, 6), ("30m-2h", 6, 24), ("2-8h", 24, HORIZON))
BAND_NAMES: tuple[str, ...] = tuple(name for name, _, _ in HORIZON_BANDS)
BAND_STEPS: tuple[tuple[int, int], ...] = tuple((first, end) for _, first, end in HORIZON_BANDS)
# The band (index into HORIZON_BANDS) of each forecast step 0 … HORIZON − 1.
BAND_OF_STEP: tuple[int, ...] = tuple(i for i, (_, first, end) in enumerate(HORIZON_BANDS) for _ in range(first, end))
# What is served per band (the blend's weight of the model, the interval calibration's factors) is
# not a step function of the horizon: across each band boundary it moves linearly from the earlier
# band's value to the later band's, over the last BAND_RAMP_LEAD[b] steps before band b and the first
# BAND_RAMP_STEPS[b] steps of it, so a forecast has no cliff where a band starts (with the blend's
# fitted weights, 85–95 % of served forecasts jumped 15–60 × a usual step at 30 min).
# STEP_MIX[b][h]: band b's share of step h's value.
BAND_RAMP_STEPS: tuple[int, ...] = (0, 3, 6)
BAND_RAMP_LEAD: tuple[int, ...] = (0, 3, 6)


def step_mix(ramps: tuple[int, ...], leads: tuple[int, ...] | None = None) -> tuple[tuple[float, ...], ...]:
    """STEP_MIX for the ramps (and leads) given (bench.blend_strength compares them on development series)."""
    leads = leads or (0,) * len(HORIZON_BANDS)
    mix = [[float(BAND_OF_STEP[h] == b) for h in range(HORIZON)] for b in range(len(HORIZON_BANDS))]
    for b in range(1, len(HORIZON_BANDS)):  # the edge where band b starts
        start = HORIZON_BANDS[b][1]
        first, span = start - leads[b], leads[b] + ramps[b] + 1
        for h in range(first, start + ramps[b]):
            a = (h - first + 1) / span  # band b's share, the rest band b − 1's
            mix[b - 1][h], mix[b][h] = 1.0 - a, a
    return tuple(tuple(row) for row in mix)


STEP_MIX: tuple[tuple[float, ...], ...] = step_mix(BAND_RAMP_STEPS, BAND_RAMP_LEAD)
CONTEXT = 288  # 24 hours of buckets are the model's (and the baselines') context
STEPS_PER_DAY = 24 * 60 // STEP_MINUTES

# Quantiles the network predicts; p10/p50/p90 are served, the others shape the distribution.
QUANTILES: tuple[float, ...] = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)
SERVED_QUANTILES: dict[str, float] = {"p10": 0.1, "p50": 0.5, "p90": 0.9}

# --- The data contract (the Production Integration Guide): metrics, states, server families -----
METRICS: tuple[str, ...] = ("cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms")
TARGETS: tuple[str, ...] = METRICS  # the network forecasts every metric, in this order

# Metrics bounded to percentages; the others only need to be non-negative.
PERCENT_METRICS: frozenset[str] = frozenset({"cpu_pct", "mem_pct"})

# The 8 states, ordered from least to most severe: the order defines a bucket's "worst state" and
# breaks ties of its dominant state.
STATES: tuple[str, ...] = (
    "idle",
    "healthy",
    "morning_spike",
    "maintenance",
    "heavy_load",
    "recovery",
    "offline",
    "critical_issue",
)
STATE_SEVERITY: dict[str, int] = {state: rank for rank, state in enumerate(STATES)}
STATE_INDEX: dict[str, int] = STATE_SEVERITY  # a state's index in STATES is its severity

# Server families: name prefix → profile. Longest prefix first so "pprisk" never reads as "pp…".
PROFILE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("pprisk", "risk"),
    ("ppweb", "web_api"),
    ("ppcon", "conductor"),
    ("ppetl", "etl"),
    ("ppml", "ml_compute"),
    ("ppdb", "database"),
)
PROFILES: tuple[str, ...] = ("ml_compute", "database", "web_api", "conductor", "etl", "risk", "generic")


def profile_for(server_name: str) -> str:
    """The server's profile, derived from its name prefix (case-insensitive)."""
    lowered = server_name.lower()
    for prefix, profile in PROFILE_PREFIXES:
        if lowered.startswith(prefix):
            return profile
    return "generic"


# --- Default alert thresholds (operators override them per metric in the admin) -----------------
WARNING_PCT = 85.0
CRITICAL_PCT = 95.0  # cpu_pct / mem_pct at or above this is a critical incident
DEFAULT_THRESHOLDS: dict[str, dict] = {
    "cpu_pct": {"warning": WARNING_PCT, "critical": CRITICAL_PCT, "relative": False, "floor": 0.0},
    "mem_pct": {"warning": WARNING_PCT, "critical": CRITICAL_PCT, "relative": False, "floor": 0.0},
    # relative rules: multiples of the server's own 95th percentile over its context. Critical is
    # 3 × p95 (was 2 ×, reached for 2+ buckets in 42 % of 8-hour windows of NAB disk writes and 11 %
    # of request volumes: bursts, not incidents; 3 × gives 38 % / 6 %, see engine.incidents).
    "disk_io_mb_s": {"warning": 2.0, "critical": 3.0, "relative": True, "floor": 10.0},
    "latency_ms": {"warning": 2.0, "critical": 3.0, "relative": True, "floor": 20.0},
}
