"""engine.serving.peak_ratios: how the fleet table orders servers after P(8 h) (stored per forecast)."""

import pytest

from forecasting.engine.serving import peak_ratios


def _metric(peak, critical):
    return {"peak_p50": peak, "critical": critical}


def test_the_worst_metric_is_the_one_closest_to_or_furthest_past_its_limit():
    summary = {"cpu_pct": _metric(50.0, 95.0), "mem_pct": _metric(90.0, 95.0), "disk_io_mb_s": _metric(30.0, 10.0),
               "latency_ms": _metric(5.0, 20.0)}  # fmt: skip

    ratios, worst, top = peak_ratios(summary)

    assert worst == "disk_io_mb_s" and top == pytest.approx(3.0) and ratios["cpu_pct"] == pytest.approx(50 / 95)


def test_a_summary_without_limits_ranks_at_zero():
    ratios, worst, top = peak_ratios({"cpu_pct": _metric(50.0, 0.0)})

    assert (worst, top) == (None, 0.0) and set(ratios.values()) == {0.0}
