"""Printing one user's week for humans (``make run``, notebooks). Collects one user's rows only."""

from __future__ import annotations

import datetime as dt
from typing import Optional

from pyspark.sql import functions as F

from . import history as hist
from .tables import Tables


def pick_user(tables: Tables, week: dt.date) -> Optional[str]:
    """A user with a full playlist this week and a few seeds (deterministic)."""
    dw = tables.read("discover_weekly").where(F.col("week_start") == F.lit(week))
    row = (dw.select("user_id", F.explode("sources").alias("s")).groupBy("user_id")
           .agg(F.countDistinct("s").alias("n"))
           .join(hist.heard_tracks(tables.read("interactions"), week).groupBy("user_id").agg(F.count("*").alias("h")),
                 "user_id")
           .where(F.col("h").between(20, 200))
           .orderBy(F.col("n").desc(), F.col("h").desc(), "user_id").first())
    return row["user_id"] if row else None


def format_user_week(tables: Tables, week: dt.date, user_id: str, n_seeds: int = 8, last_n: int = 50) -> str:
    tracks = tables.read("tracks")
    meta = tracks.select("track_id", "title", "creator_id", "genre", F.array_join(F.slice("tags", 1, 4), ", ").alias("tags"))
    inter = tables.read("interactions").where(F.col("user_id") == user_id)
    seeds = hist.build_history(inter, week, last_n=last_n).join(meta, "track_id") \
        .orderBy("seed_rank").limit(n_seeds).collect()
    plist = (tables.read("discover_weekly").where((F.col("week_start") == F.lit(week)) & (F.col("user_id") == user_id))
             .join(meta, "track_id").orderBy("position").collect())
    lines = [f"Discover Weekly for {user_id}, week of {week.isoformat()}", "",
             f"Recently played ({n_seeds} of the user's seeds):"]
    for s in seeds:
        flag = "this week" if s["is_this_week"] else "earlier  "
        lines.append(f"  {flag}  {s['title']:<22} {s['genre']:<11} by {s['creator_id']}  [{s['tags']}]")
    lines += ["", f"{'#':>3}  {'title':<22} {'genre':<11} {'creator':<9} {'sources':<26} why"]
    for r in plist:
        lines.append(f"{r['position']:>3}  {r['title']:<22} {r['genre']:<11} {r['creator_id']:<9} "
                     f"{','.join(r['sources']):<26} {r['reason']}")
    return "\n".join(lines)
