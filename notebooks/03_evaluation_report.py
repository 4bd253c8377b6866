# Databricks notebook source
# MAGIC %md
# MAGIC # Offline evaluation report
# MAGIC
# MAGIC The protocol of EVALUATION.md (temporal split, recall / NDCG / hit @30, coverage, novelty,
# MAGIC diversity) on the platform's own tables, every method side by side. Everything is done by
# MAGIC `recsys_spark.evaluation.evaluate`; this notebook only picks the parameters and prints the report.
# MAGIC
# MAGIC Parameters: `conf`, `warehouse`, `eval_methods` (comma list; default
# MAGIC `popularity,item_cf,als,ease`), `eval_k` (30), `eval_out` (report folder, default `eval_out/platform`).

# COMMAND ----------

# MAGIC %md The package: the wheel the bundle built and synced next to this folder (on a job cluster the
# MAGIC task's library already installed it; locally it is installed in the venv).

# COMMAND ----------

# MAGIC %pip install --quiet ../dist/recsys_spark-0.1.0-py3-none-any.whl

# COMMAND ----------

# MAGIC %restart_python

# COMMAND ----------

from recsys_spark.evaluation import evaluate, load_dataset
from recsys_spark.evaluation.report import render_markdown
from recsys_spark.notebook import param, section, setup

ctx = setup()
methods = [m.strip() for m in param("eval_methods", "popularity,item_cf,als,ease").split(",") if m.strip()]
k = int(param("eval_k", "30"))
out_dir = param("eval_out", "eval_out/platform")

# COMMAND ----------

section("Evaluation")
dataset = load_dataset(ctx.spark, "platform", tables=ctx.tables)
result = evaluate(ctx.spark, dataset, methods, k=k, out_dir=out_dir, seed=ctx.cfg.pipeline.seed,
                  history_last_n=ctx.cfg.history.last_n)
for name, m in result["methods"].items():
    print(f"{name:16s} recall@{k} {m[f'recall@{k}']:.4f}  ndcg@{k} {m[f'ndcg@{k}']:.4f}  hit@{k} {m[f'hit@{k}']:.4f}")
for name, why in {**result["skipped"], **result["failed"]}.items():
    print(f"{name:16s} not evaluated: {why}")

# COMMAND ----------

section("Report")
print(render_markdown(result))
print(f"report written to {out_dir}/report.md")
