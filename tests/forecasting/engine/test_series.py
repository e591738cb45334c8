"""Engine series: the grid, the dominant-state rule, the CSV loaders and the file-name → metric map."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.engine.series import (
    dominant_state,
    dominant_state_indices,
    fill_series,
    grid_series,
    load_csv_dir,
    nab_metric_for,
)
from forecasting.engine.spec import METRICS, STATES

START = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    "name, metric",
    [
        ("ec2_cpu_utilization_77c1ca", "cpu_pct"),
        ("cpu_utilization_asg_misconfiguration", "cpu_pct"),
        ("ec2_request_latency_system_failure", "latency_ms"),
        ("ec2_disk_write_bytes_1ef3de", "disk_io_mb_s"),
        ("ec2_network_in_257a54", "disk_io_mb_s"),
        ("Twitter_volume_AAPL", "disk_io_mb_s"),
        ("machine_temperature_system_failure", "disk_io_mb_s"),
        ("occupancy_6005", "disk_io_mb_s"),
        ("rogue_agent_key_hold", "disk_io_mb_s"),
    ],
)
def test_nab_metric_for_maps_file_names_onto_one_metric(name, metric):
    assert nab_metric_for(name) == metric


def test_training_and_backtest_read_a_latency_file_as_latency(tmp_path):
    (tmp_path / "ec2_request_latency_x.csv").write_text("timestamp,value\n2026-03-02 00:00:00,120.5\n")

    loaded = load_csv_dir(tmp_path)

    assert loaded.metric_of == {"ec2_request_latency_x": "latency_ms"}
    assert loaded.series[0].values[0, METRICS.index("latency_ms")] == 120.5


def test_dominant_state_is_the_most_frequent():
    assert dominant_state({"healthy": 3, "critical_issue": 1}) == "healthy"


def test_dominant_state_tie_goes_to_the_more_severe():
    assert dominant_state({"idle": 2, "heavy_load": 2, "healthy": 1}) == "heavy_load"


def test_dominant_state_indices_agree_with_the_scalar_rule():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, size=(500, len(STATES)))
    counts[0] = 0
    got = dominant_state_indices(counts)
    for row, index in zip(counts[1:], got[1:], strict=True):
        assert STATES[index] == dominant_state(dict(zip(STATES, row.tolist(), strict=True)))
    assert got[0] == -1  # a bucket without any state


def test_grid_series_averages_a_bucket_and_leaves_gaps():
    stamps = np.array([0, 60, 600], dtype=np.int64) + int(START.timestamp())
    values = np.array([[10, 0, 0, 0], [20, 0, 0, 0], [40, 0, 0, 0]], dtype=np.float64)

    w = grid_series("ppdb001", "database", stamps, values)

    assert w.start == START and w.values[:, 0].tolist()[0] == 15.0
    assert np.isnan(w.values[1]).all() and w.values[2, 0] == 40.0


def test_fill_series_forward_fills_and_back_fills_the_start():
    np.testing.assert_array_equal(fill_series(np.array([np.nan, 2.0, np.nan, 4.0])), [2.0, 2.0, 2.0, 4.0])


def _nab_file(path, n=10):
    rows = [f"{START + timedelta(minutes=5 * i):%Y-%m-%d %H:%M:%S},{i}" for i in range(n)]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")


def test_exclude_leaves_matching_files_out(tmp_path):
    _nab_file(tmp_path / "ec2_cpu_utilization_77c1ca.csv")
    _nab_file(tmp_path / "ec2_cpu_utilization_24ae8d.csv")

    loaded = load_csv_dir(tmp_path, exclude=["ec2_cpu_utilization_77c1ca*"])

    assert [w.server for w in loaded.series] == ["ec2_cpu_utilization_24ae8d"]


def test_a_csv_of_another_layout_is_rejected(tmp_path):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")

    with pytest.raises(ValueError, match="neither contract columns"):
        load_csv_dir(tmp_path)
