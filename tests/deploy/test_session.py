"""Session decisions: local defaults only for local masters, a submitted cluster's settings never overridden."""

from pathlib import Path

import pytest

from recsys_spark.config import REPO_ROOT
from recsys_spark.spark import (DELTA_SETTINGS, LOCAL_DEFAULTS, delta_coordinates, is_local_master,
                                plan_session)


def test_local_masters():
    for m in ("local", "local[2]", "local[*]", "local[4,2]", "local-cluster[2,1,1024]"):
        assert is_local_master(m), m
    for m in ("yarn", "spark://127.0.0.1:7077", "k8s://https://h:443", "sc://localhost", "", None, "localhost"):
        assert not is_local_master(m), m


def test_no_jvm_yet_and_a_local_master_gets_the_local_defaults():
    plan = plan_session(None, master="local[2]", driver_memory="3g", shuffle_partitions=4,
                        extra={"spark.ui.enabled": "true"})
    assert plan.master == "local[2]" and plan.local and plan.add_delta_jars
    assert plan.conf["spark.driver.memory"] == "3g"
    assert plan.conf["spark.sql.shuffle.partitions"] == "4"
    assert plan.conf["spark.databricks.delta.snapshotPartitions"] == "2"
    assert plan.conf["spark.ui.enabled"] == "true"  # extra wins over the local default


def test_no_jvm_yet_and_a_cluster_master_gets_no_local_defaults():
    plan = plan_session(None, master="yarn", driver_memory="8g", shuffle_partitions=800)
    assert plan.master == "yarn" and not plan.local
    assert set(plan.conf) == set(DELTA_SETTINGS) | {"spark.sql.shuffle.partitions"}
    for key in ("spark.ui.enabled", "spark.driver.memory", "spark.driver.extraJavaOptions",
                "spark.databricks.delta.snapshotPartitions"):
        assert key not in plan.conf


def test_spark_submit_to_a_cluster_keeps_every_submitted_setting():
    submitted = {"spark.master": "spark://10.0.0.1:7077", "spark.driver.memory": "16g",
                 "spark.sql.shuffle.partitions": "2000", "spark.driver.extraJavaOptions": "-Dx=1",
                 "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension,my.Ext",
                 "spark.app.name": "dw"}
    plan = plan_session(submitted, master="local[*]", driver_memory="6g", shuffle_partitions=8,
                        extra={"spark.sql.autoBroadcastJoinThreshold": "64m", "spark.driver.memory": "1g"})
    assert plan.master is None  # the config's local[*] does not replace the submitted master
    assert not plan.local and not plan.add_delta_jars
    assert not set(plan.conf) & set(submitted)  # nothing submitted is overridden
    assert plan.conf == {"spark.sql.catalog.spark_catalog": DELTA_SETTINGS["spark.sql.catalog.spark_catalog"],
                         "spark.sql.legacy.parameterSubstitution.constantsOnly": "true",
                         "spark.sql.session.timeZone": "UTC",  # weeks are UTC Mondays; not submitted
                         "spark.sql.autoBroadcastJoinThreshold": "64m"}


def test_spark_submit_with_a_local_master_fills_only_unset_local_defaults():
    submitted = {"spark.master": "local[3]", "spark.ui.enabled": "true", "spark.driver.memory": "2g"}
    plan = plan_session(submitted, master="yarn", driver_memory="6g", shuffle_partitions=8)
    assert plan.master is None and plan.local
    assert "spark.ui.enabled" not in plan.conf and "spark.driver.memory" not in plan.conf
    assert plan.conf["spark.databricks.delta.snapshotPartitions"] == LOCAL_DEFAULTS[
        "spark.databricks.delta.snapshotPartitions"]


def test_submitted_without_a_master_uses_the_configured_one():
    plan = plan_session({"spark.app.name": "x"}, master="local[2]")
    assert plan.master == "local[2]" and plan.local


def test_documented_delta_coordinates_are_the_ones_the_tests_load(spark):
    coords = delta_coordinates()
    assert coords.startswith("io.delta:delta-spark_4.2_2.13:")
    packages = spark.sparkContext.getConf().get("spark.jars.packages", "")
    assert coords in packages.split(",")  # what configure_spark_with_delta_pip asked Ivy for
    root = Path(REPO_ROOT)
    for doc in ("README.md", "docs/OPERATIONS.md"):
        text = (root / doc).read_text()
        assert coords in text, doc
        assert "io.delta:delta-spark_2.13:" not in text, doc


def test_jobs_needing_a_classic_session_stop_at_once_over_spark_connect(spark):
    import pytest

    from recsys_spark.spark import is_connect, require_classic

    class ConnectSession:  # what pyspark.sql.connect.session.SparkSession looks like to is_connect
        pass

    ConnectSession.__module__ = "pyspark.sql.connect.session"
    remote = ConnectSession()
    assert is_connect(remote) and not is_connect(spark)
    with pytest.raises(RuntimeError, match=r"recsys weekly` needs a classic SparkSession.*recall.als.*broadcast"):
        require_classic(remote, "weekly")
    with pytest.raises(RuntimeError, match=r"SparkContext.parallelize"):
        require_classic(remote, "ingest")
    require_classic(remote, "show")  # queries work over Connect
    require_classic(spark, "weekly")  # a classic session passes


def test_the_local_file_system_jar_goes_only_to_a_new_local_jvm(tmp_path):
    from recsys_spark.spark import LOCAL_FS_CLASS

    jar = str(tmp_path / "fs.jar")
    plan = plan_session(None, master="local[2]", local_fs_jar=jar,
                        extra={"spark.driver.extraClassPath": "/opt/x.jar"})
    assert plan.conf["spark.hadoop.fs.file.impl"] == LOCAL_FS_CLASS
    assert plan.conf["spark.driver.extraClassPath"] == jar + ":/opt/x.jar"  # the caller's entry kept
    assert plan.conf["spark.executor.extraClassPath"] == jar
    assert "spark.hadoop.fs.file.impl" not in plan_session(None, master="local[2]").conf  # no jar
    for cluster in (plan_session(None, master="yarn", local_fs_jar=jar),
                    plan_session({"spark.master": "local[2]"}, master="local[2]", local_fs_jar=jar)):
        assert "spark.hadoop.fs.file.impl" not in cluster.conf and "spark.driver.extraClassPath" not in cluster.conf


def test_the_local_file_system_jar_is_checked_before_it_is_kept(tmp_path, monkeypatch):
    import pytest

    from recsys_spark import spark as S

    monkeypatch.setenv("RECSYS_JARS_CACHE", str(tmp_path / "cache"))
    repo = tmp_path / "repo" / "com" / "globalmentor" / "hadoop-bare-naked-local-fs" / "0.1.0"
    repo.mkdir(parents=True)
    (repo / "hadoop-bare-naked-local-fs-0.1.0.jar").write_bytes(b"not the published jar")
    with pytest.raises(IOError, match="SHA-1"):
        S.fetch_local_fs_jar(repository=(tmp_path / "repo").as_uri())
    assert S.local_fs_jar() is None and not list((tmp_path / "cache").iterdir())  # nothing kept


def test_the_session_writes_through_the_local_file_system_of_the_plan(spark, tmp_path):
    """The test session is a local session built by get_spark: with the jar there (make setup
    fetches it) Delta writes go through BareLocalFileSystem."""
    from recsys_spark.spark import LOCAL_FS_CLASS, local_fs_jar

    impl = spark.sparkContext._jsc.hadoopConfiguration().get("fs.file.impl")
    assert impl == (LOCAL_FS_CLASS if local_fs_jar() else None)
    spark.range(3).write.format("delta").save(str(tmp_path / "t"))
    assert spark.read.format("delta").load(str(tmp_path / "t")).count() == 3


def test_sql_conf_sets_for_the_block_then_restores(spark):
    from recsys_spark.spark import sql_conf

    unset, preset = "spark.recsys.test.unset", "spark.recsys.test.preset"
    spark.conf.set(preset, "before")
    try:
        with sql_conf(spark, {unset: "in", preset: "in"}):
            assert (spark.conf.get(unset), spark.conf.get(preset)) == ("in", "in")
        assert spark.conf.get(unset, None) is None and spark.conf.get(preset) == "before"
        with pytest.raises(RuntimeError):   # restored when the block fails too
            with sql_conf(spark, {preset: "in"}):
                raise RuntimeError("stage failed")
        assert spark.conf.get(preset) == "before"
    finally:
        spark.conf.unset(preset)


def test_resolve_delta_leaves_an_active_session_running_and_the_cli_names_its_commands(spark, capsys):
    from recsys_spark.spark import main, resolve_delta_jars

    # `make setup` runs it in a new process (a session of its own, started and stopped); in a
    # process that has a session it must not stop that one
    assert resolve_delta_jars() == delta_coordinates()
    assert spark.range(3).count() == 3
    assert main(["resolve-delta"]) == 0 and capsys.readouterr().out.strip() == delta_coordinates()
    assert spark.range(2).count() == 2
    assert main(["fetch-everything"]) == 2
    assert "fetch-local-fs|resolve-delta" in capsys.readouterr().err
