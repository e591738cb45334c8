"""The backtest command (forecasting.management.commands.backtest) and the bucket adapter it reads."""

import json
from datetime import timedelta
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from forecasting.windows import server_histories
from tests.forecasting.engine.test_backtest import START, _noisy


@pytest.mark.django_db
def test_database_buckets_become_series_with_gaps():
    from ingest.models import MetricBucket, Server

    server = Server.objects.create(
        name="ppdb001", profile="database", first_seen=START, last_seen=START, last_received_at=START
    )
    for i, cpu in [(0, 10.0), (1, 20.0), (3, 40.0)]:
        MetricBucket.objects.create(
            server=server, bucket_start=START + timedelta(minutes=5 * i), count=2,
            cpu_pct_sum=2 * cpu, mem_pct_sum=100.0, disk_io_mb_s_sum=4.0, latency_ms_sum=6.0,
            n_healthy=1, n_heavy_load=1,
        )  # fmt: skip
    [w] = server_histories()
    assert w.server == "ppdb001" and w.start == START and w.step_minutes == 5
    np.testing.assert_array_equal(w.values[:, 0], [10.0, 20.0, np.nan, 40.0])
    np.testing.assert_array_equal(w.values[0], [10.0, 50.0, 2.0, 3.0])
    assert [int(s) for s in w.states] == [4, 4, -1, 4]  # heavy_load wins the 1–1 tie


def test_backtest_command_prints_the_json_contract(tmp_path):
    t = START + timedelta(minutes=5) * np.arange(1000)
    rows = [f"{ts:%Y-%m-%d %H:%M:%S},{v:.3f}" for ts, v in zip(t, _noisy(1000), strict=True)]
    (tmp_path / "ec2_cpu_utilization_y.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    out = StringIO()
    call_command("backtest", "--csv-dir", str(tmp_path), "--no-tft", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert list(result)[:3] == ["methods", "per_family", "per_band"]
    assert list(result["per_band"]) == ["0-30m", "30m-2h", "2-8h"]
    assert set(result["per_band"]["0-30m"]["naive"]) >= {"mase", "pinball", "coverage"}
    assert "alerts" in result
    assert list(result["methods"]) == ["naive", "seasonal_naive", "predict_linear", "mean"]
    assert result["methods"]["naive"]["windows"] == 7
    alerts = result["alerts"]
    assert list(alerts["pooled"]) == [
        "served", "served_forecast", "trend", "trend_projection", "forecast_and_trend", "served_without_trend",
        "served_trend_per_metric", "served_trend_merged", "trend_prob", "static_threshold", "predict_linear",
        "served_p50",
    ]  # fmt: skip
    # no event model: the forecast rules and the server's trend alert
    assert alerts["protocol"]["served"] == ["served_forecast", "trend"]
    assert list(alerts["per_family"]) == ["cpu"]
    for rule in alerts["pooled"].values():
        assert {"recall_15m", "median_lead_minutes", "false_alerts_per_server_day", "alert_minutes_per_server_day",
                "incidents"} <= set(rule)
    assert alerts["protocol"]["every_minutes"] == 5 and alerts["protocol"]["origins"] == 1000 - 600 - 96 + 1


def test_backtest_command_no_alert_trend_serves_the_forecast_rules_alone(tmp_path):
    t = START + timedelta(minutes=5) * np.arange(1000)
    rows = [f"{ts:%Y-%m-%d %H:%M:%S},{v:.3f}" for ts, v in zip(t, _noisy(1000), strict=True)]
    (tmp_path / "ec2_cpu_utilization_y.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    out = StringIO()
    call_command("backtest", "--csv-dir", str(tmp_path), "--no-tft", "--no-alert-trend", "--alert-every", "12",
                 "--json", stdout=out)  # fmt: skip
    alerts = json.loads(out.getvalue())["alerts"]
    assert list(alerts["pooled"]) == ["served", "served_forecast", "static_threshold", "predict_linear", "served_p50"]
    assert alerts["protocol"]["served"] == ["served_forecast"] and alerts["protocol"]["trend"] is None


def test_backtest_command_no_alerts_skips_the_replay(tmp_path):
    t = START + timedelta(minutes=5) * np.arange(1000)
    rows = [f"{ts:%Y-%m-%d %H:%M:%S},{v:.3f}" for ts, v in zip(t, _noisy(1000), strict=True)]
    (tmp_path / "ec2_cpu_utilization_y.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    out = StringIO()
    call_command("backtest", "--csv-dir", str(tmp_path), "--no-tft", "--json", "--no-alerts", stdout=out)
    assert "alerts" not in json.loads(out.getvalue())


def test_backtest_command_exclude_leaves_a_series_out(tmp_path):
    t = START + timedelta(minutes=5) * np.arange(1000)
    rows = [f"{ts:%Y-%m-%d %H:%M:%S},{v:.3f}" for ts, v in zip(t, _noisy(1000), strict=True)]
    for name in ("ec2_cpu_utilization_kept", "ec2_cpu_utilization_held_out"):
        (tmp_path / f"{name}.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    out = StringIO()
    call_command(
        "backtest", "--csv-dir", str(tmp_path), "--exclude", "*held_out*", "--no-tft", "--json", stdout=out
    )
    assert json.loads(out.getvalue())["methods"]["naive"]["windows"] == 7  # one series, not two


def test_backtest_command_scores_several_csv_folders_together(tmp_path):
    t = START + timedelta(minutes=5) * np.arange(1000)
    rows = [f"{ts:%Y-%m-%d %H:%M:%S},{v:.3f}" for ts, v in zip(t, _noisy(1000), strict=True)]
    for folder, name in (("a", "ec2_cpu_utilization_a"), ("b", "ec2_network_in_b")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{name}.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    out = StringIO()
    call_command(
        "backtest", "--csv-dir", str(tmp_path / "a"), "--csv-dir", str(tmp_path / "b"), "--no-tft", "--json", stdout=out
    )
    result = json.loads(out.getvalue())
    assert result["methods"]["naive"]["windows"] == 14
    assert list(result["per_family"]) == ["cpu", "network/requests"]


def test_backtest_command_scores_csv_folders_and_a_simulated_fleet_as_one_set(tmp_path):
    t = START + timedelta(minutes=5) * np.arange(1000)
    rows = [f"{ts:%Y-%m-%d %H:%M:%S},{v:.3f}" for ts, v in zip(t, _noisy(1000), strict=True)]
    (tmp_path / "ec2_cpu_utilization_y.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    out = StringIO()
    args = ("--no-tft", "--no-lead-time", "--json")
    call_command("backtest", "--csv-dir", str(tmp_path), "--simulated", "2", "--days", "4", *args, stdout=out)
    together = json.loads(out.getvalue())["methods"]["naive"]["windows"]
    out = StringIO()
    call_command("backtest", "--simulated", "2", "--days", "4", *args, stdout=out)
    simulated = json.loads(out.getvalue())["methods"]["naive"]["windows"]
    assert together == 7 + simulated  # the CSV's one metric, every metric of each simulated server


