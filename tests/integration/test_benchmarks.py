"""`make bench-scale`'s machinery on 20 clients (its own moto and emulator processes): it seeds, runs the
scheduled jobs through the real handlers and the work queue, and its figures add up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_scale_runs_and_its_jobs_read_only_what_is_due() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_scale.py"), "--clients", "20", "--cycles", "10"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    assert (figures["clients"], figures["clients_in_use"], figures["clients_idle"]) == (20, 18, 2)
    for job in ("pre_refresh", "rotation_sweep"):
        phase = figures[job]
        assert phase["due_total"] > 0, job
        assert phase["index_items_read_total"] == phase["due_total"], job  # the due items, no others
        assert phase["dispatched_total"] == phase["due_total"], job
        assert (phase["refused_messages"], phase["work_failed"]) == (0, 0), job
    assert figures["rotation_sweep"]["cycles"] == 2  # every fifth cycle
    # every refresh cost one token request; the idle clients' checks one each, the others' none
    assert figures["refresh_token_requests"] == figures["pre_refresh"]["due_total"]
    assert figures["health_check_token_requests"] <= figures["clients_idle"]
    assert figures["longest_over_half_timeout"] < 1
    assert figures["table_items"] > figures["pre_refresh"]["items_read_per_cycle_max"]
