"""A tiny end-to-end evaluation (popularity + EASE), the method plug-in point and the weekly backtest."""

import datetime as dt
import json
import os

import pytest
from pyspark.sql import functions as F

from recsys_spark.evaluation import methods as M
from recsys_spark.evaluation.evaluate import evaluate
from recsys_spark.evaluation.loaders import EvalDataset
from recsys_spark.evaluation.peers import MethodUnavailable

SCHEMA = "user_id string, track_id string, event_ts timestamp, event_type string, weight double, event_date date"


def _inter(spark, rows):
    return spark.createDataFrame([(u, t, ts, "play", 1.0, ts.date()) for u, t, ts in rows], SCHEMA)


@pytest.fixture(scope="module")
def tiny(spark):
    d = lambda day: dt.datetime(2024, 2, day)  # noqa: E731
    rows = [("u1", "A", d(1)), ("u1", "B", d(2)), ("u2", "A", d(3)), ("u2", "C", d(4)), ("u3", "A", d(5)),
            ("u3", "B", d(6)), ("u4", "B", d(7)), ("u4", "D", d(8)),
            # test period (the 90th percentile is day 10): u1 D, u2 B, u4 E (E never in train)
            ("u1", "D", d(10)), ("u2", "B", d(10)), ("u4", "E", d(10))]
    return EvalDataset("tiny", _inter(spark, rows), source="hand-made")


def test_evaluate_popularity_ease_end_to_end(spark, tiny, tmp_path):
    out = str(tmp_path / "eval")
    res = evaluate(spark, tiny, ["popularity", "ease", "content"], k=2, out_dir=out,
                   params={"ease": {"lambda": 1.0}}, curve_ks=(1, 2))
    assert res["test_users"] == 3 and res["truth_pairs"] == 3
    # popularity (distinct train users): A 3, B 3, C 1, D 1 (ties by id): u1 -> C, D (hit at 2);
    # u2 -> B, D (hit at 1); u4 -> A, C (E unreachable)
    pop = res["methods"]["popularity"]
    assert pop["recall@2"] == pytest.approx(2 / 3)
    assert pop["ndcg@2"] == pytest.approx(0.5436432511904858)   # (1/log2(3) + 1 + 0) / 3
    assert pop["hit@2"] == pytest.approx(2 / 3)
    assert pop["coverage"] == pytest.approx(1.0)                # A, B, C, D of 4 train items
    assert pop["recall_curve"] == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}
    ease = res["methods"]["ease"]
    assert ease["train_items_recommended"] == 0 and pop["train_items_recommended"] == 0
    assert ease["users_with_recs"] == 3
    assert "no audio embeddings" in res["skipped"]["content"]
    with open(os.path.join(out, "metrics.json")) as fh:
        saved = json.load(fh)
    assert saved["methods"]["popularity"]["recall@2"] == pytest.approx(2 / 3)
    assert set(saved["methods"]["popularity"]) >= {"recall@2", "ndcg@2", "hit@2", "coverage", "diversity",
                                                   "novelty", "fit_seconds"}
    report = open(os.path.join(out, "report.md")).read()
    assert "| popularity | 0.6667 |" in report and "content" in report
    assert os.path.exists(os.path.join(out, "recall_curve.png"))


def test_popular_channel_alone_on_a_data_set_without_an_item_table(spark, tiny):
    """The catalogue is the train events' tracks (as the weekly path materialises it) and, with
    no catalog counts, popularity is the plays: A 3, B 3, C 1, D 1 -> the popularity peer's lists."""
    res = evaluate(spark, tiny, ["popular"], k=2, beyond=False)
    assert "popular" not in res["skipped"]
    assert res["methods"]["popular"]["recall@2"] == pytest.approx(2 / 3)
    assert res["methods"]["popular"]["ndcg@2"] == pytest.approx(0.5436432511904858)


def test_ease_recommendations_known_scores(spark, tiny):
    """EASE, lambda=1, on the tiny train (users u1..u4 x items A, B, C, D: u1 AB, u2 AC, u3 AB, u4 BD).

    G = X'X + I = [[4,2,1,0],[2,4,0,1],[1,0,2,0],[0,1,0,2]]; B = -P / diag(P) with P = G^-1 and a
    zero diagonal gives B_AB = 4/7, B_AC = .35, B_AD = -.2, B_BC = -.2, B_BD = .35, B_CA = .5,
    B_CB = -2/7, B_CD = .1, B_DA = -2/7, B_DB = .5, B_DC = .1. Scores of unseen items:
    u1 (A, B): C .35 - .2 = .15, D -.2 + .35 = .15 (tie: by id); u2 (A, C): B 4/7 - 2/7 = 2/7,
    D -.2 + .1 = -.1; u4 (B, D): A 4/7 - 2/7 = 2/7, C -.2 + .1 = -.1.
    """
    from recsys_spark.evaluation.split import temporal_split

    s = temporal_split(tiny.interactions)
    ctx = M.MethodContext(spark=spark, dataset=tiny, split=s, k=2, params={"ease": {"lambda": 1.0}})
    recs = M.get_method("ease")(spark, s.train, s.test_users.select("user_id"), 2, ctx)
    got = sorted((r.user_id, r.rank, r.track_id, round(r.score, 6)) for r in recs.collect())
    assert got == [("u1", 1, "C", 0.15), ("u1", 2, "D", 0.15), ("u2", 1, "B", 0.285714), ("u2", 2, "D", -0.1),
                   ("u4", 1, "A", 0.285714), ("u4", 2, "C", -0.1)]


def test_registered_method_and_staged_pipeline(spark, tiny):
    """The plug-in point: a registered method returning a StagedResult gets a funnel."""
    def fake_pipeline(spark_, train, users, k, ctx):
        cands = spark_.createDataFrame([("u1", "D"), ("u1", "C"), ("u2", "B"), ("u4", "A")],
                                       "user_id string, track_id string")
        final = spark_.createDataFrame([("u1", "D", 1.0, 1), ("u2", "C", 1.0, 1)],
                                       "user_id string, track_id string, score double, rank int")
        return M.StagedResult(final=final, channels=[("ch", cands)], stages=[("filtered", cands.limit(0))])

    M.register_method("fake_pipeline", fake_pipeline)
    try:
        res = evaluate(spark, tiny, ["fake_pipeline"], k=2, beyond=False)
    finally:
        M.REGISTRY.pop("fake_pipeline")
    assert res["methods"]["fake_pipeline"]["recall@2"] == pytest.approx(1 / 3)   # only u1 D
    funnel = [(r["stage"], round(r["truth_recall"], 4)) for r in res["funnel"]["fake_pipeline"]]
    # ch: u1 D + u2 B = 2 of 3 users fully; union same; filtered empty; final u1 only
    assert funnel == [("ch", 0.6667), ("union of channels", 0.6667), ("filtered", 0.0), ("final playlist", 0.3333)]


def test_unavailable_module_is_skipped_with_reason(spark, tiny):
    def needs_missing_module(spark_, train, users, k, ctx):
        raise MethodUnavailable("recsys_spark.recall.no_such_channel is not available yet")

    M.register_method("missing_channel", needs_missing_module)
    try:
        res = evaluate(spark, tiny, ["missing_channel", "popularity"], k=2, beyond=False)
    finally:
        M.REGISTRY.pop("missing_channel")
    assert "recsys_spark.recall.no_such_channel is not available yet" in res["skipped"]["missing_channel"]
    assert list(res["methods"]) == ["popularity"] and res["failed"] == {}


def test_backtest_scores_playlists_into_evaluation_runs(spark, tables):
    from recsys_spark.evaluation.backtest import EVALUATION_RUNS, backtest

    mon = dt.datetime(2024, 3, 4)  # a Monday
    rows = [("u1", "A", mon - dt.timedelta(days=3)), ("u2", "B", mon - dt.timedelta(days=2)),
            ("u1", "B", mon + dt.timedelta(days=1)),   # new for u1 in week W
            ("u2", "A", mon + dt.timedelta(days=6)),   # new for u2 in week W
            ("u2", "B", mon + dt.timedelta(days=6))]   # heard before: not truth
    tables.append("interactions", _inter(spark, rows).withColumn("ingested_at", F.lit(None).cast("timestamp")))
    dw = spark.createDataFrame(
        [(mon.date(), "u1", 1, "B", 1.0), (mon.date(), "u2", 1, "C", 1.0)],
        "week_start date, user_id string, position int, track_id string, score double")
    dw = dw.select("*", F.array(F.lit("item_cf")).alias("sources"), F.lit(None).cast("string").alias("reason"),
                   F.lit("test").alias("model_version"), F.lit(None).cast("string").alias("run_id"),
                   F.current_timestamp().alias("generated_at"))
    tables.replace_partition("discover_weekly", dw, "week_start", mon.date())
    out = backtest(spark, tables, [mon.date()], methods=["popularity"], k=1, beyond=False, run_id="bt-1")
    by = {r["method"]: r for r in out}
    assert by["discover_weekly"]["status"] == "succeeded"
    assert by["discover_weekly"]["test_users"] == 2
    assert by["discover_weekly"]["metrics"]["recall@1"] == pytest.approx(0.5)   # u1 hit, u2 miss
    # popularity as of W: A and B one user each -> u1 gets B (hit), u2 gets A (hit)
    assert by["popularity"]["metrics"]["recall@1"] == pytest.approx(1.0)
    saved = tables.read(EVALUATION_RUNS.name).where("run_id = 'bt-1'")
    assert sorted((r.method, r.status, r.week_start) for r in saved.collect()) == [
        ("discover_weekly", "succeeded", mon.date()), ("popularity", "succeeded", mon.date())]


def test_cli_csv_format(spark, tmp_path):
    """jobs/evaluate.py on a tiny CSV (the CLI plumbing: format options, methods, --params, output)."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location("evaluate_job", os.path.join(root, "jobs", "evaluate.py"))
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    p = tmp_path / "log.csv"
    # same log as the `tiny` fixture, ISO times, ';'-separated
    rows = [("u1", "A", 1), ("u1", "B", 2), ("u2", "A", 3), ("u2", "C", 4), ("u3", "A", 5), ("u3", "B", 6),
            ("u4", "B", 7), ("u4", "D", 8), ("u1", "D", 10), ("u2", "B", 10), ("u4", "E", 10)]
    p.write_text("who;what;when\n" + "".join(f"{u};{t};2024-02-{day:02d}T00:00:00\n" for u, t, day in rows))
    out = str(tmp_path / "out")
    rc = job.main(["--format", "csv", "--path", str(p), "--sep", ";", "--user-col", "who", "--item-col", "what",
                   "--time-col", "when", "--k", "2", "--methods", "popularity,prompt", "--out", out, "--no-beyond",
                   "--params", '{"popularity": {}}'])
    assert rc == 0
    with open(os.path.join(out, "metrics.json")) as fh:
        saved = json.load(fh)
    assert saved["dataset"] == "log" and saved["test_users"] == 3 and saved["k"] == 2
    assert saved["methods"]["popularity"]["recall@2"] == pytest.approx(2 / 3)
    assert "prompt" in saved["skipped"]


def test_single_node_peer_output_drops_padding_and_liked_items(spark):
    """implicit pads short lists with liked items scored 0 (and ids -1): never passed on."""
    import numpy as np
    import scipy.sparse as sp

    from recsys_spark.evaluation.peers import _to_frame

    liked = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 0, 1, 0]], dtype=np.float32))
    ids = np.array([[1, 3, -1], [0, 2, 3]])
    scores = np.array([[0.9, 0.0, 0.0], [0.5, 0.0, -np.inf]])
    df = _to_frame(spark, np.array(["u", "v"], dtype=object), ids, scores, np.array(["A", "B", "C", "D"]), liked=liked)
    assert sorted((r.user_id, r.track_id, r.rank) for r in df.collect()) == [("u", "B", 1), ("v", "A", 1)]


def test_the_config_history_settings_reach_the_channels_seeds(spark, tiny):
    """The evaluation's seed-based channels build their seeds with the config's history settings
    (not the defaults), and their ChannelInputs carry them to channels that rebuild seeds as of
    earlier weeks. Train ends on Thu 2024-02-08 (u4 D, 00:00); W = Mon 2024-02-12: 4 days old."""
    from recsys_spark.config import load_config

    seen = {}

    def probe(spark_, train, users, k, ctx):
        seen["history"] = M.channel_inputs(ctx, users).history
        seen["recency"] = ctx.seeds.where("user_id = 'u4' AND track_id = 'D'").first()["recency"]
        return spark_.createDataFrame([], "user_id string, track_id string, score double, rank int")

    cfg = load_config(overrides=["history.recency_half_life_days=2.0", "history.this_week_share=0.25"])
    M.register_method("probe", probe)
    try:
        evaluate(spark, tiny, ["probe"], k=2, beyond=False, cfg=cfg)
    finally:
        M.REGISTRY.pop("probe")
    assert seen["history"] == {"this_week_share": 0.25, "half_life_days": 2.0}
    assert seen["recency"] == pytest.approx(0.25)   # two half-lives
