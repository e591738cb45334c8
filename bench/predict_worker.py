"""``python -m bench.predict_worker``: one fleet_predict() in a fresh process (as a Celery worker
would run it: import, load the model, forecast), then its peak RSS as JSON on stdout."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path


def main() -> None:
    import django

    django.setup()
    from forecasting.runs.chunks import fleet_predict

    started = time.perf_counter()
    run = fleet_predict()
    seconds = time.perf_counter() - started
    hwm = None
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    print(json.dumps({
        "seconds_incl_model_load": round(seconds, 3),
        "servers": run.servers if run else None,
        "tft": run.tft_count if run else None,
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "vmhwm_mb": round(hwm, 1) if hwm else None,
    }))


if __name__ == "__main__":
    main()
