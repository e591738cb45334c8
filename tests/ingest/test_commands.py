import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ingest.models import MetricRecord, Server
from tests.conftest import RECENT, make_record

DAY = RECENT.date().isoformat()


@pytest.fixture
def contract_csv(tmp_path):
    path = tmp_path / "metrics.csv"
    rows = [
        "timestamp,server_name,cpu_pct,mem_pct,disk_io_mb_s,latency_ms,state",
        f"{DAY}T16:00:00,ppdb001,45.2,67.8,123.4,12.5,healthy",
        f"{DAY}T16:00:05,ppdb001,46.0,67.9,120.0,12.0,healthy",
        f"{DAY}T16:00:10,ppdb001,146.0,67.9,120.0,12.0,healthy",
        f"{DAY}T16:00:15,ppdb001,46.0,67.9,120.0,12.0,on_fire",
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.django_db
def test_import_stores_valid_rows_and_reports_rejected_lines(contract_csv, capsys):
    with pytest.raises(CommandError, match="2 records were rejected"):
        call_command("import_metrics", str(contract_csv), "--no-progress")

    out = capsys.readouterr()
    assert "accepted 2, duplicates 0, rejected 2" in out.out
    assert f"{contract_csv}:4: cpu_pct" in out.err
    assert f"{contract_csv}:5: state" in out.err
    assert MetricRecord.objects.count() == 2


@pytest.mark.django_db
def test_import_twice_counts_duplicates(tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(make_record(ts=f"{DAY}T16:00:{s:02d}Z")) for s in range(0, 30, 5)))
    call_command("import_metrics", str(path), "--no-progress")
    call_command("import_metrics", str(path), "--no-progress")

    assert "accepted 0, duplicates 6, rejected 0" in capsys.readouterr().out
    assert MetricRecord.objects.count() == 6


@pytest.mark.django_db
def test_import_nab_layout_maps_value_onto_one_metric(tmp_path):
    path = tmp_path / "nab.csv"
    path.write_text(f"timestamp,value\n{DAY} 14:30:00,12.5\n{DAY} 14:35:00,13.5\n")

    call_command("import_metrics", str(path), "--server", "ec2a", "--metric", "cpu_pct", "--no-progress")

    record = MetricRecord.objects.order_by("timestamp").first()
    assert (record.cpu_pct, record.mem_pct, record.disk_io_mb_s, record.latency_ms) == (12.5, 0.0, 0.0, 0.0)
    assert Server.objects.get().name == "ec2a"


@pytest.mark.django_db
def test_validate_data_prints_every_problem_and_stores_nothing(contract_csv, capsys):
    with pytest.raises(CommandError):
        call_command("validate_data", str(contract_csv))

    out = capsys.readouterr().out
    assert f"{contract_csv}:4: cpu_pct: must be between 0 and 100" in out
    assert f"{contract_csv}:5: state: must be one of" in out
    assert "checked 4 records: 2 valid, 2 invalid" in out
    assert MetricRecord.objects.count() == 0


NAB = Path(__file__).resolve().parents[2] / "data/nab/ec2_cpu_utilization_24ae8d.csv"  # 14 days of 2014


def test_validate_data_passes_a_clean_nab_file_shifted_to_now(capsys):
    call_command("validate_data", str(NAB), "--server", "x", "--metric", "cpu_pct", "--shift-to-now")

    assert "checked 4032 records: 4032 valid, 0 invalid" in capsys.readouterr().out


def test_validate_data_refuses_an_old_file_as_outside_retention(capsys):
    with pytest.raises(CommandError, match="4032 records break"):
        call_command("validate_data", str(NAB), "--server", "x", "--metric", "cpu_pct")

    assert ":2: timestamp: is older than the retention window of 14 days" in capsys.readouterr().out


@pytest.mark.django_db
def test_import_shift_to_now_moves_the_newest_record_into_the_last_step(tmp_path):
    path = tmp_path / "nab.csv"
    path.write_text("timestamp,value\n2014-02-14 14:30:00,12.5\n2014-02-14 14:35:00,13.5\n")
    started = datetime.now(UTC)

    call_command("import_metrics", str(path), "--server", "ec2a", "--metric", "cpu_pct", "--no-progress",
                 "--shift-to-now")

    first, last = MetricRecord.objects.order_by("timestamp")
    assert started - timedelta(minutes=5) < last.timestamp <= datetime.now(UTC)
    assert last.timestamp - first.timestamp == timedelta(minutes=5)
    assert (last.timestamp - datetime(2014, 2, 14, 14, 35, tzinfo=UTC)) % timedelta(minutes=5) == timedelta(0)
