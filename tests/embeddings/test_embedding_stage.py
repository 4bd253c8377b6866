"""The weekly embed stage: only what existed before the week is embedded, tracks' prompt text only
when the prompt channel needs it, and a second run embeds nothing."""

import datetime as dt

import pytest

from recsys_spark.embeddings import clap
from recsys_spark.embeddings.clap import ClapEncoder, EncoderSpec
from recsys_spark.embeddings.jobs import run_embedding_stage
from recsys_spark.tables import TRACKS, USER_PROMPTS

SPEC = EncoderSpec(audio_model="HTSAT-tiny", text_model="transformer", max_windows=1, device="cpu", seed=0)
MONDAY = dt.datetime(2026, 11, 23)
BEFORE, AFTER = dt.datetime(2026, 11, 20), dt.datetime(2026, 11, 24)


@pytest.fixture(scope="module", autouse=True)
def encoder():
    clap._CACHE[SPEC] = ClapEncoder(SPEC)   # what get_encoder would build (no download)
    yield
    clap._CACHE.pop(SPEC, None)


def _fill(spark, tables):
    tables.create_all(["tracks", "user_prompts", "track_embeddings", "prompt_embeddings", "quarantine"])
    t = [("t_old", "c1", "Old", "lofi piano at dawn", None, None, None, BEFORE, None, 1, 0, 0, BEFORE),
         ("t_new", "c1", "New", "hard techno", None, None, None, AFTER, None, 1, 0, 0, AFTER)]
    tables.append("tracks", spark.createDataFrame(t, TRACKS.schema))
    p = [("p_old", "u1", "dreamy synthwave", BEFORE, BEFORE), ("p_new", "u1", "angry punk", AFTER, AFTER)]
    tables.append("user_prompts", spark.createDataFrame(p, USER_PROMPTS.schema))


def _ids(tables):
    return sorted((r.id, r.kind) for r in tables.read("prompt_embeddings").collect())


def test_embeds_as_of_the_week_and_track_prompts_only_when_asked(spark, tables):
    _fill(spark, tables)
    c = run_embedding_stage(spark, tables, SPEC, text_batch_size=8, as_of=MONDAY, track_prompts=False)
    assert c["texts_embedded"] == 1.0                       # p_old only: p_new is after W, tracks not asked
    assert [i for i, _ in _ids(tables)] == ["p_old"]
    c = run_embedding_stage(spark, tables, SPEC, text_batch_size=8, as_of=MONDAY, track_prompts=True)
    assert c["texts_embedded"] == 1.0                       # now t_old's prompt text; p_old is not redone
    assert [i for i, _ in _ids(tables)] == ["p_old", "t_old"]
    c = run_embedding_stage(spark, tables, SPEC, text_batch_size=8, as_of=MONDAY, track_prompts=True)
    assert c["texts_embedded"] == 0.0                       # incremental
    c = run_embedding_stage(spark, tables, SPEC, text_batch_size=8, track_prompts=True)   # no cut: the rest
    assert [i for i, _ in _ids(tables)] == ["p_new", "p_old", "t_new", "t_old"] and c["texts_embedded"] == 2.0


def test_the_model_udf_runs_on_every_partition_after_the_anti_join(spark):
    """Regression: ``repartition(n, key)`` after the anti join on ``key`` was dropped by Spark and
    AQE coalesced the join into one partition: the whole embedding ran in one task on one core."""
    import pandas as pd
    from pyspark.sql import functions as F

    from recsys_spark.embeddings.jobs import spread

    tracks = spark.createDataFrame([(f"t{i}", f"/a/t{i}.wav") for i in range(300)], "track_id string, audio_uri string")
    done = spark.createDataFrame([(f"t{i}",) for i in range(0, 300, 3)], "track_id string")
    todo = tracks.join(done, "track_id", "left_anti")

    def sizes(batches):
        from pyspark import TaskContext

        for pdf in batches:
            yield pd.DataFrame({"p": [TaskContext.get().partitionId()], "n": [len(pdf)]})

    def per_partition(df):
        rows = df.mapInPandas(sizes, "p int, n long").groupBy("p").agg(F.sum("n").alias("n")).collect()
        return sorted(r.n for r in rows)

    # the product's session settings (the test session runs without AQE): AQE coalescing on, and as
    # many shuffle partitions as the stage asks for (a few per core)
    keys = ("spark.sql.adaptive.enabled", "spark.sql.adaptive.coalescePartitions.enabled", "spark.sql.shuffle.partitions")
    saved = {k: spark.conf.get(k) for k in keys}
    n = 8
    try:
        spark.conf.set("spark.sql.adaptive.enabled", "true")
        spark.conf.set("spark.sql.adaptive.coalescePartitions.enabled", "true")
        spark.conf.set("spark.sql.shuffle.partitions", str(n))
        got = per_partition(spread(todo, n, "track_id"))  # repartition(n, "track_id") gave [200] here
    finally:
        for k, v in saved.items():
            spark.conf.set(k, v)
    assert len(got) == n and sum(got) == 200 and max(got) < 200 * 2 / n
