import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.tables import ALL_TABLES, Tables


def _dw_rows(spark, week, users, run):
    rows = [(week, u, p, f"t{p}", 1.0, ["popular"], "r", "v", run, dt.datetime(2026, 11, 23))
            for u in users for p in (1, 2)]
    return spark.createDataFrame(rows, ALL_TABLES["discover_weekly"].schema)


def test_create_all_with_schema_partitioning_and_comments(tables):
    tables.create_all()
    for name, spec in ALL_TABLES.items():
        assert tables.exists(name), name
        df = tables.read(name)
        assert [f.name for f in df.schema.fields] == [f.name for f in spec.schema.fields]
    detail = tables.delta("discover_weekly").detail().first()
    assert detail["partitionColumns"] == ["week_start"]
    assert "Discover Weekly" in detail["description"]


def test_replace_partition_only_touches_that_week(spark, tables):
    w1, w2 = dt.date(2026, 11, 16), dt.date(2026, 11, 23)
    tables.replace_partition("discover_weekly", _dw_rows(spark, w1, ["a", "b"], "r1"), "week_start", w1)
    tables.replace_partition("discover_weekly", _dw_rows(spark, w2, ["a"], "r2"), "week_start", w2)
    tables.replace_partition("discover_weekly", _dw_rows(spark, w2, ["c"], "r3"), "week_start", w2)
    df = tables.read("discover_weekly")
    assert sorted((r["week_start"], r["user_id"]) for r in df.select("week_start", "user_id").distinct().collect()) == \
        [(w1, "a"), (w1, "b"), (w2, "c")]
    # a bug writing another week's rows through replace_partition fails instead of spilling over
    with pytest.raises(Exception):
        tables.replace_partition("discover_weekly", _dw_rows(spark, w1, ["z"], "r4"), "week_start", w2)
    assert tables.read("discover_weekly").count() == 6
    # the previous version stays readable (time travel)
    v = tables.version("discover_weekly")
    old = tables.read("discover_weekly", version=v - 1)
    assert old.where(F.col("user_id") == "a").where(F.col("week_start") == w2).count() == 2


def test_names_and_validation(spark, tmp_path):
    t = Tables(spark, warehouse=str(tmp_path))
    assert t.path("tracks") == str(tmp_path / "tracks")
    assert t.qualified("tracks") == f"delta.`{tmp_path / 'tracks'}`"
    c = Tables(spark, mode="catalog", catalog="main", schema="recsys")
    assert c.qualified("runs") == "`main`.`recsys`.`runs`"
    with pytest.raises(KeyError):
        t.path("../etc")
    with pytest.raises(ValueError):
        Tables(spark, mode="catalog", catalog="main; DROP TABLE x", schema="s")
    with pytest.raises(ValueError, match="unsafe partition value"):
        t.replace_partition("discover_weekly", spark.createDataFrame([], ALL_TABLES["discover_weekly"].schema),
                            "week_start", "2026' OR '1'='1")


# -- optimistic partition commits (two writers of the same week) --------------------------------

W1, W2 = dt.date(2026, 11, 16), dt.date(2026, 11, 23)


def _week_rows(tables, week):
    return sorted(tuple(r) for r in tables.read("discover_weekly").where(F.col("week_start") == week)
                  .select("user_id", "position", "run_id").collect())


def test_second_writer_of_a_claimed_week_fails_and_the_first_writers_week_stays(spark, tables):
    from recsys_spark.tables import ConcurrentWriteError

    tables.replace_partition("discover_weekly", _dw_rows(spark, W1, ["old"], "r0"), "week_start", W1)
    earlier = _week_rows(tables, W1)
    a = tables.claim_partition("discover_weekly", "week_start", W2, owner="run-a")
    b = tables.claim_partition("discover_weekly", "week_start", W2, owner="run-b")
    assert a.base_version == b.base_version
    # another week committed in between does not conflict with W2
    tables.replace_partition("discover_weekly", _dw_rows(spark, W1, ["old"], "r0"), "week_start", W1)
    v_b = tables.commit_partition(b, _dw_rows(spark, W2, ["x", "y"], "run-b"))
    assert v_b == tables.version("discover_weekly")
    with pytest.raises(ConcurrentWriteError, match=r"run-b committed version .*run-a wrote nothing"):
        tables.commit_partition(a, _dw_rows(spark, W2, ["x", "y", "z"], "run-a"))
    assert _week_rows(tables, W2) == [("x", 1, "run-b"), ("x", 2, "run-b"), ("y", 1, "run-b"), ("y", 2, "run-b")]
    assert _week_rows(tables, W1) == earlier
    assert tables.version("discover_weekly") == v_b
    # a run that starts after B committed (a rerun) is not blocked, nor is it by a claim that never committed
    tables.claim_partition("discover_weekly", "week_start", W2, owner="killed-run")
    c = tables.claim_partition("discover_weekly", "week_start", W2, owner="run-c")
    assert c.base_version == v_b and c.base_owner == "run-b"
    tables.commit_partition(c, _dw_rows(spark, W2, ["z"], "run-c"))
    assert _week_rows(tables, W2) == [("z", 1, "run-c"), ("z", 2, "run-c")]


def test_commit_between_check_and_write_is_caught_by_delta_txn(spark, tables, monkeypatch):
    """B commits after A's pre-commit check passed: Delta's txnAppId/txnVersion skips A's write."""
    from recsys_spark.tables import ConcurrentWriteError, Tables

    a = tables.claim_partition("discover_weekly", "week_start", W2, owner="run-a")
    b = tables.claim_partition("discover_weekly", "week_start", W2, owner="run-b")
    real = Tables.partition_commits
    calls = {"n": 0}

    def stale_first_look(self, claim):
        calls["n"] += 1
        if claim.owner == "run-a" and calls["n"] == 1:  # A's pre-check: B not committed yet ...
            out = real(self, claim)
            tables.commit_partition(b, _dw_rows(spark, W2, ["b"], "run-b"))  # ... and B commits right after
            return out
        return real(self, claim)

    monkeypatch.setattr(Tables, "partition_commits", stale_first_look)
    with pytest.raises(ConcurrentWriteError, match="Delta skipped this write"):
        tables.commit_partition(a, _dw_rows(spark, W2, ["a"], "run-a"))
    assert _week_rows(tables, W2) == [("b", 1, "run-b"), ("b", 2, "run-b")]


def test_two_writers_racing_exactly_one_commits(spark, tables):
    import threading

    from recsys_spark.tables import ConcurrentWriteError

    tables.replace_partition("discover_weekly", _dw_rows(spark, W1, ["old"], "r0"), "week_start", W1)
    claims = {o: tables.claim_partition("discover_weekly", "week_start", W2, owner=o) for o in ("t1", "t2")}
    frames = {o: _dw_rows(spark, W2, [f"{o}-u1", f"{o}-u2"], o) for o in claims}
    gate, results = threading.Barrier(2), {}

    def go(owner):
        gate.wait()
        try:
            results[owner] = tables.commit_partition(claims[owner], frames[owner])
        except ConcurrentWriteError as exc:
            results[owner] = exc

    threads = [threading.Thread(target=go, args=(o,)) for o in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    winners = [o for o, r in results.items() if isinstance(r, int)]
    losers = [o for o, r in results.items() if isinstance(r, ConcurrentWriteError)]
    assert len(winners) == 1 and len(losers) == 1, results
    w = winners[0]
    assert _week_rows(tables, W2) == sorted((f"{w}-u{i}", p, w) for i in (1, 2) for p in (1, 2))
    assert [r[0] for r in _week_rows(tables, W1)] == ["old", "old"]


def test_delta_concurrent_exceptions_map_to_concurrent_write_error(spark, tables, monkeypatch):
    from delta.exceptions import ConcurrentAppendException

    from recsys_spark.tables import ConcurrentWriteError, Tables

    a = tables.claim_partition("discover_weekly", "week_start", W2, owner="run-a")

    def boom(self, name, writer):
        raise ConcurrentAppendException("Files were added to partition [week_start=2026-11-23] by a concurrent update")

    monkeypatch.setattr(Tables, "_save", boom)
    with pytest.raises(ConcurrentWriteError, match="ConcurrentAppendException") as info:
        tables.commit_partition(a, _dw_rows(spark, W2, ["a"], "run-a"))
    assert isinstance(info.value.__cause__, ConcurrentAppendException)
    monkeypatch.setattr(Tables, "_save", lambda self, name, writer: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):  # other errors are not disguised as conflicts
        tables.commit_partition(a, _dw_rows(spark, W2, ["a"], "run-a"))


# -- path safety ---------------------------------------------------------------------------------

def test_table_paths_stay_under_the_warehouse(spark, tmp_path):
    from recsys_spark.safety import UnsafeValueError
    from recsys_spark.tables import TableSpec, register

    wh = tmp_path / "wh"
    t = Tables(spark, warehouse=str(wh))
    wh.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (wh / "tracks").symlink_to(tmp_path / "elsewhere")  # a table folder planted as a link out of the warehouse
    with pytest.raises(UnsafeValueError, match="outside the allowed root"):
        t.path("tracks")
    with pytest.raises(UnsafeValueError, match="outside the allowed root"):
        t.read("tracks")
    assert t.path("runs") == str(wh / "runs")
    # the warehouse is quoted into delta.`<path>` SQL: characters that would break out are refused
    for bad in [str(tmp_path / "wh`; DROP TABLE x; --"), str(tmp_path / "wh\nx")]:
        with pytest.raises(UnsafeValueError, match="forbidden character"):
            Tables(spark, warehouse=bad)
    # a table registered by another module must have a plain name (it becomes a folder and a SQL name)
    for bad in ["../../etc", "/etc/passwd", "x; DROP TABLE runs"]:
        with pytest.raises(UnsafeValueError, match="invalid table name"):
            register(TableSpec(bad, ALL_TABLES["runs"].schema, key=("run_id",)))
        assert bad not in ALL_TABLES
    # URIs stay URIs (no local abspath), and table paths stay under them
    s3 = Tables(spark, warehouse="s3a://bucket/recsys/wh/")
    assert s3.path("runs") == "s3a://bucket/recsys/wh/runs"
    assert s3.qualified("runs") == "delta.`s3a://bucket/recsys/wh/runs`"


def test_every_pipeline_table_is_known_without_importing_its_writer():
    # the write stage asks for creator_embeddings in runs that never import the aggregation code
    # (embeddings disabled); the maintenance job iterates the registry: both need it registered
    import os
    import subprocess
    import sys

    code = ("import sys; from recsys_spark.tables import ALL_TABLES; "
            "assert 'recsys_spark.aggregation.creators' not in sys.modules; "
            "assert {'creator_embeddings', 'track_embeddings', 'discover_weekly'} <= set(ALL_TABLES)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=dict(os.environ, PYTHONPATH=root))


def test_creators_for_diversity_is_none_without_the_table(tables):
    from recsys_spark.pipeline.stages.aggregate_creators import creators_for_diversity as _creators_for_diversity

    assert not tables.exists("creator_embeddings")
    assert _creators_for_diversity(tables, dt.date(2026, 11, 23)) is None


# --- rules the tables enforce themselves (CHECK constraints, retention, change data feed, pruning)


def _interactions(spark, rows):
    return spark.createDataFrame(
        [(u, t, dt.datetime.fromisoformat(ts), "play", w, dt.date.fromisoformat(ts[:10]), None) for u, t, ts, w in rows],
        ALL_TABLES["interactions"].schema)


def test_tables_carry_retention_constraints_and_change_feed(tables):
    tables.create("discover_weekly")
    props = tables.delta("discover_weekly").detail().first()["properties"]
    assert props["delta.deletedFileRetentionDuration"] == "interval 14 days"
    assert props["delta.logRetentionDuration"] == "interval 30 days"
    assert props["delta.enableChangeDataFeed"] == "true"
    assert props["delta.constraints.position_1_to_30"] == "position BETWEEN 1 AND 30"
    assert "delta.constraints.score_finite" in props
    tables.create("runs")
    runs = tables.delta("runs").detail().first()["properties"]
    assert runs["delta.deletedFileRetentionDuration"] == "interval 14 days"
    assert "delta.enableChangeDataFeed" not in runs


@pytest.mark.parametrize("position, score", [(31, 1.0), (0, 1.0), (1, float("nan")), (1, float("inf"))])
def test_a_playlist_row_breaking_a_rule_is_refused_and_nothing_is_written(spark, tables, position, score):
    w = dt.date(2026, 11, 23)
    tables.replace_partition("discover_weekly", _dw_rows(spark, w, ["a"], "r1"), "week_start", w)
    bad = spark.createDataFrame([(w, "b", position, "t9", score, ["als"], "r", "v", "r2", dt.datetime(2026, 11, 23))],
                                ALL_TABLES["discover_weekly"].schema)
    with pytest.raises(Exception, match=r"(?i)check constraint|CHECK_CONSTRAINT|violat"):
        tables.replace_partition("discover_weekly", _dw_rows(spark, w, ["c"], "r2").union(bad), "week_start", w)
    assert sorted(r["user_id"] for r in tables.read("discover_weekly").select("user_id").distinct().collect()) == ["a"]


def test_negative_or_infinite_interaction_weight_is_refused(spark, tables):
    ok = _interactions(spark, [("u1", "t1", "2026-11-20 10:00:00", 1.0)])
    tables.merge_insert_new("interactions", ok, ALL_TABLES["interactions"].key)
    for w in (-1.0, float("inf")):
        bad = _interactions(spark, [("u2", "t2", "2026-11-21 10:00:00", w)])
        with pytest.raises(Exception, match=r"(?i)check constraint|CHECK_CONSTRAINT|violat"):
            tables.merge_insert_new("interactions", bad, ALL_TABLES["interactions"].key)
    assert tables.read("interactions").count() == 1


def test_an_old_table_gets_the_missing_rules(spark, tmp_path):
    old = Tables(spark, warehouse=str(tmp_path / "wh"))
    path = old.path("discover_weekly")
    _dw_rows(spark, dt.date(2026, 11, 16), ["a"], "r0").write.format("delta").partitionBy("week_start").save(path)
    added = Tables(spark, warehouse=str(tmp_path / "wh")).ensure_rules("discover_weekly")
    assert added["constraints"] == ["position_1_to_30", "score_finite"]
    assert "delta.enableChangeDataFeed" in added["properties"]
    again = Tables(spark, warehouse=str(tmp_path / "wh")).ensure_rules("discover_weekly")
    assert again == {"properties": [], "constraints": []}


def test_an_old_candidates_table_gets_the_new_nullable_column_and_keeps_its_rows(spark, tmp_path):
    # a candidates table written before the learned ranker existed (no ranker_score column)
    spec = ALL_TABLES["candidates"]
    old_schema = T.StructType([f for f in spec.schema.fields if f.name != "ranker_score"])
    w = dt.date(2026, 11, 16)
    rows = [(w, "u1", "t1", ["als"], 0.9, None, 0.5, 0.9, None)]
    tables = Tables(spark, warehouse=str(tmp_path / "wh"))
    spark.createDataFrame(rows, old_schema).write.format("delta").partitionBy("week_start").save(tables.path("candidates"))
    Tables(spark, warehouse=str(tmp_path / "wh")).ensure_rules("candidates")
    got = tables.read("candidates")
    assert [f.name for f in got.schema.fields] == [f.name for f in spec.schema.fields]
    assert [(r["track_id"], r["ranker_score"]) for r in got.collect()] == [("t1", None)]
    # the next week is written with the full schema next to the old rows
    new = spark.createDataFrame([(dt.date(2026, 11, 23), "u1", "t2", ["als"], 0.8, None, 0.5, 0.8, None, 0.7)],
                                spec.schema)
    tables.replace_partition("candidates", new, "week_start", dt.date(2026, 11, 23))
    assert sorted((r["track_id"], r["ranker_score"]) for r in tables.read("candidates").collect()) == \
        [("t1", None), ("t2", 0.7)]


def test_an_old_table_missing_a_required_column_is_refused(spark, tmp_path):
    spec = ALL_TABLES["candidates"]
    old_schema = T.StructType([f for f in spec.schema.fields if f.name != "track_id"])
    tables = Tables(spark, warehouse=str(tmp_path / "wh"))
    spark.createDataFrame([], old_schema).write.format("delta").save(tables.path("candidates"))
    with pytest.raises(ValueError, match=r"lacks the non-nullable column\(s\) \['track_id'\]"):
        tables.ensure_rules("candidates")


def test_interactions_merge_is_pruned_to_the_source_partitions_and_stays_idempotent(spark, tables):
    key = ALL_TABLES["interactions"].key
    first = _interactions(spark, [("u1", "t1", "2026-11-20 10:00:00", 1.0), ("u1", "t2", "2026-11-21 10:00:00", 2.0)])
    tables.merge_insert_new("interactions", first, key)
    src = tables._conform("interactions", _interactions(spark, [("u1", "t2", "2026-11-21 10:00:00", 2.0),
                                                                ("u2", "t3", "2026-11-22 09:00:00", 1.0)]))
    cond = tables._prune_condition("interactions", src)
    assert cond == " AND t.`event_date` = s.`event_date` AND t.`event_date` IN ('2026-11-21', '2026-11-22')"
    tables.merge_insert_new("interactions", src, key)
    tables.merge_insert_new("interactions", src, key)  # re-ingest: nothing new
    assert tables.read("interactions").count() == 3
    # the quarantine's ingest_date is not derived from its key: never pruned (a re-ingest another day must match)
    assert tables._prune_condition("quarantine", tables.read("quarantine")) == ""
    # over max_values partitions: a range instead of the list
    assert tables._prune_condition("interactions", src, max_values=1) == \
        " AND t.`event_date` = s.`event_date` AND t.`event_date` BETWEEN '2026-11-21' AND '2026-11-22'"


def test_liquid_clustering_option(spark, tmp_path):
    lc = Tables(spark, warehouse=str(tmp_path / "wh"), clustering=True)
    lc.create("discover_weekly")
    detail = lc.delta("discover_weekly").detail().first()
    assert detail["partitionColumns"] == [] and list(detail["clusteringColumns"]) == ["week_start", "user_id"]
    w = dt.date(2026, 11, 23)
    lc.replace_partition("discover_weekly", _dw_rows(spark, w, ["a"], "r1"), "week_start", w)
    assert lc.read("discover_weekly").count() == 2
    lc.create("interactions")  # no cluster_by: stays partitioned
    assert lc.delta("interactions").detail().first()["partitionColumns"] == ["event_date"]
