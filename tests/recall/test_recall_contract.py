"""The recall channel contract, checked on the shared helpers and on every registered channel.

One hand-made platform serves all five channels (``CHANNELS`` of the registry):

    community A: tracks p q r (genre A), users a1 a2 a3 played p q r, a4 played only p q
    community B: tracks x y z (genre B), users b1 b2 b3 played x y z, b4 played only x y
    h: a genre-A hit (most plays) nobody in the data played; "newbie" only wrote a prompt

    audio (4-d): p = (.8, .6, 0, 0), q = (.8, -.6, 0, 0), r = e1, h = e2,
                 x = e3, y = (0, 0, .8, .6), z = (0, 0, .6, .8)
    prompts: a4 -> (0, 0, .6, .8) (= z), newbie -> e2 (= h)

Known top-1 answers, worked out by hand (binary weights, recency 1):

* popular: a4's taste is all genre A (share 1); unheard A tracks are h (the most played: pop_norm 1,
  score 1 x 1) and r.
  newbie (no seeds) gets the platform's top, h, scored 0.1.
* item_cf (cosine, no shrinkage): cos(p, r) = cos(q, r) = 3 / sqrt(4 * 3) = .866025; a4's seeds p, q
  give r = 2 * .866025 = 1.732051 (x, y, z, h have no co-listener with p or q).
* als: any rank >= 2 factorisation separates the communities: a4 -> r, b4 -> z.
* content: a4's mean of p, q is e1 = r (cosine 1).
* prompt: a4's prompt is z (cosine 1); newbie's is h.

Then for every channel: the exact candidate schema, channel name, at most n per user, ranks
1..k contiguous with non-increasing scores, never a heard track, only users it was asked to serve,
and a save / load round trip (through ``registry.load_model``) that recommends identically.
"""

import dataclasses
import datetime as dt

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.config import RecallConf
from recsys_spark.recall import registry
from recsys_spark.recall.base import (
    CANDIDATE_SCHEMA,
    ChannelInputs,
    RecallChannel,
    RecallChannelModel,
    finalize_candidates,
    user_item_matrix,
)

T0 = dt.datetime(2026, 1, 1)
INTER_SCHEMA = "user_id string, track_id string, event_ts timestamp, event_type string, weight double, event_date date"


def test_finalize_candidates_known(spark):
    scored = spark.createDataFrame(
        [("u", "a", 0.9, "s1"), ("u", "b", float("nan"), "s1"), ("u", "c", 0.5, None), ("u", "d", 0.5, "s2"),
         ("u", "e", None, "s1"), ("u", "h", 5.0, "s1"), ("v", "a", 0.1, "s3")],
        "user_id string, track_id string, score double, seed_track_id string")
    heard = spark.createDataFrame([("u", "h"), ("v", "zz")], "user_id string, track_id string")
    got = finalize_candidates(scored, heard, n=2, channel="test").orderBy("user_id", "rank")
    # h heard, b NaN, e null; c and d tie at .5 -> c first by track_id, and n=2 cuts d
    expected = spark.createDataFrame(
        [("u", "a", "test", 0.9, 1, "s1"), ("u", "c", "test", 0.5, 2, None), ("v", "a", "test", 0.1, 1, "s3")],
        CANDIDATE_SCHEMA)
    assert_df_equality(got, expected, ignore_nullable=True)


def test_finalize_adds_null_seed_and_rejects_bad_n(spark):
    scored = spark.createDataFrame([("u", "a", 1.0)], "user_id string, track_id string, score double")
    got = finalize_candidates(scored, None, n=5, channel="x").collect()
    assert [tuple(r) for r in got] == [("u", "a", "x", 1.0, 1, None)]
    with pytest.raises(ValueError):
        finalize_candidates(scored, None, n=0, channel="x")


def test_user_item_matrix_weightings(spark):
    rows = [("u", "a", T0, "play", 1.0, T0.date()), ("u", "a", T0 + dt.timedelta(hours=1), "upvote", 2.0, T0.date()),
            ("u", "b", T0, "skip", 0.0, T0.date())]
    inter = spark.createDataFrame(rows, INTER_SCHEMA)
    for weighting, value in (("raw", 3.0), ("log", 1.3862944), ("binary", 1.0)):
        got = user_item_matrix(inter, weighting).collect()
        assert len(got) == 1  # b only skipped: dropped
        r = got[0]
        assert (r.user_id, r.track_id, r.weight, r.n_events) == ("u", "a", 3.0, 2)
        assert r.value == pytest.approx(value)
        assert r.last_ts == T0 + dt.timedelta(hours=1)
    with pytest.raises(ValueError):
        user_item_matrix(inter, "sqrt")


# -- the same contract for every registered channel -------------------------------------------

W = dt.date(2026, 3, 2)  # a Monday after every event
MV = "clap-test"
AUDIO = {"p": [0.8, 0.6, 0.0, 0.0], "q": [0.8, -0.6, 0.0, 0.0], "r": [1.0, 0.0, 0.0, 0.0],
         "h": [0.0, 1.0, 0.0, 0.0], "x": [0.0, 0.0, 1.0, 0.0], "y": [0.0, 0.0, 0.8, 0.6], "z": [0.0, 0.0, 0.6, 0.8]}
PLAYS = {"p": 50, "q": 40, "r": 30, "h": 1000, "x": 60, "y": 20, "z": 10}
PROMPTS = {"a4": [0.0, 0.0, 0.6, 0.8], "newbie": [0.0, 1.0, 0.0, 0.0]}
#: per channel: parameters that make the hand computation exact (the rest are the config's)
PARAMS = {"popular": {}, "item_cf": {"shrinkage": 0.0, "min_support": 1, "weighting": "binary"},
          "als": {"rank": 4, "max_iter": 10, "reg_param": 0.01, "alpha": 10.0, "num_blocks": 2},
          "content": {"seed_weighting": "uniform"}, "prompt": {}}
#: per channel: {user: (top-1 track, its score or None when not computed by hand)}
KNOWN = {"popular": {"a4": ("h", 1.0), "newbie": ("h", 0.1)},
         "item_cf": {"a4": ("r", 2 * 3 / (4 * 3) ** 0.5)},
         "als": {"a4": ("r", None), "b4": ("z", None)},
         "content": {"a4": ("r", 1.0)},
         "prompt": {"a4": ("z", 1.0), "newbie": ("h", 1.0)}}
N = 3


def _platform(spark) -> ChannelInputs:
    rows = []
    for com, tracks in (("a", "pqr"), ("b", "xyz")):
        for i in (1, 2, 3, 4):
            for t in tracks[: 3 if i < 4 else 2]:
                rows.append((f"{com}{i}", t))
    t0 = dt.datetime(2026, 2, 1)
    inter = spark.createDataFrame(
        [(u, t, t0 + dt.timedelta(minutes=k), "play", 1.0, t0.date()) for k, (u, t) in enumerate(rows)], INTER_SCHEMA)
    seeds = spark.createDataFrame(
        [(u, t, 1.0, 1.0, k + 1) for u, t, k in
         [(u, t, sum(1 for u2, _ in rows[:j] if u2 == u)) for j, (u, t) in enumerate(rows)]],
        "user_id string, track_id string, weight double, recency double, seed_rank int")
    tracks = spark.createDataFrame(
        [(t, "A" if t in "pqrh" else "B", "c", PLAYS[t], 0, 0, t0) for t in AUDIO],
        "track_id string, genre string, creator_id string, play_count long, upvote_count long, "
        "comment_count long, created_at timestamp")
    emb = spark.createDataFrame([(t, MV, v) for t, v in AUDIO.items()],
                                "track_id string, model_version string, embedding array<float>")
    prompts = spark.createDataFrame([(f"pr_{u}", u, "text", dt.datetime(2026, 2, 20)) for u in PROMPTS],
                                    "prompt_id string, user_id string, prompt_text string, created_at timestamp")
    pemb = spark.createDataFrame([(f"pr_{u}", "user_prompt", MV, v) for u, v in PROMPTS.items()],
                                 "id string, kind string, model_version string, embedding array<float>")
    heard = inter.select("user_id", "track_id").distinct()
    users = heard.select("user_id").union(prompts.select("user_id")).distinct()
    return ChannelInputs(spark, week=W, tracks=tracks, interactions=inter, prompts=prompts, seeds=seeds,
                         heard=heard, users=users, track_embeddings=emb, prompt_embeddings=pemb, model_version=MV)


@pytest.fixture(scope="module")
def platform(spark):
    return _platform(spark)


_FITTED = {}


def _fitted(name, inputs):
    if name not in _FITTED:
        est = registry.build_channel(name, RecallConf(), seed=3, **PARAMS[name])
        assert isinstance(est, RecallChannel) and est.name == name
        assert est.missing_inputs(inputs) is None
        _FITTED[name] = est.fit(inputs)
    return _FITTED[name]


def _check_contract(name, cands, inputs, n):
    assert [(f.name, f.dataType) for f in cands.schema.fields] == \
        [(f.name, f.dataType) for f in CANDIDATE_SCHEMA.fields]
    rows = cands.collect()
    assert rows, "the channel produced no candidates at all"
    assert {r.channel for r in rows} == {name}
    heard_set = {(r.user_id, r.track_id) for r in inputs.heard.collect()}
    assert not [r for r in rows if (r.user_id, r.track_id) in heard_set], "a heard track was recommended"
    served = {r.user_id for r in inputs.users.collect()}
    by_user = {}
    for r in rows:
        assert r.score is not None and r.score == r.score, "null / NaN score"
        by_user.setdefault(r.user_id, []).append(r)
    assert set(by_user) <= served
    for rs in by_user.values():
        rs.sort(key=lambda r: r.rank)
        assert [r.rank for r in rs] == list(range(1, len(rs) + 1)) and len(rs) <= n
        assert len({r.track_id for r in rs}) == len(rs)
        assert all(a.score >= b.score for a, b in zip(rs, rs[1:]))
    return by_user


@pytest.mark.parametrize("name", list(registry.CHANNELS))
def test_channel_contract_and_known_answers(spark, platform, name):
    model = _fitted(name, platform)
    assert isinstance(model, RecallChannelModel) and model.channel == name
    by_user = _check_contract(name, model.recommend(platform, N), platform, N)
    for user, (track, score) in KNOWN[name].items():
        top = by_user[user][0]
        assert top.track_id == track, (user, [r.track_id for r in by_user[user]])
        if score is not None:
            assert top.score == pytest.approx(score, abs=1e-5)


@pytest.mark.parametrize("name", list(registry.CHANNELS))
def test_channel_serves_only_the_asked_users(spark, platform, name):
    only = platform.for_users(spark.createDataFrame([("a4",)], "user_id string"))
    got = _fitted(name, platform).recommend(only, N)
    assert {r.user_id for r in got.select("user_id").distinct().collect()} == {"a4"}


@pytest.mark.parametrize("name", list(registry.CHANNELS))
def test_channel_save_load_round_trip(spark, platform, name, tmp_path):
    model = _fitted(name, platform)
    path = str(tmp_path / name)
    model.save(path)
    back = registry.load_model(spark, path)
    assert type(back) is type(model) and back.params == model.params
    before = model.recommend(platform, N).orderBy("user_id", "rank")
    after = back.recommend(platform, N).orderBy("user_id", "rank")
    assert_approx_df_equality(after, before, 1e-6, ignore_nullable=True)
    other = next(m for m in registry.MODELS.values() if m is not type(model))
    with pytest.raises(ValueError, match="does not hold"):
        other.load(spark, path)


def test_registry_order_conf_sections_and_enabled():
    assert list(registry.CHANNELS) == ["popular", "item_cf", "als", "content", "prompt"]
    assert set(registry.MODELS) == set(registry.CHANNELS)
    conf = RecallConf()
    assert registry.enabled_channels(conf) == list(registry.CHANNELS)
    off = dataclasses.replace(conf, als=dataclasses.replace(conf.als, enabled=False))
    assert registry.enabled_channels(off) == ["popular", "item_cf", "content", "prompt"]
    assert registry.candidates_per_user(conf, "item_cf") == conf.item_cf.candidates
    for name, cls in registry.CHANNELS.items():
        assert cls.conf_class is type(registry.channel_conf(conf, name))
    with pytest.raises(KeyError, match="unknown recall channel"):
        registry.get_channel("nope")
    with pytest.raises(TypeError, match="no parameter"):
        registry.build_channel("item_cf", conf, bogus=1)


def test_missing_inputs_are_named(spark):
    bare = ChannelInputs(spark)
    assert registry.build_channel("item_cf").missing_inputs(bare) == "no interactions, seeds"
    assert registry.build_channel("content").missing_inputs(bare) == "no audio embeddings (track_embeddings), seeds"
    assert registry.build_channel("prompt").missing_inputs(bare) == \
        "no week, user prompts (prompts), text embeddings (prompt_embeddings), audio embeddings (track_embeddings)"
    assert registry.fit_recommend(registry.build_channel("als"), bare, 5) == (None, None, "no interactions")
