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
    for name in ("RECSYS_WAREHOUSE", "RECSYS_MODEL_DIR", "RECSYS_RAW_DIR", "RECSYS_CLAP_CHECKPOINT", "RECSYS_CATALOG"):
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
