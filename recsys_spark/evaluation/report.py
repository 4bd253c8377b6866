"""``metrics.json`` + ``report.md`` with PNG plots (metrics per method, recall@K curves, funnel)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional

log = logging.getLogger(__name__)

#: Peer figures of ../shared/EVALUATION.md (recall@30, ndcg@30), same split, tuned on the test split.
PEER_REFERENCE: Dict[str, Dict[str, Any]] = {
    "movielens": {"test_users": 27, "popularity": (0.116, 0.117), "implicit_als": (0.141, 0.140),
                  "implicit_item": (0.175, 0.181), "implicit_cosine": (0.148, 0.150), "ease": (0.150, 0.149)},
    "hetrec": {"test_users": 466, "popularity": (0.089, 0.055), "implicit_als": (0.144, 0.096),
               "implicit_item": (0.102, 0.060), "implicit_cosine": (0.100, 0.061), "ease": (0.138, 0.088)},
}

MAIN_METRICS = ("recall", "ndcg", "hit", "precision")


def _fmt(v: Any, nd: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _plots(result: Dict[str, Any], out_dir: str) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result["k"]
    methods = result.get("methods", {})
    written = []
    if methods:
        names = list(methods)
        keys = [f"{m}@{k}" for m in ("recall", "ndcg", "hit")] + ["coverage", "diversity"]
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names) + 2), 4))
        width = 0.8 / len(keys)
        for j, key in enumerate(keys):
            vals = [float(methods[n].get(key) or 0.0) for n in names]
            ax.bar([i + j * width for i in range(len(names))], vals, width, label=key)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
        ax.set_xticklabels(names, rotation=20, ha="right")
        ax.set_title(f"{result['dataset']}: metrics per method ({result['test_users']} test users)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "metrics.png"), dpi=72)
        plt.close(fig)
        written.append("metrics.png")

        fig, ax = plt.subplots(figsize=(6, 4))
        for n in names:
            curve = methods[n].get("recall_curve") or {}
            xs = sorted(int(x) for x in curve)
            ax.plot(xs, [curve[x] if x in curve else curve[str(x)] for x in xs], marker="o", label=n)
        ax.set_xlabel("K")
        ax.set_ylabel("recall@K")
        ax.set_title(f"{result['dataset']}: recall@K")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "recall_curve.png"), dpi=72)
        plt.close(fig)
        written.append("recall_curve.png")
    for name, rows in (result.get("funnel") or {}).items():
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
        labels = [r["stage"] for r in rows][::-1]
        ax.barh(labels, [r["truth_recall"] for r in rows][::-1])
        for y, r in enumerate(rows[::-1]):
            ax.text(r["truth_recall"], y, f" {r['truth_recall']:.3f} ({r['mean_candidates']:.0f}/user)",
                    va="center", fontsize=8)
        ax.set_xlabel("share of the truth still present (truth recall)")
        ax.set_title(f"{result['dataset']}: funnel of {name}")
        fig.tight_layout()
        fname = f"funnel_{name}.png"
        fig.savefig(os.path.join(out_dir, fname), dpi=72)
        plt.close(fig)
        written.append(fname)
    return written


def _cell(v, digits: int = 4) -> str:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return f"[{_fmt(v[0], digits)}, {_fmt(v[1], digits)}]"
    return _fmt(v, digits)


def render_markdown(result: Dict[str, Any], plots: Optional[List[str]] = None) -> str:
    """The report as markdown (tables of every method, reference peers, funnel, skipped)."""
    k = result["k"]
    lines = [f"# Offline evaluation: {result['dataset']}", "",
             f"Source `{result.get('source', '')}`; global temporal split at the 90th percentile "
             f"(cutoff {result.get('cutoff')}); K = {k}.", "",
             f"- test users: **{result['test_users']}**, truth pairs: {result.get('truth_pairs')}",
             f"- train: {result.get('train_users')} users, {result.get('train_items')} items, "
             f"{result.get('train_pairs')} user-item pairs", ""]
    methods = result.get("methods", {})
    cols = [f"recall@{k}", f"recall@{k}_ci95", f"ndcg@{k}", f"ndcg@{k}_ci95", f"hit@{k}", f"precision@{k}", "coverage", "diversity", "novelty",
            "creator_diversity", "fit_seconds"]
    if methods:
        lines += ["## Metrics", "", "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, m in methods.items():
            lines.append(f"| {name} | " + " | ".join(_cell(m.get(c), 1 if c == "fit_seconds" else 4)
                                                      for c in cols) + " |")
        basis = {m.get("diversity_basis") for m in methods.values() if m.get("diversity_basis")}
        lines += ["", "Intervals: per-user bootstrap 95% (resampled test users). "
                  f"Diversity = intra-list distance (1 - cosine) on {', '.join(sorted(basis)) or '-'}; "
                      "novelty = mean self-information (bits) of the recommended items; coverage = distinct "
                      "recommended items / train items; fit_seconds = fit + recommend for the test users.", ""]
        viol = {n: m["train_items_recommended"] for n, m in methods.items() if m.get("train_items_recommended")}
        if viol:
            lines += [f"**Protocol violation**: train items recommended: {viol}", ""]
    ref = PEER_REFERENCE.get(result["dataset"])
    if ref and k == 30:
        lines += ["## Against the peer figures of EVALUATION.md", "",
                  f"Reference test users: {ref['test_users']} (this run: {result['test_users']}).", "",
                  "| method | recall@30 (ref) | recall@30 (here) | ndcg@30 (ref) | ndcg@30 (here) |",
                  "|---|---|---|---|---|"]
        for name in ("popularity", "implicit_als", "implicit_item", "implicit_cosine", "ease"):
            here = methods.get(name, {})
            r, n = ref[name]
            lines.append(f"| {name} | {r:.3f} | {_fmt(here.get('recall@30'), 3)} | {n:.3f} | "
                         f"{_fmt(here.get('ndcg@30'), 3)} |")
        for name in methods:
            if name not in ref:
                lines.append(f"| {name} | - | {_fmt(methods[name].get('recall@30'), 3)} | - | "
                             f"{_fmt(methods[name].get('ndcg@30'), 3)} |")
        lines.append("")
    if result.get("compare"):
        lines += ["## Paired differences (per-user bootstrap 95%)", "",
                  "An interval above 0 beats, below 0 misses, across 0 is a tie at this sample size.", "",
                  f"| pair | recall@{k} diff | 95% | ndcg@{k} diff | 95% |", "|---|---|---|---|---|"]
        for pair, e in result["compare"].items():
            lines.append(f"| {pair} | {_fmt(e.get(f'recall@{k}_diff'))} | {_cell(e.get(f'recall@{k}_diff_ci95'))} | "
                         f"{_fmt(e.get(f'ndcg@{k}_diff'))} | {_cell(e.get(f'ndcg@{k}_diff_ci95'))} |")
        lines.append("")
    for name, m in methods.items():
        if m.get("path") == "weekly":
            lines += [f"## {name}: the weekly job's run (week {m.get('week')}, run `{m.get('run_id')}`)", "",
                      f"Data coverage: `{json.dumps(m.get('data_coverage'))}`", "",
                      "| stage | status | seconds | rows in | rows out | skipped / note |", "|---|---|---|---|---|---|"]
            for r in m.get("stage_log") or []:
                lines.append(f"| {r['stage']} | {r['status']} | {_fmt(r.get('seconds'), 1)} | {r.get('rows_in')} | "
                             f"{r.get('rows_out')} | {r.get('skipped') or r.get('message') or ''} |")
            lines.append("")
    for name, rows in (result.get("funnel") or {}).items():
        lines += [f"## Funnel of {name}", "", "Where the truth gets lost: share of each test user's truth "
                  "present in the stage's candidate set (mean over test users).", "",
                  "| stage | candidates/user | truth recall | recall capped @K | hit rate | truth pairs kept |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['stage']} | {r['mean_candidates']:.1f} | {r['truth_recall']:.4f} | "
                         f"{r['recall_capped']:.4f} | {r['hit_rate']:.4f} | {r['truth_kept']} |")
        lines.append("")
    if result.get("skipped"):
        lines += ["## Skipped", ""] + [f"- `{n}`: {why}" for n, why in result["skipped"].items()] + [""]
    if result.get("failed"):
        lines += ["## Failed", ""] + [f"- `{n}`: {why}" for n, why in result["failed"].items()] + [""]
    if result.get("params"):
        lines += ["## Parameters", "", "```", json.dumps(result["params"], indent=1, sort_keys=True), "```", ""]
    for p in plots or []:
        lines += [f"![{p}]({p})", ""]
    return "\n".join(lines)


def write_report(result: Dict[str, Any], out_dir: str) -> Dict[str, str]:
    """Write ``metrics.json``, the PNG plots and ``report.md`` under ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    mpath = os.path.join(out_dir, "metrics.json")
    with open(mpath, "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=False, default=str)
    try:
        plots = _plots(result, out_dir)
    except Exception:  # noqa: BLE001 - a plotting problem must not lose the metrics
        log.exception("plots failed; report without plots")
        plots = []
    rpath = os.path.join(out_dir, "report.md")
    with open(rpath, "w") as fh:
        fh.write(render_markdown(result, plots))
    log.info("wrote %s and %s (%d plots)", mpath, rpath, len(plots))
    return {"metrics": mpath, "report": rpath, **{p: os.path.join(out_dir, p) for p in plots}}
