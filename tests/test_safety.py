"""Path containment, identifiers, secrets in conf, pickle refusal (no Spark)."""

import os
from pathlib import Path

import pytest

from recsys_spark.config import CONF_DIR, REPO_ROOT
from recsys_spark.safety import (UnsafeValueError, assert_no_plaintext_secrets, assert_not_pickle, check_conf_file,
                                 find_plaintext_secrets, is_secret_key, safe_path, validate_identifier,
                                 validate_table_name)


def test_safe_path_local(tmp_path):
    root = tmp_path / "wh"
    (root / "runs").mkdir(parents=True)
    r = os.path.realpath(root)
    assert safe_path(str(root), "runs") == os.path.join(r, "runs")
    assert safe_path(str(root), "a/../discover_weekly") == os.path.join(r, "discover_weekly")
    assert safe_path(str(root), os.path.join(r, "tracks")) == os.path.join(r, "tracks")
    assert safe_path(str(root), ".") == r
    for bad in ["../outside", "runs/../../x", "/etc/passwd", str(tmp_path / "wh2" / "x"), str(tmp_path)]:
        with pytest.raises(UnsafeValueError):
            safe_path(str(root), bad)
    for bad in ["a`b", "x\x00y", "a\nb"]:
        with pytest.raises(UnsafeValueError):
            safe_path(str(root), bad)


def test_safe_path_symlink_escape(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret", root / "link")
    with pytest.raises(UnsafeValueError, match="outside"):
        safe_path(str(root), "link/model.pt")


def test_safe_path_uris():
    root = "s3a://bucket/recsys/wh"
    assert safe_path(root, "discover_weekly") == "s3a://bucket/recsys/wh/discover_weekly"
    assert safe_path(root, "s3a://bucket/recsys/wh/runs") == "s3a://bucket/recsys/wh/runs"
    assert safe_path("dbfs:/mnt/wh", "runs") == "dbfs:/mnt/wh/runs"
    for bad in ["s3a://bucket/recsys/other", "s3a://evil/recsys/wh/x", "s3://bucket/recsys/wh/x",
                "s3a://bucket/recsys/wh/../x", "../x", "/local/abs", "s3a://bucket/recsys/wh2",
                "s3a://bucket/recsys/wh/x?versionId=1"]:
        with pytest.raises(UnsafeValueError):
            safe_path(root, bad)
    with pytest.raises(UnsafeValueError):
        safe_path("/local/wh", "s3a://bucket/x")


def test_identifiers():
    for ok in ["runs", "discover_weekly", "_tmp1", "A" * 128]:
        assert validate_identifier(ok) == ok
    for bad in ["", "1abc", "x; DROP TABLE runs", "a.b", "a`b", "tracks--", "naïve", "A" * 129, None, 3]:
        with pytest.raises(UnsafeValueError):
            validate_identifier(bad)
    assert validate_table_name("main.recsys.runs") == "main.recsys.runs"
    for bad in ["a.b.c.d", "main..runs", "main.recsys.runs; --", ""]:
        with pytest.raises(UnsafeValueError):
            validate_table_name(bad)


def test_secret_key_names():
    for k in ["password", "db_password", "sas_token", "spark.hadoop.fs.s3a.secret.key", "apiKey", "api_key",
              "client_secret", "access.key", "credentials", "PASSWORD", "key", "fs.azure.account.key.acct.dfs.core.windows.net",
              "private-key", "accessKey"]:
        assert is_secret_key(k), k
    for k in ["tokenizer_path", "keywords", "monkey", "checkpoint_path", "trust_checkpoint", "partition_by",
              "spark.executor.resource.gpu.discoveryScript", "task_key", "job_cluster_key", "partition_key",
              "keys", "auth_type"]:
        assert not is_secret_key(k), k


def test_plaintext_secrets_found_and_references_allowed():
    conf = {
        "storage": {"warehouse": "${ENV:RECSYS_WAREHOUSE}", "password": "hunter2", "token": "${ENV:TOKEN}"},
        "spark": {"extra": {"spark.hadoop.fs.s3a.secret.key": "abc123", "spark.hadoop.fs.s3a.access.key": "${ENV:AK}",
                            "fs.azure.sas.token": "{{secrets/recsys/sas}}", "note": "AKIAIOSFODNN7EXAMPLE"}},
        "embeddings": {"tokenizer_path": "/models/roberta", "api_key": ""},
        "hosts": [{"name": "a", "api_key": 1234, "task_key": "ingest"}],
        "flags": {"key": True},
    }
    assert sorted(find_plaintext_secrets(conf)) == sorted([
        "storage.password: secret-like key holds a plaintext value (use ${ENV:NAME})",
        "spark.extra.spark.hadoop.fs.s3a.secret.key: secret-like key holds a plaintext value (use ${ENV:NAME})",
        "spark.extra.note: value looks like a aws access key id",
        "hosts[0].api_key: secret-like key holds a plaintext value (use ${ENV:NAME})",
    ])


def test_repo_conf_and_bundle_have_no_plaintext_secrets(tmp_path):
    files = sorted(Path(CONF_DIR).glob("*.yaml"))
    assert {f.name for f in files} >= {"base.yaml", "local.yaml", "cluster.yaml", "databricks.yaml"}
    bundle = [p for p in (REPO_ROOT / "databricks.yml", *sorted((REPO_ROOT / "resources").glob("*.yml"))) if p.exists()]
    assert_no_plaintext_secrets(files + bundle)
    leaky = tmp_path / "leaky.yaml"
    leaky.write_text("storage:\n  warehouse: /wh\nspark:\n  extra:\n    spark.hadoop.fs.s3a.secret.key: s3cr3t\n")
    assert check_conf_file(leaky) == [
        "spark.extra.spark.hadoop.fs.s3a.secret.key: secret-like key holds a plaintext value (use ${ENV:NAME})"]
    with pytest.raises(UnsafeValueError, match="s3cr3t|secret.key"):
        assert_no_plaintext_secrets([leaky])


def test_pickles_refused():
    assert assert_not_pickle("/models/din/state.pt") == "/models/din/state.pt"
    for bad in ["/data/model.pkl", "x.PICKLE", "/m/est.joblib"]:
        with pytest.raises(UnsafeValueError):
            assert_not_pickle(bad)


def test_model_dir_from_config_stays_under_the_model_root(tmp_path):
    import datetime as dt

    from recsys_spark.config import load_config
    from recsys_spark.pipeline import model_dir

    root = tmp_path / "models"
    root.mkdir()
    cfg = load_config(overrides=[f"storage.model_dir={root}"])
    week = dt.date(2026, 11, 23)
    assert model_dir(cfg, week) == os.path.join(os.path.realpath(root), "week=2026-11-23")
    (tmp_path / "elsewhere").mkdir()
    (root / "week=2026-11-30").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeValueError, match="outside the allowed root"):
        model_dir(cfg, dt.date(2026, 11, 30))
    s3 = load_config(overrides=["storage.model_dir=s3a://bucket/models"])
    assert model_dir(s3, week) == "s3a://bucket/models/week=2026-11-23"
