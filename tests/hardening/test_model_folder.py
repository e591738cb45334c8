"""The active model folder corrupted or deleted: runs fall back to the heuristic with the reason in
/status and per server in /predictions/current; restoring the folder brings the TFT back."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hardening.conftest import Stack, wait_for

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.slow


@pytest.fixture
def model_folder(healthy_stack: Stack) -> Path:
    if healthy_stack.model_backup is None:
        pytest.skip("no model folder in models/ and none could be trained")
    folder = healthy_stack.models_dir / healthy_stack.model_backup.name
    yield folder
    if (
        not (folder / "weights.safetensors").is_file()
        or folder.joinpath("weights.safetensors").read_bytes()
        != (healthy_stack.model_backup / "weights.safetensors").read_bytes()
    ):
        _restore(healthy_stack, folder)


def _restore(stack: Stack, folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(stack.model_backup, folder)


def _corrupt(folder: Path) -> None:
    (folder / "weights.safetensors").write_bytes(b"\x00garbage, not a safetensors file" * 64)


def _delete(folder: Path) -> None:
    shutil.rmtree(folder)


def _fallback_then_recovery(stack: Stack, folder: Path, breaker: Callable[[Path], None], reason: str) -> None:
    baseline = stack.wait_for_complete_run(timeout=90, where="tft_count = servers")
    breaker(folder)
    try:
        fallback = stack.wait_for_complete_run(
            after_id=baseline[0], timeout=90, where=f"tft_count = 0 AND fallback_reasons ? '{reason}'"
        )
        status = wait_for(
            lambda: (p := stack.get("/status").json()["predictions"])["run_id"] >= fallback[0] and p,
            timeout=30,
            what="/status to show the fallback run",
        )
        current = stack.get("/predictions/current").json()
    finally:
        _restore(stack, folder)
    recovered = stack.wait_for_complete_run(
        after_id=fallback[0], timeout=90, where="tft_count = servers AND fallback_count = 0"
    )
    after = wait_for(
        lambda: (p := stack.get("/status").json()["predictions"])["run_id"] >= recovered[0] and p,
        timeout=30,
        what="/status to show the recovered run",
    )
    logger.info(
        "model %s: fallback run #%s reasons %s; TFT back in run #%s",
        reason,
        fallback[0],
        status["fallback_reasons"],
        recovered[0],
    )

    assert status["tft_servers"] == 0
    assert status["fallback_reasons"].get(reason) == status["servers"]
    per_server = current["metadata"]["fallback_reasons"]
    assert current["metadata"]["run_id"] >= fallback[0]
    assert set(current["metadata"]["methods"].values()) == {"heuristic"}
    assert len(per_server) == status["servers"]
    assert all(text.startswith(f"{reason}:") for text in per_server.values()), list(per_server.values())[:3]
    assert after["tft_servers"] == after["servers"] and after["fallback_reasons"] == {}


def test_corrupted_model_weights_fall_back_to_heuristic_with_reason_and_recover(healthy_stack: Stack, model_folder):
    _fallback_then_recovery(healthy_stack, model_folder, _corrupt, "model_load_failed")


def test_deleted_model_folder_falls_back_to_heuristic_with_reason_and_recovers(healthy_stack: Stack, model_folder):
    _fallback_then_recovery(healthy_stack, model_folder, _delete, "model_folder_unreadable")
