"""Render the "Scale" section of ``benchmarks/README.md`` from ``results/pipeline_<size>.json``.

    python benchmarks/pipeline_report.py            # prints the markdown, writes the plot

For every size that has a result: per-stage seconds, rows out, shuffle bytes; then the growth of
each stage between consecutive sizes compared with the growth in users and interactions (a stage
growing faster than users is flagged), driver memory per size, and a log-log plot of stage time
against users (``results/pipeline_scaling.png``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
ORDER = ["XS", "S", "M", "L"]


def load(results: str = RESULTS) -> Dict[str, dict]:
    """The result of every size: ``pipeline_<size>.json``, else its ``noemb`` variant (the run
    with ``embeddings.enabled=false``: no embed, content, prompt or creator stages)."""
    out = {}
    for size in ORDER:
        for name in (f"pipeline_{size}.json", f"pipeline_{size}_noemb.json"):
            path = os.path.join(results, name)
            if os.path.exists(path):
                with open(path) as fh:
                    out[size] = json.load(fh)
                break
    return out


def _label(size: str, res: dict) -> str:
    return f"{size} ({res['variant']})" if res.get("variant") else size


def _mb(x) -> str:
    return "" if x in (None, 0) else f"{x / 2**20:,.0f}"


def _n(x) -> str:
    return "" if x is None else f"{x:,}"


def _stages(res: dict) -> Dict[str, dict]:
    return {s["stage"]: s for s in res.get("stages", []) if s["stage"] != "run"}


def _audio(res: dict) -> str:
    """What of the catalogue had audio and what the measured run embedded (issue 17's fields)."""
    if res.get("audio_coverage") is None:
        return "audio coverage not recorded (a run before 2026-12-04)"
    return (f"audio for {res['tracks_with_audio']:,} of {res['catalog_tracks']:,} tracks (coverage "
            f"{res['audio_coverage']:g}), {res['new_tracks_embedded']:,} new tracks embedded in the run")


def stage_table(size: str, res: dict) -> List[str]:
    p = res["platform"]
    lines = [f"**{_label(size, res)}**: {p.get('n_users', 0):,} users, {p.get('n_tracks', 0):,} tracks, "
             f"{p.get('interactions', 0):,} interactions, {p.get('user_prompts', 0):,} prompts; {_audio(res)}; "
             f"weekly run **{res['weekly_seconds']:,.0f} s** for {res['users']:,} users ({res['short_users']} short of 30); "
             f"measured {res.get('measured_at', '?')} on {res.get('machine', '?')}.", "",
             "| stage | seconds | rows in | rows out | shuffle read MB | shuffle write MB | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, s in _stages(res).items():
        note = (s.get("skipped") or "")[:70]
        lines.append(f"| {name} | {s['seconds'] or 0:,.1f} | {_n(s['rows_in'])} | {_n(s['rows_out'])} | "
                     f"{_mb(s.get('shuffle_read_bytes'))} | {_mb(s.get('shuffle_write_bytes'))} | {note} |")
    return lines


def growth_table(results: Dict[str, dict]) -> List[str]:
    sizes = [s for s in ORDER if s in results and s != "XS"]
    lines = []
    for a, b in zip(sizes, sizes[1:]):
        ra, rb = results[a], results[b]
        users = rb["users"] / max(ra["users"], 1)
        inter = rb["platform"].get("interactions", 0) / max(ra["platform"].get("interactions", 1), 1)
        sa, sb = _stages(ra), _stages(rb)
        both = [n for n in sb if n in sa and sa[n]["seconds"] and sb[n]["seconds"]]
        whole = f"whole run x{rb['weekly_seconds'] / max(ra['weekly_seconds'], 1e-9):.1f}"
        if ra.get("variant") != rb.get("variant"):  # e.g. M with embeddings vs L without
            common = sum(sb[n]["seconds"] for n in both) / max(sum(sa[n]["seconds"] for n in both), 1e-9)
            whole = (f"the stages both runs have x{common:.1f} ({_label(a, ra)} and {_label(b, rb)} "
                     f"differ in the stages they run)")
        if ra.get("audio_coverage") != rb.get("audio_coverage"):
            cov = ["not recorded" if r.get("audio_coverage") is None else r["audio_coverage"] for r in (ra, rb)]
            whole += (f"; audio coverage {cov[0]} vs {cov[1]}: the stages that "
                      "work on audio (embed, recall.content, train.din and aggregate.creators through the "
                      "embeddings) do not compare")
        lines += ["", f"Growth {a} -> {b}: users x{users:.1f}, interactions x{inter:.1f}, {whole}.", "",
                  "| stage | seconds " + a + " | seconds " + b + " | time growth | vs users | shuffle growth |",
                  "|---|---:|---:|---:|---|---:|"]
        for name in both:
            g = (sb[name]["seconds"] or 0) / sa[name]["seconds"]
            sh_a = sa[name].get("shuffle_write_bytes") or 0
            sh_b = sb[name].get("shuffle_write_bytes") or 0
            verdict = "sub-linear" if g < 0.9 * users else ("linear" if g <= 1.15 * users else "**super-linear**")
            lines.append(f"| {name} | {sa[name]['seconds']:,.1f} | {sb[name]['seconds']:,.1f} | x{g:.1f} | {verdict} | "
                         f"{'x%.1f' % (sh_b / sh_a) if sh_a and sh_b else ''} |")
    return lines


def memory_table(results: Dict[str, dict]) -> List[str]:
    lines = ["", "| size | users | driver JVM heap used, peak MB | driver JVM live heap after GC, peak MB | "
                 "driver Python RSS, peak MB | executor JVM heap peak MB (Spark metrics) |",
             "|---|---:|---:|---:|---:|---:|"]
    for size in ORDER:
        if size not in results:
            continue
        r = results[size]
        ex = (r.get("executor_peaks") or {}).get("driver", {})
        lines.append(f"| {_label(size, r)} | {r['users']:,} | {r.get('peak_driver_jvm_heap_mb', '')} | "
                     f"{r.get('peak_driver_jvm_live_heap_after_gc_mb', '')} | {r.get('peak_driver_python_rss_mb', '')} | "
                     f"{_mb(ex.get('JVMHeapMemory'))} |")
    return lines


def plot(results: Dict[str, dict], path: str) -> bool:
    sizes = [s for s in ORDER if s in results]
    if len(sizes) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    users = [results[s]["users"] for s in sizes]
    names = [n for n in _stages(results[sizes[-1]])
             if all((_stages(results[s]).get(n) or {}).get("seconds") for s in sizes)]
    for n in names:
        ys = [max(_stages(results[s])[n]["seconds"] or 0, 0.1) for s in sizes]
        ax.plot(users, ys, marker="o", label=n)
    ax.plot(users, [results[s]["weekly_seconds"] for s in sizes], "k--", marker="s",
            label="whole run" + ("".join(f", {_label(s, results[s])}" for s in sizes if results[s].get("variant"))))
    base = results[sizes[0]]["weekly_seconds"]
    ax.plot(users, [base * u / users[0] for u in users], ":", color="grey", label="linear in users")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("users")
    ax.set_ylabel("seconds (2 cores, local[2])")
    ax.set_title("Weekly run: stage time vs users")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def render(results: Dict[str, dict]) -> str:
    lines: List[str] = []
    for size in ORDER:
        if size in results:
            lines += stage_table(size, results[size]) + [""]
    lines += growth_table(results)
    lines += ["", "Driver and executor memory (local mode: the driver JVM is also the only executor):"]
    lines += memory_table(results)
    if plot(results, os.path.join(RESULTS, "pipeline_scaling.png")):
        lines += ["", "![stage time vs users](results/pipeline_scaling.png)"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(load(sys.argv[1] if len(sys.argv) > 1 else RESULTS)))
