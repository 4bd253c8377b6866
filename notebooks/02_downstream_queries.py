# Databricks notebook source
# MAGIC %md
# MAGIC # Downstream queries on the Discover Weekly tables
# MAGIC
# MAGIC This week's playlist, last week's through the `week_start` partition and through Delta time
# MAGIC travel, channel mix, creator exposure, quarantine summary and the last run's summary; then the
# MAGIC same questions as SQL views (`dw_*`). Every query is a function of `recsys_spark.queries`.
# MAGIC
# MAGIC Parameters: `conf`, `warehouse`, `week` (default the latest), `user` (default: a user with a playlist).

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
from recsys_spark.show import pick_user

ctx = setup()
spark, tables, week = ctx.spark, ctx.tables, ctx.week
user = param("user", "") or pick_user(tables, week) or ""
print(f"user: {user}")

# COMMAND ----------

section("This week's playlist")
show(Q.playlist(spark, tables, user, week).select("position", "track_id", "title", "creator_id", "sources", "reason"))

# COMMAND ----------

section("Last week's playlist (week_start partition)")
show(Q.last_week_playlist(spark, tables, user, week).select("week_start", "position", "track_id", "title", "run_id"))

# COMMAND ----------

# MAGIC %md The table as last week's run committed it (Delta version recorded in `runs`), immune to later reruns.

# COMMAND ----------

section("Last week's playlist (Delta time travel)")
print(f"discover_weekly version written for last week: {Q.version_for_week(spark, tables, Q.previous_week(week))}")
try:
    show(Q.last_week_playlist_time_travel(spark, tables, user, week)
         .select("week_start", "position", "track_id", "title", "run_id"))
except LookupError as exc:
    print(exc)

# COMMAND ----------

section("Channel mix")
show(Q.channel_mix(spark, tables))

# COMMAND ----------

section("Creator exposure")
show(Q.creator_exposure(spark, tables, week, top=15))

# COMMAND ----------

section("Quarantine summary")
show(Q.quarantine_summary(spark, tables))

# COMMAND ----------

# MAGIC %md "What happened in last Monday's run?"

# COMMAND ----------

section("Last run summary")
print(Q.last_run_summary(spark, tables) or "no weekly run recorded")
show(Q.runs_overview(spark, tables, limit=5))

# COMMAND ----------

section("SQL views")
for name in Q.create_views(spark, tables):
    print(name)
show(spark.sql("SELECT week_start, channel, slots, ROUND(share_of_slots, 3) AS share "
               "FROM dw_channel_mix ORDER BY week_start DESC, slots DESC") if tables.mode == "path"
     else spark.sql(f"SELECT * FROM {tables.qualified('runs').rsplit('.', 1)[0]}.dw_runs_overview"))
