"""Re-ranker plug-in point: loading checks, the tag-affinity re-ranker, the Spark application."""

import math

import pandas as pd
import pytest

from recsys_spark.rerank.plugins import (PluginError, PluginUnavailableError, TagAffinityReranker,
                                         apply_reranker, load_reranker)

TRACKS = ("track_id string, creator_id string, title string, prompt string, tags array<string>, "
          "genre string, audio_uri string")
E1 = math.e - 1  # log1p(E1) == 1: each seed weighs exactly 1


@pytest.mark.parametrize("path, match", [
    ("os.system", "allowed module prefix"),
    ("recsys_spark", "dotted class path"),
    ("recsys_spark.rerank.plugins.Nope", "not a Reranker subclass"),
    ("recsys_spark.tables.Tables", "not a Reranker subclass"),
    ("recsys_spark.rerank.plugins.Reranker", "not a Reranker subclass"),
    ("recsys_spark.nope.Thing", "cannot import"),
    ("recsys_spark.rerank.plugins.TagAffinityReranker; rm -rf /", "dotted class path"),
])
def test_load_reranker_rejects(path, match):
    with pytest.raises(PluginError, match=match):
        load_reranker(path)


def test_load_reranker_accepts_allowed_subclass_with_options():
    rr = load_reranker("recsys_spark.rerank.plugins.TagAffinityReranker", {"alpha": 0.2})
    assert isinstance(rr, TagAffinityReranker) and rr.alpha == 0.2
    with pytest.raises(PluginError):  # other prefix only when listed
        load_reranker("tests_plugins_mod.X", allowed_prefixes=("recsys_spark.",))


def test_music_flamingo_fails_clearly_without_weights():
    rr = load_reranker("recsys_spark.rerank.plugins.MusicFlamingoReranker", {"checkpoint_path": "/nonexistent"})
    with pytest.raises(PluginUnavailableError, match="checkpoint"):
        rr.setup()


def test_tag_affinity_score_hand_computed():
    rr = TagAffinityReranker(alpha=0.5, genre_weight=0.3)
    pdf = pd.DataFrame({
        "score_norm": [1.0, 2 / 3, 0.0],
        "tags": [["jazz"], ["rock", "loud"], ["rock"]],
        "genre": ["jazz", "rock", "pop"],
        "user_tags": [{"rock": 2 / 3, "indie": 1 / 3}] * 3,
        "user_genres": [[("rock", 1.0)]] * 3,   # arrow maps arrive as (key, value) pairs
    })
    # |user tags| = sqrt(5)/3; rock+loud: cos = (2/3)/(sqrt2 * |u|) = .632456 -> aff .742719
    # rock alone: cos .894427, genre pop -> aff .626099
    assert rr.score(pdf).tolist() == pytest.approx([0.5, 0.704693, 0.313050], abs=1e-6)


def test_apply_reranker_reorders_only_the_top_n(spark):
    tracks = spark.createDataFrame([
        ("c1", "k1", "C1", None, ["rock", "loud"], "rock", None),
        ("c2", "k2", "C2", None, ["jazz"], "jazz", None),
        ("c3", "k3", "C3", None, ["rock"], "pop", None),
        ("c4", "k4", "C4", None, [], None, None),
        ("c5", "k5", "C5", None, ["rock"], "rock", None),
        ("s1", "k6", "S1", None, ["rock", "indie"], "rock", None),
        ("s2", "k7", "S2", None, ["rock"], "rock", None),
    ], TRACKS)
    seeds = spark.createDataFrame([("u1", "s1", E1, 1.0), ("u1", "s2", E1, 1.0)],
                                  "user_id string, track_id string, weight double, recency double")
    cands = spark.createDataFrame([
        ("u1", "c2", 0.9), ("u1", "c1", 0.8), ("u1", "c4", 0.7), ("u1", "c3", 0.6), ("u1", "c5", 0.1),
        ("u2", "c1", 0.5), ("u2", "c2", 0.4),   # u2 has no seeds: affinity 0, order kept
    ], "user_id string, track_id string, final_score double")
    out = apply_reranker(cands, "recsys_spark.rerank.plugins.TagAffinityReranker", tracks, seeds,
                         top_n=4, options={"alpha": 0.5, "genre_weight": 0.3})
    expected = spark.createDataFrame([
        # plug-in order c1 (.7047) > c2 (.5) > c3 (.3131) > c4 (.1667) takes the slot scores .9 .8 .7 .6
        ("u1", "c1", 0.9, 0.704693), ("u1", "c2", 0.8, 0.5), ("u1", "c3", 0.7, 0.313050),
        ("u1", "c4", 0.6, 1 / 6), ("u1", "c5", 0.1, None),
        ("u2", "c1", 0.5, 0.5), ("u2", "c2", 0.4, 0.0),
    ], "user_id string, track_id string, final_score double, plugin_score double")
    assert out.columns == ["user_id", "track_id", "final_score", "plugin_score"]
    got = {(r.user_id, r.track_id): (r.final_score, r.plugin_score) for r in out.collect()}
    exp = {(r.user_id, r.track_id): (r.final_score, r.plugin_score) for r in expected.collect()}
    assert got.keys() == exp.keys()
    for k in exp:
        assert got[k][0] == pytest.approx(exp[k][0])
        assert (got[k][1] is None and exp[k][1] is None) or got[k][1] == pytest.approx(exp[k][1], abs=1e-6)
