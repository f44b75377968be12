"""The aims, their verdicts and the printed table."""

from __future__ import annotations

from typing import Any

AIM_STEP_VS_COMMIT = 3.0  # per-step overhead <= 3x one commit
AIM_THROUGHPUT_RATIO = 0.8  # engine runs/s >= 0.8x raw RQ jobs/s
AIM_REPLAY_US = 10.0  # < 10 us per replayed completed step
AIM_TASKS_MS = 100.0  # every Tasks page figure well under 100 ms at 100,000 runs


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    aims: dict[str, Any] = {}
    ratio = results["step_overhead"]["ratio_to_commit"]
    aims["step_overhead_vs_commit"] = {
        "aim": f"per-step overhead <= {AIM_STEP_VS_COMMIT:g} x one SQLite commit "
        "(median of per-round ratios)",
        "value": ratio,
        "limit": AIM_STEP_VS_COMMIT,
        "pass": ratio <= AIM_STEP_VS_COMMIT,
    }
    for name, cfg in results.get("throughput", {}).get("configs", {}).items():
        aims[f"throughput_{name}"] = {
            "aim": f"engine runs/s >= {AIM_THROUGHPUT_RATIO:g} x raw RQ jobs/s "
            f"({cfg['worker_class']} x{cfg['workers']})",
            "value": cfg["ratio"],
            "limit": AIM_THROUGHPUT_RATIO,
            "pass": cfg["ratio"] >= AIM_THROUGHPUT_RATIO,
        }
    per = results["replay"]["per_completed_step_us"]
    aims["replay_per_step"] = {
        "aim": f"replay < {AIM_REPLAY_US:g} us per completed step",
        "value": per,
        "limit": AIM_REPLAY_US,
        "pass": per < AIM_REPLAY_US,
    }
    for db_name in ("sqlite", "postgresql"):
        measured = (results.get("tasks") or {}).get(db_name)
        if measured:
            worst = max(measured["figures"].values())
            aims[f"tasks_page_{db_name}"] = {
                "aim": f"every Tasks page figure < {AIM_TASKS_MS:g} ms at "
                f"{measured['runs']:,} runs ({db_name}; the slowest shown)",
                "value": worst,
                "limit": AIM_TASKS_MS,
                "pass": worst < AIM_TASKS_MS,
            }
    aims["all_pass"] = all(a["pass"] for a in aims.values() if isinstance(a, dict))
    return aims


def tasks_table(tasks: dict[str, Any]) -> str:
    """(d): one row per page or query, SQLite and PostgreSQL side by side (medians, ms)."""
    sqlite = tasks["sqlite"]["figures"]
    pg = (tasks.get("postgresql") or {}).get("figures", {})
    width = max(len(name) for name in sqlite) + 2
    lines = [
        f"(d) Tasks page at {tasks['sqlite']['runs']:,} runs: medians of {tasks['reps']} "
        f"requests as a logged-in viewer (rendering included); aim: well under "
        f"{AIM_TASKS_MS:g} ms",
        f"{'figure'.ljust(width)}{'SQLite':>10}{'PostgreSQL':>12}  verdict",
        "-" * (width + 31),
    ]
    for name, ms in sqlite.items():
        other = pg.get(name)
        worst = max(ms, other or 0.0)
        lines.append(
            f"{name.ljust(width)}{ms:>7.1f} ms"
            + (f"{other:>9.1f} ms" if other is not None else f"{'-':>12}")
            + f"  {_verdict(worst < AIM_TASKS_MS)}"
        )
    if not pg:
        lines.append(f"PostgreSQL: {tasks.get('postgresql_note', 'not measured')}")
    lines.append(
        f"Open approvals seeded: {tasks['sqlite']['open_approvals']:,}. SQLite is measured "
        "without ANALYZE (as a fresh install runs); PostgreSQL after VACUUM ANALYZE "
        "(what autovacuum does)."
    )
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str, str]] = []
    aims = results["aims"]
    step, commit = results["step_overhead"], results["commit"]
    n = step["steps"]

    def row(
        figure: str,
        value: str = "",
        baseline: str = "",
        ratio: str = "",
        aim: str = "",
        verdict: str = "",
    ) -> None:
        rows.append((figure, value, baseline, ratio, aim, verdict))

    a = aims["step_overhead_vs_commit"]
    row(
        f"(a) engine overhead per step ({n} no-op steps)",
        f"{step['per_step_overhead_us']:.1f} us",
        f"1 commit {commit['commit_us']:.1f} us",  # the ratio: median of per-round ratios
        f"{a['value']:.2f}x",
        f"<= {AIM_STEP_VS_COMMIT:g}x",
        _verdict(a["pass"]),
    )
    row(f"    engine run, {n} steps, in-process", f"{step['engine_run_ms']:.2f} ms")
    row(f"    bare step calls, {n} steps", f"{step['bare_run_us']:.2f} us")
    row(
        f"    marginal per step ({step['small_steps']} -> {n} steps)",
        f"{step['marginal_step_us']:.1f} us",
    )
    row("    fixed per run (claim, reads, finish)", f"{step['fixed_run_us']:.0f} us")
    row(
        "    baseline: 1 SQLite WAL commit (INSERT+COMMIT, batch mean)",
        f"{commit['commit_us']:.1f} us",
    )
    row("    baseline: same with BEGIN IMMEDIATE", f"{commit['commit_immediate_us']:.1f} us")
    row("    reference: same on the bare sqlite3 driver", f"{commit['commit_dbapi_us']:.1f} us")

    tp = results.get("throughput")
    if tp:
        steps = tp["engine_steps"]
        for name, cfg in tp["configs"].items():
            a = aims[f"throughput_{name}"]
            row(
                f"(b) {cfg['worker_class']} x{cfg['workers']}: {steps}-step runs/s",
                f"{cfg['engine_runs_per_s']:.1f} /s",
                f"raw {cfg['raw_jobs_per_s']:.1f} jobs/s",
                f"{cfg['ratio']:.2f}",
                f">= {AIM_THROUGHPUT_RATIO:g}",
                _verdict(a["pass"]),
            )
        for cfg in tp["configs"].values():
            row(
                f"    baseline: raw RQ no-op jobs/s, {cfg['worker_class']} x{cfg['workers']}",
                f"{cfg['raw_jobs_per_s']:.1f} /s",
            )
            row(
                f"    engine steps/s, {cfg['worker_class']} x{cfg['workers']}",
                f"{cfg['engine_steps_per_s']:.0f} /s",
            )

    rp = results["replay"]
    a = aims["replay_per_step"]
    row(
        "(c) replay per completed step",
        f"{rp['per_completed_step_us']:.2f} us",
        "",
        "",
        f"< {AIM_REPLAY_US:g} us",
        _verdict(a["pass"]),
    )
    row("    fixed cost of a replay (claim, reads, finish)", f"{rp['fixed_replay_us']:.0f} us")
    for size, ms in rp["replay_ms_by_size"].items():
        row(f"    replay of a run with {size} completed steps", f"{ms:.2f} ms")

    jr = results.get("journal")
    if jr:
        row(
            f"(e) journal export, {jr['steps']} steps, {jr['task_results']} task results",
            f"{jr['export_ms']:.1f} ms",
            f"{jr['journal_bytes'] / 1024:.0f} KiB, {jr['entries']} entries",
        )
        row("    recover it (checks, pinning, seeded rows)", f"{jr['recover_ms']:.1f} ms")
        row(
            "    the recovered run's finish (100 reused steps)",
            f"{jr['recovered_finish_ms']:.1f} ms",
        )
        rc = jr["reads_and_hash_us"]
        row(
            "    a checkpoint's extra cost of reads + content hash",
            f"{rc['extra_us']:.1f} us",
            f"checkpoint {rc['checkpoint_us']:.0f} us",
        )

    head = ("figure", "median", "baseline", "ratio", "aim", "verdict")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(6)]

    def fmt(r: tuple[str, ...]) -> str:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 5)]
        return "  ".join([*cells, r[5].ljust(widths[5])]).rstrip()

    lines = [fmt(head), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]

    bd = results.get("breakdown")
    if bd:
        n = bd["steps"]
        lines += [
            "",
            f"Where an in-process {n}-step run's time goes (wrapped timers, mean of "
            f"{bd['reps']} runs, {bd['run_us'] / 1e3:.1f} ms a run):",
            f"  {'per run':>10}  {'per step':>9}  part",
        ]
        for label, us in sorted(bd["parts_us_per_run"].items(), key=lambda kv: -kv[1]):
            if label in bd["per_step_labels"]:
                kind = ""
            elif label.startswith("Runner.drive"):
                kind = " (reads once, loop per step)"
            else:
                kind = " (once per run)"
            lines.append(f"  {us / 1e3:7.2f} ms  {us / n:6.1f} us  {label}{kind}")
    if results.get("tasks"):
        lines += ["", tasks_table(results["tasks"])]
    verdict = "all aims met" if aims["all_pass"] else "some aims missed"
    missed = [k for k, v in aims.items() if isinstance(v, dict) and not v["pass"]]
    lines += [
        "",
        f"Verdict: {verdict}"
        + (f" ({', '.join(missed)})" if missed else "")
        + f".  Wall time {results['wall_s']:.0f} s.",
    ]
    return "\n".join(lines)
