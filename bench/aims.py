"""Issue 16's aims (Performance): their limits and their verdicts on the results, for the
figures that were measured. ``report.verdicts`` merges them with the older aims."""

from __future__ import annotations

from typing import Any

# Issue 16 (Performance).
AIM_STEP_US = 100.0  # per-step overhead in-process on SQLite
AIM_STEP_VS_DRIVER = 10.0  # ... and <= 10x one bare-driver commit
AIM_FIXED_RUN_US = 500.0  # fixed cost per run
AIM_PG_STEP_VS_COMMIT = 2.0  # on PostgreSQL, per-step <= 2x one commit round trip
AIM_DBOS_RATIO = 5.0  # our in-process 10-step runs/s >= 5x DBOS's
AIM_DBOS_WORKER_RATIO = 2.0  # through one worker >= 2x DBOS in-process
AIM_RUN_P50_MS = 15.0  # POST a 10-step run -> completed visible in the API
AIM_RUN_P99_OVER_P50 = 3.0
AIM_RESUME_P50_MS = 25.0  # resume link POST -> the next step started
AIM_TIMER_LATE_MS = 250.0  # a due ctx.wait timer -> the step re-entered
AIM_MEMORY_GROWTH_PCT = 10.0  # worker RSS after 10,000 runs over idle
AIM_REPLAY_10_MS = 0.5  # replay of a 10-step completed run


def aim(label: str, value: float, limit: float, ok: bool) -> dict[str, Any]:
    return {"aim": label, "value": value, "limit": limit, "pass": ok}


def performance_verdicts(results: dict[str, Any]) -> dict[str, Any]:
    """Issue 16's aims, for the figures that were measured."""
    aims: dict[str, Any] = {}
    step = results["step_overhead"]
    per = step["per_step_overhead_us"]
    aims["step_overhead_us"] = aim(
        f"per-step overhead <= {AIM_STEP_US:g} us in-process (SQLite)",
        per,
        AIM_STEP_US,
        per <= AIM_STEP_US,
    )
    ratio = step.get("ratio_to_driver_commit")
    if ratio is not None:
        aims["step_overhead_vs_driver_commit"] = aim(
            f"per-step overhead <= {AIM_STEP_VS_DRIVER:g} x one bare sqlite3 commit",
            ratio,
            AIM_STEP_VS_DRIVER,
            ratio <= AIM_STEP_VS_DRIVER,
        )
    fixed = step["fixed_run_us"]
    aims["fixed_run_us"] = aim(
        f"fixed cost per run <= {AIM_FIXED_RUN_US:g} us",
        fixed,
        AIM_FIXED_RUN_US,
        fixed <= AIM_FIXED_RUN_US,
    )
    pg = results.get("step_overhead_postgresql")
    if pg:
        aims["step_overhead_postgresql"] = aim(
            f"PostgreSQL per-step overhead <= {AIM_PG_STEP_VS_COMMIT:g} x one commit round trip",
            pg["ratio_to_commit"],
            AIM_PG_STEP_VS_COMMIT,
            pg["ratio_to_commit"] <= AIM_PG_STEP_VS_COMMIT,
        )
    dbos = (results.get("peers") or {}).get("dbos")
    if dbos and "ratio" in dbos:
        aims["dbos_in_process"] = aim(
            f"our in-process 10-step runs/s >= {AIM_DBOS_RATIO:g} x DBOS's",
            dbos["ratio"],
            AIM_DBOS_RATIO,
            dbos["ratio"] >= AIM_DBOS_RATIO,
        )
        aims["dbos_one_worker"] = aim(
            f"ours through one worker >= {AIM_DBOS_WORKER_RATIO:g} x DBOS in-process",
            dbos["worker_ratio"],
            AIM_DBOS_WORKER_RATIO,
            dbos["worker_ratio"] >= AIM_DBOS_WORKER_RATIO,
        )
    lat = results.get("latency")
    if lat:
        run, resume = lat["run_10_steps"], lat["resume_to_next_step"]
        late = lat["timer_lateness"]["p50_ms"]
        spread = run["p99_ms"] / run["p50_ms"]
        aims["latency_run_p50"] = aim(
            f"POST a 10-step run -> completed in the API, p50 <= {AIM_RUN_P50_MS:g} ms",
            run["p50_ms"],
            AIM_RUN_P50_MS,
            run["p50_ms"] <= AIM_RUN_P50_MS,
        )
        aims["latency_run_p99"] = aim(
            f"... p99 <= {AIM_RUN_P99_OVER_P50:g} x p50 (value: p99 / p50)",
            spread,
            AIM_RUN_P99_OVER_P50,
            spread <= AIM_RUN_P99_OVER_P50,
        )
        aims["latency_resume_p50"] = aim(
            f"resume link POST -> next step started, p50 <= {AIM_RESUME_P50_MS:g} ms",
            resume["p50_ms"],
            AIM_RESUME_P50_MS,
            resume["p50_ms"] <= AIM_RESUME_P50_MS,
        )
        aims["timer_lateness_p50"] = aim(
            f"a due ctx.wait timer -> the step re-entered, p50 <= {AIM_TIMER_LATE_MS:g} ms late",
            late,
            AIM_TIMER_LATE_MS,
            late <= AIM_TIMER_LATE_MS,
        )
    mem = results.get("memory")
    if mem:
        growth = mem["growth_pct"]
        aims["memory_growth"] = aim(
            f"worker RSS after {mem['runs']:,} runs <= idle + {AIM_MEMORY_GROWTH_PCT:g} %",
            growth,
            AIM_MEMORY_GROWTH_PCT,
            growth <= AIM_MEMORY_GROWTH_PCT,
        )
    replay = results["replay"].get("run_10_ms")
    if replay is not None:
        aims["replay_run_10_ms"] = aim(
            f"replay of a 10-step completed run <= {AIM_REPLAY_10_MS:g} ms",
            replay,
            AIM_REPLAY_10_MS,
            replay <= AIM_REPLAY_10_MS,
        )
    return aims
