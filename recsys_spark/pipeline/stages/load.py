"""``load``: the week's inputs (seeds with last-n and weekly mixing, heard set, users to serve)."""

from __future__ import annotations

from ..context import RunContext
from ..stage import Stage, StageReport


class LoadStage(Stage):
    name = "load"
    reads = ("tracks", "interactions", "user_prompts")
    persists = ()  # seeds, heard set and users are cached for the run, not written

    def run(self, ctx: RunContext) -> StageReport:
        inp = ctx.inputs
        rep = StageReport(rows_in=inp.interactions.count())
        rep.counts.update(tracks=inp.tracks.count(), seeds=inp.seeds.count(), users=inp.users.count(),
                          prompts=inp.prompts.count())
        rep.rows_out = int(rep.counts["seeds"])
        if rep.counts["users"] == 0:
            raise RuntimeError(f"no users with history or prompts before {ctx.week}: nothing to recommend "
                               f"(did ingestion run? tables under {ctx.tables.warehouse})")
        return rep
