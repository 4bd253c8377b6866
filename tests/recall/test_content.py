"""Content channel and faiss helpers on hand-made 4-d embeddings with known neighbours."""

import numpy as np
import pytest
from chispa import assert_approx_df_equality

from recsys_spark.config import ContentConf
from recsys_spark.recall.base import CANDIDATE_SCHEMA, ChannelInputs, ChannelUnavailable
from recsys_spark.recall.content import ContentRecall, ContentRecallModel
from recsys_spark.recall.registry import fit_recommend
from recsys_spark.recall.faiss_index import TrackIndex

MV = "clap-test"
EMB_SCHEMA = "track_id string, model_version string, embedding array<float>"
SEED_SCHEMA = "user_id string, track_id string, weight double, recency double, seed_rank int"
HEARD_SCHEMA = "user_id string, track_id string"

# t2 is 0.8 t1 + 0.6 t3; t5 is 0.6 t4 + 0.8 z; t6 = -t1
VECS = {
    "t1": [1.0, 0.0, 0.0, 0.0],
    "t2": [0.8, 0.6, 0.0, 0.0],
    "t3": [0.0, 1.0, 0.0, 0.0],
    "t4": [0.0, 0.0, 1.0, 0.0],
    "t5": [0.0, 0.0, 0.6, 0.8],
    "t6": [-1.0, 0.0, 0.0, 0.0],
}


def _emb(spark, extra_version=False):
    rows = [(t, MV, v) for t, v in VECS.items()]
    if extra_version:
        rows += [(t, "other", [0.0, 0.0, 0.0, 1.0]) for t in VECS]
    return spark.createDataFrame(rows, EMB_SCHEMA)


def fit(est, emb, tracks=None, model_version=MV):
    return est.fit(ChannelInputs(emb.sparkSession, track_embeddings=emb, tracks=tracks, model_version=model_version))


def recommend(model, seeds, heard, n):
    return model.recommend(ChannelInputs(seeds.sparkSession, seeds=seeds, heard=heard), n)


def test_known_neighbours_heard_excluded_and_seed_attribution(spark):
    seeds = spark.createDataFrame([
        ("u1", "t1", 1.0, 1.0, 1),
        ("u2", "t4", 1.0, 1.0, 1), ("u2", "t3", 1.0, 1.0, 2),
    ], SEED_SCHEMA)
    heard = spark.createDataFrame([("u1", "t1"), ("u2", "t4"), ("u2", "t3"), ("u2", "t2")], HEARD_SCHEMA)
    model = fit(ContentRecall(seed_weighting="uniform"), _emb(spark, extra_version=True))
    got = recommend(model, seeds, heard, n=2).orderBy("user_id", "rank")
    # u1: query t1 -> t2 (.8), then t3/t4/t5 tie at 0 -> t3 by id. u2: query (t3+t4)/sqrt2 ->
    # t5 = .6/sqrt2 (closest seed t4), then t1/t6 tie at 0 -> t1 (seed tie -> smallest id t3)
    expected = spark.createDataFrame([
        ("u1", "t2", "content", 0.8, 1, "t1"),
        ("u1", "t3", "content", 0.0, 2, "t1"),
        ("u2", "t5", "content", float(0.6 / np.sqrt(2)), 1, "t4"),
        ("u2", "t1", "content", 0.0, 2, "t3"),
    ], CANDIDATE_SCHEMA)
    # float32 index: compare scores to 1e-6
    assert_approx_df_equality(got, expected, 1e-6, ignore_nullable=True)


def test_recency_log_weighting(spark):
    # weights log1p(e-1)=1 for t1 and log1p(e^3-1)=3 for t3 -> query (1, 3)/sqrt(10)
    seeds = spark.createDataFrame([("u", "t1", float(np.e - 1), 1.0, 1), ("u", "t3", float(np.e ** 3 - 1), 1.0, 2),
                                   ("u", "t6", 0.0, 1.0, 3)],  # a skip (weight 0) drops out
                                  SEED_SCHEMA)
    heard = spark.createDataFrame([("u", "t1"), ("u", "t3"), ("u", "t6")], HEARD_SCHEMA)
    model = fit(ContentRecall(), _emb(spark))
    top = recommend(model, seeds, heard, n=1).collect()
    assert len(top) == 1 and top[0].track_id == "t2" and top[0].seed_track_id == "t1"  # t2.t1=.8 > t2.t3=.6
    assert top[0].score == pytest.approx((0.8 * 1 + 0.6 * 3) / np.sqrt(10), abs=1e-6)


def test_over_fetch_returns_the_only_unheard_track_and_n_seeds(spark):
    seeds = spark.createDataFrame([("u", "t1", 1.0, 1.0, 1), ("u", "t4", 1.0, 1.0, 2)], SEED_SCHEMA)
    heard = spark.createDataFrame([("u", t) for t in ("t1", "t2", "t3", "t4", "t5")], HEARD_SCHEMA)
    model = fit(ContentRecall(n_seeds=1, seed_weighting="uniform"), _emb(spark))
    got = [tuple(r) for r in recommend(model, seeds, heard, n=3).collect()]
    # only t6 is unheard; n_seeds=1 keeps seed t1 only, so t6 scores -1
    assert got == [("u", "t6", "content", -1.0, 1, "t1")]


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_index_kinds_agree_on_small_catalog_and_roundtrip(spark, tmp_path, kind):
    rng = np.random.default_rng(3)
    ids = [f"x{i:03d}" for i in range(200)]
    vecs = rng.normal(size=(200, 16)).astype(np.float32)
    # nprobe = nlist -> IVF is exhaustive; HNSW with a large ef on 200 points finds the exact top-5
    idx = TrackIndex.from_vectors(ids, vecs, kind=kind, nlist=4, nprobe=4, hnsw_m=16, ef_search=200)
    q = rng.normal(size=(5, 16)).astype(np.float32)
    _, pos = idx.search(q, 5)
    vn = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    exact = np.argsort(-(q @ vn.T), axis=1)[:, :5]
    assert (pos == exact).all()
    path = str(tmp_path / f"idx_{kind}")
    idx.save(spark, path)
    back = TrackIndex.load(spark, path)
    assert list(back.ids) == ids and back.kind == kind
    _, pos2 = back.search(q, 5)
    assert (pos2 == pos).all()


def test_model_save_load_and_catalog_restriction(spark, tmp_path):
    tracks = spark.createDataFrame([(t,) for t in ("t1", "t3", "t4")], "track_id string")
    model = fit(ContentRecall(seed_weighting="uniform"), _emb(spark), tracks)
    assert sorted(model.track_index.ids) == ["t1", "t3", "t4"]
    model.save(str(tmp_path / "content"))
    back = ContentRecallModel.load(spark, str(tmp_path / "content"))
    seeds = spark.createDataFrame([("u", "t4", 1.0, 1.0, 1)], SEED_SCHEMA)
    got = [(r.track_id, r.rank) for r in recommend(back, seeds, None, n=5).collect()]
    assert got[0] == ("t4", 1) and sorted(t for t, _ in got) == ["t1", "t3", "t4"]


def test_several_versions_without_version_raise_and_empty_is_skipped(spark):
    with pytest.raises(ValueError, match="several model versions"):
        fit(ContentRecall(), _emb(spark, extra_version=True), model_version=None)
    seeds = spark.createDataFrame([("u", "t1", 1.0, 1.0, 1)], SEED_SCHEMA)
    with pytest.raises(ChannelUnavailable, match="no track vectors"):
        fit(ContentRecall(), _emb(spark), model_version="missing")
    inputs = ChannelInputs(spark, seeds=seeds, track_embeddings=_emb(spark), model_version="missing")
    assert fit_recommend(ContentRecall(), inputs, 5) == (None, None, "no track vectors to index")
    assert ContentRecall().missing_inputs(ChannelInputs(spark, seeds=seeds)) == "no audio embeddings (track_embeddings)"


def test_content_defaults_come_from_the_config():
    conf, est = ContentConf(), ContentRecall()
    for name in ("n_seeds", "index", "ivf_nlist", "ivf_nprobe", "hnsw_m", "hnsw_ef_search", "seed_weighting",
                 "batch_size", "seed"):
        assert getattr(est, name) == getattr(conf, name), name
