"""``load``: the week's inputs (seeds with last-n and weekly mixing, heard set, users to serve)."""

from __future__ import annotations

from pyspark.sql import functions as F

from ...validation import check_week_against_data
from ..context import RunContext
from ..stage import Stage, StageReport


class LoadStage(Stage):
    name = "load"
    reads = ("tracks", "interactions", "user_prompts")
    persists = ()  # seeds, heard set and users are cached for the run, not written

    def run(self, ctx: RunContext) -> StageReport:
        inp = ctx.inputs
        n_events, last_event = inp.interactions.agg(F.count(F.lit(1)), F.max("event_ts")).first()
        rep = StageReport(rows_in=int(n_events))
        if last_event is not None:  # a platform of prompts only has no events to compare with
            check_week_against_data(ctx.week, last_event, ctx.cfg.pipeline.max_days_after_data)
        rep.counts.update(tracks=inp.tracks.count(), seeds=inp.seeds.count(), users=inp.users.count(),
                          prompts=inp.prompts.count())
        rep.rows_out = int(rep.counts["seeds"])
        if rep.counts["users"] == 0:
            raise RuntimeError(f"no users with history or prompts before {ctx.week}: nothing to recommend "
                               f"(did ingestion run? tables under {ctx.tables.warehouse})")
        return rep
