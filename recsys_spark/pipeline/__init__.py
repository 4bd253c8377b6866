"""The weekly run: stage objects for week W, run by one runner.

``run_weekly(spark, cfg, week)`` is what ``jobs/weekly.py``, the notebooks, the offline evaluation
and the benchmarks call. It is a list of stages (:func:`~.weekly.weekly_stages`), one module each
under :mod:`recsys_spark.pipeline.stages`; each stage implements the contract of :mod:`.stage`
(what it reads and persists, ``skip_reason``, ``done``, ``run``) on a shared
:class:`~.context.RunContext`, and is recorded in ``runs`` (rows in/out, seconds, counts, what it
skipped and why)::

    load           tables -> seeds (last-n, weekly mixing), heard set, users to serve
    embed          CLAP audio + text embeddings of new tracks / prompts (incremental)
    recall.<ch>    popular, item_cf, als, content, prompt -> recall_candidates[W, ch]
    train.din      DIN on the weeks before W -> <model_dir>/<W>/din
    train.ranker   learned ranker on the channels' candidates as of a label cutoff L < W
                   -> <model_dir>/<W>/ranker (off by default)
    aggregate.creators  creator pooling (mean | attention) of track embeddings -> creator_embeddings[W]
    rank           fusion -> quality filter -> ranker scores -> DIN scores -> final score -> candidates[W]
    write          plug-in re-ranker -> rules (exclusions, cap, MMR with creator embeddings, fresh,
                   exactly 30) -> discover_weekly[W]

**Resume** (:mod:`.runner`): a stage that persists an output (``embed``, ``recall.*``,
``train.din``, ``aggregate.creators``, ``rank``) is skipped on a rerun of the same week when
``runs`` says it succeeded for W with the same configuration fingerprint *and* its output is
still there (the rows that run recorded), unless a stage it builds on ran again; the run resumes
from the first stage that did not finish. ``force=True`` reruns everything; ``if_needed=True``
does nothing when week W already has a successful run. Every write replaces only week W's
partition in one atomic Delta commit, so a crash at any point leaves the tables consistent.

**Recall-only runs** (:func:`~.weekly.run_recall`, job ``recall``): a week's load, embed and
recall stages, nothing else. W's ``train.din`` draws exposure negatives from its label weeks'
``recall_candidates`` (``train.ranker`` may reuse its cutoff's); :func:`~.weekly.warm_up` runs
those of :func:`~.weekly.exposure_weeks` that have none, as the Mondays before W would have: the
evaluation measures in that steady state, and ``recsys weekly --warm-up`` gives a platform's first
weeks the same.

**Skips**: a stage whose inputs the data set lacks is skipped with the same logged reason in every
run: ``embed`` without audio or prompts, ``recall.content`` without audio, ``recall.prompt``
without prompts (both without embeddings), ``aggregate.creators`` when no track has a creator, the
quality filter when no track has statistics, the creator cap when no track has a creator. The
taste-aware popularity channel and the re-ranking back-fill always exist, so every user with
history or prompts gets a playlist.
"""

from .context import RunContext, WeekInputs, completed_stages, load_inputs, model_dir
from .runner import ConcurrentRunError, RunHooks, WeeklyResult, run_pipeline, run_stages, week_is_complete
from .stage import Stage, StageReport
from .weekly import exposure_weeks, recall_stages, run_recall, run_weekly, warm_up, weekly_stages

__all__ = ["ConcurrentRunError", "RunContext", "RunHooks", "Stage", "StageReport", "WeekInputs", "WeeklyResult",
           "completed_stages", "exposure_weeks", "load_inputs", "model_dir", "recall_stages", "run_pipeline",
           "run_recall", "run_stages", "run_weekly", "warm_up", "week_is_complete", "weekly_stages"]
