# Databricks notebook source
# MAGIC %md
# MAGIC # Explore one user's Discover Weekly
# MAGIC
# MAGIC The user's recent listening (the seeds of week W), their 30 tracks, and why each track is there.
# MAGIC
# MAGIC Parameters (widgets on Databricks, `RECSYS_<NAME>` environment variables locally):
# MAGIC `conf` (e.g. `conf/databricks.yaml`), `warehouse`, `week` (a Monday; default the latest), `user`
# MAGIC (default: a user with a full playlist and some history).
# MAGIC
# MAGIC Locally: `RECSYS_WEEK=2026-11-23 python notebooks/01_explore_user_playlist.py`

# COMMAND ----------

# MAGIC %md The package: the wheel the bundle built and synced next to this folder (on a job cluster the
# MAGIC task's library already installed it; locally it is installed in the venv).

# COMMAND ----------

# MAGIC %pip install --quiet ../dist/recsys_spark-0.1.0-py3-none-any.whl

# COMMAND ----------

# MAGIC %restart_python

# COMMAND ----------

from recsys_spark import queries as Q
from recsys_spark.notebook import param, section, setup, show
from recsys_spark.show import format_user_week, pick_user

ctx = setup()
user = param("user", "") or pick_user(ctx.tables, ctx.week)
print(f"user: {user}")

# COMMAND ----------

# MAGIC %md ## Seeds and playlist

# COMMAND ----------

section("Seeds and playlist")
print(format_user_week(ctx.tables, ctx.week, user) if user else f"no playlists for week {ctx.week}")

# COMMAND ----------

# MAGIC %md ## Why each track is there
# MAGIC Channels that proposed the track, its scores, the seed track it came from and the reason shown.

# COMMAND ----------

section("Why each track is there")
show(Q.why_picked(ctx.spark, ctx.tables, user or "", ctx.week)
     .select("position", "title", "creator_id", "sources", "seed_title", "final_score", "reason"))

# COMMAND ----------

# MAGIC %md ## Last week's playlist of the same user

# COMMAND ----------

section("Last week's playlist")
show(Q.last_week_playlist(ctx.spark, ctx.tables, user or "", ctx.week)
     .select("position", "title", "creator_id", "sources", "reason"))
