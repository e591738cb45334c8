"""Backtest scores per horizon band, families weighted equally (forecasting.engine.bands)."""

from datetime import UTC, datetime

import numpy as np
import pytest

from forecasting.engine import backtest as bt
from forecasting.engine import bands
from forecasting.engine.series import SeriesWindow
from forecasting.engine.spec import HORIZON, HORIZON_BANDS, METRICS

START = datetime(2026, 3, 2, tzinfo=UTC)


def _window(server: str, y: np.ndarray, metric: str = "cpu_pct") -> SeriesWindow:
    values = np.zeros((len(y), 4), dtype=np.float32)
    values[:, METRICS.index(metric)] = y
    return SeriesWindow(server, "database", START, 5, values, np.ones(len(y), dtype=np.int8))


def _noisy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 50 + 20 * np.sin(2 * np.pi * np.arange(n) / 288) + rng.normal(0, 2, n)


def test_horizon_bands_cover_the_horizon_once():
    assert [name for name, _, _ in HORIZON_BANDS] == ["0-30m", "30m-2h", "2-8h"]
    steps = [s for _, a, b in HORIZON_BANDS for s in range(a, b)]
    assert steps == list(range(HORIZON))


def test_band_scores_by_hand():
    y = np.zeros(HORIZON)
    y[:6] = 2.0  # 0-30m: |2 − 1| = 1, inside [0, 3]
    y[6:24] = np.nan  # 30m-2h: nothing observed → left out
    q = np.stack([np.zeros(HORIZON), np.ones(HORIZON), np.full(HORIZON, 3.0)])
    got = bands.band_scores(y, q, 0.5, (0.1, 0.5, 0.9))
    assert list(got) == ["0-30m", "2-8h"]
    assert got["0-30m"]["mase"] == pytest.approx(2.0)  # 1 / 0.5
    # pinball at y=2: p10=0 → 0.1·2, p50=1 → 0.5·1, p90=3 → 0.1·1; mean 0.2667, / 0.5
    assert got["0-30m"]["pinball"] == pytest.approx((0.2 + 0.5 + 0.1) / 3 / 0.5)
    assert got["0-30m"]["coverage"] == 1.0
    assert got["2-8h"]["coverage"] == 1.0 and got["2-8h"]["mase"] == pytest.approx(2.0)  # y=0, p50=1


def _score(mase: float) -> dict:
    return {"mase": mase, "pinball": mase / 2, "coverage": 0.8}


def test_families_are_weighted_equally_not_by_windows():
    scores = bands.BandScores()
    for _ in range(3):  # cpu: 3 windows, MASE 1 against naive 2
        scores.add("tft", "cpu", _score(1.0), {"0-30m": _score(1.0)})
        scores.add("naive", "cpu", _score(2.0), {"0-30m": _score(2.0)})
    scores.add("tft", "disk", _score(3.0), {"0-30m": _score(3.0)})  # disk: 1 window, MASE 3 against 3
    scores.add("naive", "disk", _score(3.0), {"0-30m": _score(3.0)})
    pooled = scores.pooled(["tft", "naive"], "0-30m", ["cpu", "disk"])
    assert pooled["tft"]["mase"] == pytest.approx(2.0)  # (1 + 3) / 2, not (3·1 + 3) / 4
    assert pooled["tft"]["mase_x_naive"] == pytest.approx(0.75)  # (1/2 + 3/3) / 2
    assert pooled["tft"]["windows"] == 4 and pooled["tft"]["families"] == 2
    assert pooled["naive"]["mase_x_naive"] == pytest.approx(1.0)


def test_report_family_splits_requests_from_network_and_names_memory():
    assert bands.report_family("Twitter_volume_AAPL", "disk_io_mb_s", mapped=True) == "requests"
    assert bands.report_family("ec2_network_in_257a54", "disk_io_mb_s", mapped=True) == "network"
    assert bands.report_family("iio_us-east-1_i-a2eb1cd9_NetworkIn", "disk_io_mb_s", mapped=True) == "network"
    assert bands.report_family("ppdb001", "mem_pct") == "memory"
    assert bands.report_family("occupancy_6005", "disk_io_mb_s", mapped=True) == "other"


def test_backtest_reports_every_band_and_method_with_requests_apart():
    series = [
        _window("ec2_cpu_utilization_x", _noisy(1000)),
        _window("ec2_disk_write_bytes_z", _noisy(1000, 2) * 2, metric="disk_io_mb_s"),
        _window("Twitter_volume_Y", _noisy(1000, 1) * 3, metric="disk_io_mb_s"),
    ]
    metrics = {"ec2_cpu_utilization_x": "cpu_pct", "ec2_disk_write_bytes_z": "disk_io_mb_s"}
    metrics["Twitter_volume_Y"] = "disk_io_mb_s"
    result = bt.run_backtest(series, metrics=metrics)
    assert list(result["per_band"]) == ["0-30m", "30m-2h", "2-8h"]
    for by_method in result["per_band"].values():
        assert list(by_method) == ["naive", "seasonal_naive", "predict_linear", "mean"]
        for r in by_method.values():
            assert {"mase", "pinball", "coverage", "mase_x_naive", "pinball_x_naive"} <= set(r)
            assert r["families"] == 2 and r["windows"] == 14  # cpu and disk; requests apart
    assert result["headline_families"] == ["cpu", "disk"]
    assert result["per_band_requests"]["0-30m"]["naive"]["windows"] == 7
    assert list(result["per_band_family"]) == ["cpu", "disk", "requests"]
    cpu, disk = (result["per_band_family"][f]["2-8h"]["seasonal_naive"]["mase"] for f in ("cpu", "disk"))
    assert result["per_band"]["2-8h"]["seasonal_naive"]["mase"] == pytest.approx((cpu + disk) / 2)


def test_report_family_of_vendored_sources_comes_from_their_rule():
    assert bands.report_family("smd_machine-1-7_m18", "disk_io_mb_s", mapped=True) == "network"
    assert bands.report_family("smd_machine-1-7_m05", "mem_pct", mapped=True) == "memory"
    assert bands.report_family("js2_service3_m00", "disk_io_mb_s", mapped=True) == "other"
