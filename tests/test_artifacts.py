"""Model artifacts by URI (recsys_spark.artifacts): round trips through plain paths, file: URIs,
fsspec and the JVM's Hadoop FileSystem; unsupported schemes; DIN, creator pooling and the content
recall model saved to a ``file:///`` URI and used on executors after the driver's copy is gone."""

import datetime as dt
import pickle
import shutil

import numpy as np
import pytest
import torch

from recsys_spark import artifacts as AR


# ------------------------------------------------------------------------------------------------
# naming
# ------------------------------------------------------------------------------------------------


def test_scheme_local_path_and_join():
    assert AR.scheme("s3a://bucket/models") == "s3a"
    assert AR.scheme("/Volumes/main/recsys/models") == ""
    assert AR.scheme("artifacts/models") == ""
    assert AR.scheme("C:\\models") == ""
    assert AR.scheme("DBFS:/mnt/m") == "dbfs"
    assert AR.local_path("file:///tmp/a%20b/m") == "/tmp/a b/m"
    assert AR.local_path("file:/tmp/m") == "/tmp/m"
    assert AR.local_path("/tmp/m") == "/tmp/m"
    with pytest.raises(AR.UnsupportedURIError, match="otherhost"):
        AR.local_path("file://otherhost/tmp/m")
    assert AR.join("s3a://bucket/models/", "week=2026-11-23", "din") == "s3a://bucket/models/week=2026-11-23/din"
    assert AR.join("dbfs:/mnt/m", "din") == "dbfs:/mnt/m/din"
    assert AR.join("/Volumes/c/s/v", "din") == "/Volumes/c/s/v/din"
    assert AR.is_local("file:///x") and AR.is_local("rel/x") and not AR.is_local("abfss://c@a.dfs.core.windows.net/x")


# ------------------------------------------------------------------------------------------------
# round trips without Spark
# ------------------------------------------------------------------------------------------------


def test_plain_path_and_file_uri_name_the_same_file(tmp_path):
    blob = bytes(range(256)) * 10
    uri = f"file://{tmp_path}/a/b/state.pt"          # parent folders do not exist yet
    AR.write_bytes(uri, blob)
    assert (tmp_path / "a" / "b" / "state.pt").read_bytes() == blob
    assert AR.read_bytes(str(tmp_path / "a" / "b" / "state.pt")) == blob
    assert AR.read_bytes(f"file:{tmp_path}/a/b/state.pt") == blob
    AR.write_bytes(str(tmp_path / "a" / "b" / "state.pt"), b"new")   # overwrite through the plain path
    assert AR.read_bytes(uri) == b"new"
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["state.pt"]   # no temporary left
    AR.write_json(f"file://{tmp_path}/a/meta.json", {"b": 2, "a": [1.5, "x"]})
    assert AR.read_json(str(tmp_path / "a" / "meta.json")) == {"a": [1.5, "x"], "b": 2}
    assert AR.exists(uri) and AR.exists(f"file://{tmp_path}/a")
    AR.delete(f"file://{tmp_path}/a")
    assert not AR.exists(uri) and not (tmp_path / "a").exists()
    with pytest.raises(FileNotFoundError, match="state.pt"):
        AR.read_bytes(uri)


def test_fsspec_round_trip_without_spark():
    root = "memory://recsys-artifacts-test/models"
    AR.write_files(root, {"x.bin": b"\x00\x01\x02", "c.json": b'{"k": 1}'})
    assert AR.describe(root) == "fsspec"
    assert AR.read_files(root, ["x.bin", "c.json"], optional=["absent.json"]) == {"x.bin": b"\x00\x01\x02",
                                                                                  "c.json": b'{"k": 1}'}
    assert AR.exists(root + "/x.bin") and not AR.exists(root + "/absent.json")
    AR.delete(root)
    assert not AR.exists(root + "/x.bin")


def test_din_save_load_on_a_uri_root_without_spark():
    from recsys_spark.ranking import din as D
    from recsys_spark.safety import UnsafeValueError

    torch.manual_seed(0)
    cfg = D.DINConfig(n_items=3, n_id_items=3, embedding_dim=4, attention_hidden=[4], mlp_hidden=[4], max_history=2)
    model = D.DIN(cfg).eval()
    root = "memory://recsys-din-test/models"
    path = root + "/week=2024-01-08/din"
    D.save(path, model, ["t1", "t2", "t3"], metrics={"auc": 0.5}, root=root)
    back, vocab = D.load(path, root=root)
    assert vocab == {"t1": 2, "t2": 3, "t3": 4}
    for a, b in zip(model.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(UnsafeValueError, match="outside"):
        D.save("memory://recsys-din-test/elsewhere/din", model, ["t1", "t2", "t3"], root=root)
    AR.delete(root)


def test_unsupported_scheme_without_spark_names_the_scheme(tmp_path):
    with pytest.raises(AR.UnsupportedURIError, match="scheme 'nosuchfs'"):
        AR.write_bytes("nosuchfs://bucket/m/x.bin", b"1")
    with pytest.raises(AR.UnsupportedURIError, match="nosuchfs"):
        AR.read_bytes("nosuchfs://bucket/m/x.bin")
    assert not (tmp_path / "nosuchfs:").exists()


def test_file_names_must_be_plain(tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        AR.write_files(str(tmp_path), {"../escape": b"1"})


def test_torch_bytes_refuse_pickled_objects():
    state = {"w": torch.arange(4.0)}
    assert torch.equal(AR.torch_from_bytes(AR.torch_bytes(state))["w"], state["w"])
    import io

    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0), "evil": dt.date(2024, 1, 1)}, buf)   # an arbitrary object
    with pytest.raises(pickle.UnpicklingError):
        AR.torch_from_bytes(buf.getvalue())


# ------------------------------------------------------------------------------------------------
# through the JVM's Hadoop FileSystem
# ------------------------------------------------------------------------------------------------


def test_hadoop_round_trip_in_chunks(spark, tmp_path, monkeypatch):
    # a non-file scheme would need a cluster's connector; drive the Hadoop code path with the
    # JVM's LocalFileSystem (file: URIs) and 1 KiB py4j chunks so several chunks are sent each way
    monkeypatch.setattr(AR, "_resolve", lambda uri, s: ("jvm", uri) if AR._classic(s) else ("local", AR.local_path(uri)))
    monkeypatch.setattr(AR, "_JVM_CHUNK", 1024)
    blob = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    uri = f"file://{tmp_path}/hadoop/m/state.pt"
    AR.write_bytes(uri, blob, spark)
    assert (tmp_path / "hadoop" / "m" / "state.pt").read_bytes() == blob
    assert AR.read_bytes(uri, spark) == blob
    assert AR.exists(uri, spark) and not AR.exists(uri + ".nope", spark)
    with pytest.raises(FileNotFoundError):
        AR.read_bytes(uri + ".nope", spark)
    AR.delete(f"file://{tmp_path}/hadoop", spark)
    assert not (tmp_path / "hadoop").exists()


def test_unsupported_scheme_with_spark_names_the_scheme(spark):
    assert AR.describe("s3a://bucket/m", spark) == "hadoop"
    with pytest.raises(AR.UnsupportedURIError, match="scheme 'nosuchfs'.*No FileSystem for scheme"):
        AR.write_bytes("nosuchfs://bucket/m/x.bin", b"1", spark)
    with pytest.raises(AR.UnsupportedURIError, match="nosuchfs"):
        AR.exists("nosuchfs://bucket/m/x.bin", spark)


# ------------------------------------------------------------------------------------------------
# models saved to a file:/// URI, used on executors after the driver's copy is removed
# ------------------------------------------------------------------------------------------------


def test_din_scores_on_executors_without_the_driver_folder(spark, tmp_path):
    from recsys_spark.ranking import din as D
    from recsys_spark.ranking.din_spark import DINArtifact, score_candidates

    torch.manual_seed(3)
    # 40k content-only filler tracks: the weights pass 1 MiB, so PySpark ships the task's closure
    # (which holds the model's bytes) as a broadcast, the path a real model takes
    ids = ["a", "b", "c", "d"] + [f"x{i}" for i in range(40000)]
    cfg = D.DINConfig(n_items=len(ids), n_id_items=3, embedding_dim=4, content_dim=8, attention_hidden=[8],
                      mlp_hidden=[8], max_history=2)
    model = D.DIN(cfg, content=torch.randn(len(ids) + 2, 8)).eval()
    folder = tmp_path / "models" / "week=2024-01-08" / "din"
    uri = f"file://{folder}"
    DINArtifact(model, ids, {"auc": 0.75}).save(uri, spark=spark)
    assert sorted(p.name for p in folder.iterdir()) == ["din_config.json", "din_state.pt", "metrics.json", "vocab.json"]
    assert (folder / "din_state.pt").stat().st_size > 1 << 20
    back = DINArtifact.load(uri, spark=spark)
    assert back.vocab == ids and back.metrics == {"auc": 0.75}

    seeds = spark.createDataFrame([("u1", "a", 1), ("u1", "b", 2), ("u2", "c", 1)],
                                  "user_id string, track_id string, seed_rank int")
    cands = spark.createDataFrame([("u1", "c"), ("u1", "d"), ("u2", "a"), ("u2", "zz")],
                                  "user_id string, track_id string")
    out = score_candidates(spark, cands, seeds, uri, batch_size=2, device="cpu")
    shutil.rmtree(tmp_path / "models")          # executors must not need the folder any more
    got = {(r.user_id, r.track_id): r.din_score for r in out.collect()}

    # a=2 b=3 c=4 d=5 (content only), zz = OOV (1); histories most recent first
    hist = torch.tensor([[2, 3], [2, 3], [4, 0], [4, 0]])
    cand = torch.tensor([4, 5, 2, 1])
    with torch.no_grad():
        direct = torch.sigmoid(model(hist, cand)).double().numpy()
    keys = [("u1", "c"), ("u1", "d"), ("u2", "a"), ("u2", "zz")]
    assert [got[k] for k in keys] == pytest.approx(direct.tolist(), abs=1e-6)
    assert len(set(np.round(direct, 6))) == 4


def test_creator_pooling_on_executors_without_the_driver_folder(spark, tmp_path):
    from recsys_spark.aggregation import attention as A
    from recsys_spark.aggregation.creators import creator_embeddings, load_pooling, save_pooling

    tracks = spark.createDataFrame([("a", "k1", 10), ("b", "k1", 5), ("c", "k1", 1), ("d", "k2", 3)],
                                   "track_id string, creator_id string, play_count long")
    embs = spark.createDataFrame([("a", [1.0, 0.0, 0.0]), ("b", [0.0, 1.0, 0.0]), ("c", [0.0, 0.0, 1.0]),
                                  ("d", [2.0, 2.0, 2.0])], "track_id string, embedding array<float>")
    torch.manual_seed(1)
    model = A.CreatorAffinityModel(3, proj_dim=2, hidden=4, pooling="attention")
    uri = f"file://{tmp_path}/m/creator_pooling"
    assert save_pooling(model, uri, spark=spark) == uri
    loaded = load_pooling(uri, spark=spark)
    shutil.rmtree(tmp_path / "m")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    got = {r.creator_id: np.array(r.embedding) for r in
           creator_embeddings(spark, tracks, embs, model=loaded, method="attention", max_tracks=3).collect()}
    x = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])
    with torch.no_grad():
        w = model.pool.weights(x, torch.ones(1, 3, dtype=torch.bool))[0].numpy()
    assert got["k1"] == pytest.approx(w, abs=1e-6) and len(set(np.round(w, 6))) == 3
    assert got["k2"] == pytest.approx([2.0, 2.0, 2.0])
    with pytest.raises(FileNotFoundError, match="pooling_config.json"):
        load_pooling(uri, spark=spark)


def test_content_model_index_under_file_uri_recommends_without_the_folder(spark, tmp_path):
    from recsys_spark.recall.base import ChannelInputs
    from recsys_spark.recall.content import ContentRecall, ContentRecallModel

    emb = spark.createDataFrame(
        [("t1", "v", [1.0, 0.0, 0.0]), ("t2", "v", [0.8, 0.6, 0.0]), ("t3", "v", [0.0, 1.0, 0.0]),
         ("t4", "v", [0.0, 0.0, 1.0])], "track_id string, model_version string, embedding array<float>")
    model = ContentRecall(seed_weighting="uniform").fit(ChannelInputs(spark, track_embeddings=emb, model_version="v"))
    uri = f"file://{tmp_path}/m/content"
    model.save(uri)
    assert (tmp_path / "m" / "content" / "index").is_dir() and (tmp_path / "m" / "content" / "metadata").is_dir()
    back = ContentRecallModel.load(spark, uri)
    shutil.rmtree(tmp_path / "m")
    seeds = spark.createDataFrame([("u1", "t1", 1.0, 1.0, 1)],
                                  "user_id string, track_id string, weight double, recency double, seed_rank int")
    heard = spark.createDataFrame([("u1", "t1")], "user_id string, track_id string")
    got = [(r.track_id, round(r.score, 5), r.rank) for r in
           back.recommend(ChannelInputs(spark, seeds=seeds, heard=heard), 2).orderBy("rank").collect()]
    assert got == [("t2", 0.8, 1), ("t3", 0.0, 2)]
    back.unpersist()
    model.unpersist()
