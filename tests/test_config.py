import pytest

from recsys_spark.config import ConfigError, from_dict, load_config


def test_base_and_overlay_merge(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("env: x\nrerank:\n  creator_cap: 3\n")
    cfg = load_config(str(overlay))
    assert cfg.env == "x"
    assert cfg.rerank.creator_cap == 3
    assert cfg.rerank.playlist_size == 30  # from base.yaml
    assert cfg.history.last_n == 50


def test_overrides_are_typed():
    cfg = load_config(overrides=["recall.item_cf.k=50", "quality.threshold=0.25", "rerank.diversity_enabled=false",
                                 "din.mlp_hidden=[16, 8]"])
    assert cfg.recall.item_cf.k == 50
    assert cfg.quality.threshold == 0.25
    assert cfg.rerank.diversity_enabled is False
    assert cfg.din.mlp_hidden == [16, 8]


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'rerank.creatorcap'"):
        load_config(overrides=["rerank.creatorcap=3"])
    with pytest.raises(ConfigError, match=r"'nosuch'"):
        from_dict({"nosuch": {"a": 1}})


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"'rerank.creator_cap' must be an integer"):
        load_config(overrides=["rerank.creator_cap=two"])
    with pytest.raises(ConfigError, match=r"'quality.enabled' must be a boolean"):
        from_dict({"quality": {"enabled": "yes"}})


def test_environment_references(monkeypatch, tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("storage:\n  warehouse: ${ENV:RECSYS_TEST_WH}\n")
    with pytest.raises(ConfigError, match="RECSYS_TEST_WH"):
        load_config(str(overlay))
    monkeypatch.setenv("RECSYS_TEST_WH", "/data/wh")
    assert load_config(str(overlay)).storage.warehouse == "/data/wh"


def test_shipped_overlays_load(monkeypatch):
    for name in ("RECSYS_WAREHOUSE", "RECSYS_MODEL_DIR", "RECSYS_RAW_DIR", "RECSYS_CLAP_CHECKPOINT", "RECSYS_CATALOG",
                 "RECSYS_SCHEMA"):
        monkeypatch.setenv(name, "x")
    assert load_config("conf/cluster.yaml").spark.shuffle_partitions == 800
    assert load_config("conf/databricks.yaml").storage.mode == "catalog"
    assert load_config("conf/local.yaml").env == "local"


def test_fingerprint_changes_with_config():
    assert load_config().fingerprint() == load_config().fingerprint()
    assert load_config().fingerprint() != load_config(overrides=["rerank.creator_cap=5"]).fingerprint()


def test_plaintext_secrets_in_conf_are_refused_and_env_references_pass(monkeypatch, tmp_path):
    leaky = tmp_path / "leaky.yaml"
    leaky.write_text("spark:\n  extra:\n    spark.hadoop.fs.s3a.secret.key: hunter2\nstorage:\n  password: hunter2\n")
    with pytest.raises(ConfigError, match=r"plaintext secrets") as info:
        load_config(str(leaky))
    msg = str(info.value)
    assert f"{leaky}: spark.extra.spark.hadoop.fs.s3a.secret.key" in msg and f"{leaky}: storage.password" in msg
    assert "hunter2" not in msg  # the secret itself is not echoed into logs
    with pytest.raises(ConfigError, match=r"override spark.extra.spark.hadoop.fs.azure.account.key.acct"):
        load_config(overrides=["spark.extra={'spark.hadoop.fs.azure.account.key.acct': 'c2VjcmV0'}"])
    with pytest.raises(ConfigError, match="aws access key id"):
        load_config(overrides=["storage.raw_dir=s3a://AKIAIOSFODNN7EXAMPLE@bucket/raw"])
    ok = tmp_path / "ok.yaml"
    ok.write_text("spark:\n  extra:\n    spark.hadoop.fs.s3a.secret.key: ${ENV:RECSYS_TEST_S3_SECRET}\n")
    monkeypatch.setenv("RECSYS_TEST_S3_SECRET", "hunter2")
    assert load_config(str(ok)).spark.extra["spark.hadoop.fs.s3a.secret.key"] == "hunter2"


# --- value rules (pydantic): enums and ranges refused at load, naming the key, the value and what is allowed


@pytest.mark.parametrize("override, message", [
    ("fusion.method=minmx", r"'fusion.method' = 'minmx' is not allowed: must be one of 'rank' or 'minmax'"),
    ("rerank.creator_cap=-3", r"'rerank.creator_cap' = -3 is not allowed: must be >= 1"),
    ("quality.threshold=7", r"'quality.threshold' = 7.0 is not allowed: must be <= 1"),
    ("din.device=gpu", r"'din.device' = 'gpu' is not allowed: must be one of 'auto', 'cpu' or 'cuda'"),
    ("rerank.playlist_size=0", r"'rerank.playlist_size' = 0 is not allowed: must be >= 1"),
    ("rerank.playlist_size=31", r"'rerank.playlist_size' = 31 is not allowed: must be <= 30"),
    ("embeddings.device=tpu", r"'embeddings.device' = 'tpu'.*'auto', 'cpu' or 'cuda'"),
    ("recall.item_cf.similarity=jaccard", r"'recall.item_cf.similarity' = 'jaccard'.*'cosine', 'bm25' or 'tfidf'"),
    ("recall.als.topk=annoy", r"'recall.als.topk' = 'annoy'.*'faiss' or 'mllib'"),
    ("generator.bad_row_rate=1.5", r"'generator.bad_row_rate' = 1.5 is not allowed: must be <= 1"),
    ("recall.item_cf.k=0", r"'recall.item_cf.k' = 0 is not allowed: must be >= 1"),
    ("din.lr=0", r"'din.lr' = 0.0 is not allowed: must be > 0"),
    ("din.mlp_hidden=[16, 0]", r"'din.mlp_hidden.1' = 0 is not allowed: must be >= 1"),
    ("fusion.channel_weights={als: -1}", r"'fusion.channel_weights.als' = -1.0 is not allowed: must be >= 0"),
    ("storage.mode=lake", r"'storage.mode' = 'lake'.*'path' or 'catalog'"),
    ("spark.driver_memory=lots", r"'spark.driver_memory' = 'lots' is not allowed"),
    ("pipeline.timezone=Mars/Base", r"'pipeline.timezone' = 'Mars/Base' is not allowed: must be an IANA time zone"),
    ("embeddings.audio_precision=fp16", r"'embeddings.audio_precision' = 'fp16'.*'auto', 'fp32' or 'bf16'"),
    ("embeddings.stft=dct", r"'embeddings.stft' = 'dct'.*'fft' or 'conv'"),
    ("embeddings.threads_per_task=-2", r"'embeddings.threads_per_task' = -2 is not allowed: must be >= -1"),
])
def test_values_out_of_their_enum_or_range_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_the_bounds_themselves_are_allowed():
    cfg = load_config(overrides=["rerank.creator_cap=1", "quality.threshold=1", "quality.threshold=0",
                                 "rerank.playlist_size=30", "fusion.method=minmax", "din.device=cuda",
                                 "generator.audio_tracks=0", "din.prerank_top_n=0"])
    assert (cfg.rerank.creator_cap, cfg.quality.threshold, cfg.rerank.playlist_size) == (1, 0.0, 30)
    assert (cfg.fusion.method, cfg.din.device, cfg.din.prerank_top_n) == ("minmax", "cuda", 0)


def test_catalog_mode_needs_a_catalog(monkeypatch):
    for name in ("RECSYS_SCHEMA", "RECSYS_MODEL_DIR", "RECSYS_RAW_DIR", "RECSYS_CLAP_CHECKPOINT"):
        monkeypatch.setenv(name, "recsys" if name == "RECSYS_SCHEMA" else "/Volumes/x")
    with pytest.raises(ConfigError, match=r"storage.catalog must be a catalog identifier.*got ''"):
        load_config(overrides=["storage.mode=catalog"])
    monkeypatch.setenv("RECSYS_CATALOG", "main; DROP")
    with pytest.raises(ConfigError, match=r"catalog identifier"):
        load_config("databricks")
    monkeypatch.setenv("RECSYS_CATALOG", "main")
    assert load_config("databricks").storage.catalog == "main"


def test_values_from_the_environment_are_checked_too(monkeypatch, tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("rerank:\n  creator_cap: ${ENV:RECSYS_TEST_CAP}\n")
    monkeypatch.setenv("RECSYS_TEST_CAP", "0")
    with pytest.raises(ConfigError, match=r"'rerank.creator_cap' = 0 is not allowed"):
        load_config(str(overlay))


def test_sections_stay_frozen_and_direct_construction_is_checked():
    from dataclasses import FrozenInstanceError

    from recsys_spark.config import RerankConf

    cfg = load_config()
    with pytest.raises(FrozenInstanceError):
        cfg.rerank.creator_cap = 5
    with pytest.raises(Exception, match="creator_cap"):
        RerankConf(creator_cap=-1)
    assert cfg.replace(**{"rerank.creator_cap": 4}).rerank.creator_cap == 4
    with pytest.raises(ConfigError, match="rerank.creator_cap"):
        cfg.replace(**{"rerank.creator_cap": -4})


@pytest.mark.slow  # spawns a process
def test_a_bad_value_stops_the_job_before_spark_starts(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "recsys_spark.cli", "weekly", "--set", "fusion.method=minmx"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 2
    assert "config error: config key 'fusion.method' = 'minmx' is not allowed" in res.stderr
    assert "SparkSession" not in res.stdout + res.stderr and "Ivy" not in res.stdout + res.stderr


@pytest.mark.slow  # spawns a process
def test_fingerprint_is_the_same_in_another_process():
    import subprocess
    import sys

    code = "from recsys_spark.config import load_config; print(load_config().fingerprint())"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"}).stdout.strip()
            for seed in (1, 2)}
    assert runs == {load_config().fingerprint()}


def test_relative_storage_paths_resolve_against_root_never_the_install_folder(tmp_path, monkeypatch):
    from recsys_spark.config import resolve_path

    monkeypatch.delenv("RECSYS_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_path("warehouse") == str(tmp_path / "warehouse")
    assert resolve_path("warehouse", root="/srv/recsys") == "/srv/recsys/warehouse"
    monkeypatch.setenv("RECSYS_ROOT", "/data/dw")
    assert resolve_path("artifacts/models") == "/data/dw/artifacts/models"
    for unchanged in ("/Volumes/main/recsys/models", "s3a://bucket/wh", "abfss://c@a.dfs.core.windows.net/w",
                      "dbfs:/mnt/wh"):
        assert resolve_path(unchanged) == unchanged
    assert resolve_path("file:///tmp/w%20h") == resolve_path("file:/tmp/w%20h") == "/tmp/w h"


def test_conf_by_name_comes_from_the_package(tmp_path, monkeypatch):
    from recsys_spark.config import CONF_DIR, conf_file

    monkeypatch.chdir(tmp_path)  # no conf/ folder here
    assert conf_file(None) == CONF_DIR / "local.yaml"
    assert conf_file("cluster") == conf_file("cluster.yaml") == conf_file("conf/cluster.yaml") == CONF_DIR / "cluster.yaml"
    (tmp_path / "mine.yaml").write_text("env: mine\n")
    assert load_config("mine.yaml").env == "mine"
    with pytest.raises(ConfigError, match=r"config file not found: other/cluster.yaml"):
        conf_file("other/cluster.yaml")
