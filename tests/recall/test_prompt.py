"""Prompt channel on hand-made text/track embeddings with known answers."""

import datetime as dt

import numpy as np
import pytest

from recsys_spark.config import PromptConf
from recsys_spark.recall.base import ChannelInputs
from recsys_spark.recall.prompt import PromptRecall

MV = "clap-test"
W = dt.date(2026, 3, 2)  # a Monday
T_W = dt.datetime(2026, 3, 2)
EMB_SCHEMA = "track_id string, model_version string, embedding array<float>"
PEMB_SCHEMA = "id string, kind string, user_id string, model_version string, embedding array<float>"
PROMPT_SCHEMA = "prompt_id string, user_id string, prompt_text string, created_at timestamp"
SEED_SCHEMA = "user_id string, track_id string, weight double, recency double, seed_rank int"

VECS = {
    "t1": [1.0, 0.0, 0.0, 0.0],
    "t2": [0.8, 0.6, 0.0, 0.0],
    "t3": [0.0, 1.0, 0.0, 0.0],
    "t4": [0.0, 0.0, 1.0, 0.0],
    "t5": [0.0, 0.0, 0.6, 0.8],
    "t6": [-1.0, 0.0, 0.0, 0.0],
}


def _tracks(spark):
    return spark.createDataFrame([(t, MV, v) for t, v in VECS.items()], EMB_SCHEMA)


def inputs_of(spark, prompts, pemb, emb=None, heard=None, seeds=None):
    return ChannelInputs(spark, week=W, prompts=prompts, prompt_embeddings=pemb, track_embeddings=emb,
                         heard=heard, seeds=seeds, model_version=MV)


def test_recency_weighted_prompts_rank_known_order(spark):
    prompts = spark.createDataFrame([
        ("p_new", "u", "bright", T_W - dt.timedelta(days=0, hours=0, seconds=1)),  # weight ~1, toward t1
        ("p_old", "u", "dark", T_W - dt.timedelta(days=60)),                        # weight 0.25, toward t4
        ("p_older", "u", "noise", T_W - dt.timedelta(days=90)),                     # cut by max_prompts=2
        ("p_future", "u", "anti", T_W + dt.timedelta(days=1)),                      # after W: ignored
    ], PROMPT_SCHEMA)
    pemb = spark.createDataFrame([
        ("p_new", "user_prompt", "u", MV, [1.0, 0.0, 0.0, 0.0]),
        ("p_old", "user_prompt", "u", MV, [0.0, 0.0, 1.0, 0.0]),
        ("p_older", "user_prompt", "u", MV, [0.0, 0.0, 0.0, 1.0]),
        ("p_future", "user_prompt", "u", MV, [-1.0, 0.0, 0.0, 0.0]),
        ("p_new", "user_prompt", "u", "other-version", [-1.0, 0.0, 0.0, 0.0]),
    ], PEMB_SCHEMA)
    inputs = inputs_of(spark, prompts, pemb, _tracks(spark))
    model = PromptRecall(max_prompts=2, half_life_days=30.0).fit(inputs)
    got = model.recommend(inputs, n=6).orderBy("rank").collect()
    # query = (1*e1 + 0.25*e3)/|.| = (0.9701, 0, 0.2425, 0)
    assert [r.track_id for r in got] == ["t1", "t2", "t4", "t5", "t3", "t6"]
    q = np.array([1.0, 0.0, 0.25, 0.0]) / np.sqrt(1.0625)
    expected = {t: float(np.dot(q, v)) for t, v in VECS.items()}
    for r in got:
        assert r.score == pytest.approx(expected[r.track_id], abs=1e-5)
        assert r.channel == "prompt" and r.seed_track_id is None


def test_new_user_with_prompts_gets_30_candidates_and_heard_excluded(spark):
    rng = np.random.default_rng(0)
    emb = spark.createDataFrame([(f"x{i:02d}", MV, rng.normal(size=8).tolist()) for i in range(40)], EMB_SCHEMA)
    prompts = spark.createDataFrame([("p1", "new", "lofi beats", T_W - dt.timedelta(days=2))], PROMPT_SCHEMA)
    pemb = spark.createDataFrame([("p1", "user_prompt", "new", MV, rng.normal(size=8).tolist())], PEMB_SCHEMA)
    heard = spark.createDataFrame([("new", "x00"), ("new", "x01")], "user_id string, track_id string")
    inputs = inputs_of(spark, prompts, pemb, emb, heard)
    out = PromptRecall().fit(inputs).recommend(inputs, n=30)
    rows = out.collect()
    assert len(rows) == 30
    assert sorted(r.rank for r in rows) == list(range(1, 31))
    assert not {"x00", "x01"} & {r.track_id for r in rows}
    assert all(np.isfinite(r.score) for r in rows)


def test_combine_with_history_mixes_vectors(spark):
    prompts = spark.createDataFrame([("p", "u", "x", T_W - dt.timedelta(days=1)),
                                     ("q", "v", "x", T_W - dt.timedelta(days=1))], PROMPT_SCHEMA)
    pemb = spark.createDataFrame([("p", "user_prompt", "u", MV, [1.0, 0.0, 0.0, 0.0]),
                                  ("q", "user_prompt", "v", MV, [0.0, 0.0, 1.0, 0.0])], PEMB_SCHEMA)
    seeds = spark.createDataFrame([("u", "t3", 1.0, 1.0, 1)], SEED_SCHEMA)  # v has no history
    heard = spark.createDataFrame([("u", "t3")], "user_id string, track_id string")
    inputs = inputs_of(spark, prompts, pemb, _tracks(spark), heard, seeds)
    model = PromptRecall(combine_with_history=True, history_weight=0.5, seed_weighting="uniform").fit(inputs)
    got = {(r.user_id, r.rank): (r.track_id, r.score) for r in model.recommend(inputs, n=1).collect()}
    # u: (e1 + e2)/sqrt2 -> t2 scores (0.8 + 0.6)/sqrt2; v: prompt only -> t4 scores 1
    assert got[("u", 1)][0] == "t2" and got[("u", 1)][1] == pytest.approx(1.4 / np.sqrt(2), abs=1e-6)
    assert got[("v", 1)][0] == "t4" and got[("v", 1)][1] == pytest.approx(1.0, abs=1e-6)
    # without combining, u's prompt alone points at t1
    plain = PromptRecall().fit(inputs)
    top = plain.recommend(inputs, n=1).where("user_id = 'u'")
    assert [r.track_id for r in top.collect()] == ["t1"]


def test_track_prompt_target_indexes_track_text(spark):
    pemb = spark.createDataFrame([
        ("t1", "track_prompt", None, MV, [0.0, 1.0]),
        ("t2", "track_prompt", None, MV, [1.0, 0.0]),
        ("p", "user_prompt", "u", MV, [1.0, 0.1]),
    ], PEMB_SCHEMA)
    prompts = spark.createDataFrame([("p", "u", "x", T_W - dt.timedelta(days=1))], PROMPT_SCHEMA)
    inputs = inputs_of(spark, prompts, pemb)  # no track audio embeddings: not needed for this target
    est = PromptRecall(target="track_prompt")
    assert est.missing_inputs(inputs) is None
    assert PromptRecall().missing_inputs(inputs) == "no audio embeddings (track_embeddings)"
    model = est.fit(inputs)
    assert sorted(model.track_index.ids) == ["t1", "t2"]
    got = [r.track_id for r in model.recommend(inputs, n=2).orderBy("rank").collect()]
    assert got == ["t2", "t1"]


def test_prompt_defaults_come_from_the_config():
    conf, params = PromptConf(), PromptRecall().params()
    for name in ("max_prompts", "half_life_days", "combine_with_history", "history_weight", "target"):
        assert params[name] == getattr(conf, name), name
