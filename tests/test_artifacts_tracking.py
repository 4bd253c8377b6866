"""Optional MLflow tracking of a weekly run (recsys_spark.tracking) with a local file store."""

import datetime as dt
import logging
import sys

import pytest

from recsys_spark.config import Config, load_config
from recsys_spark.runlog import StageRecord
from recsys_spark.tracking import log_weekly_run, run_metrics

W = dt.date(2026, 11, 23)
T0 = dt.datetime(2026, 11, 30, 6, 0)


def _records():
    return [
        StageRecord("train.din", T0, rows_in=400, rows_out=400, counts={"auc": 0.7, "logloss": float("nan")},
                    status="succeeded", seconds=1.5),
        StageRecord("recall.prompt", T0, skipped="disabled in config", status="skipped", seconds=0.0),
        StageRecord("run", T0, rows_out=3600, counts={"users": 120.0}, status="succeeded", seconds=42.0),
    ]


def test_tracking_is_off_by_default_and_outside_the_fingerprint(tmp_path):
    cfg = load_config()
    assert cfg.tracking.mlflow_uri == "" and cfg.tracking.experiment == "recsys-spark-weekly"
    assert log_weekly_run(cfg, "weekly-x", W, _records(), str(tmp_path)) is None
    assert list(tmp_path.iterdir()) == []
    on = cfg.replace(**{"tracking.mlflow_uri": f"file://{tmp_path}/mlruns"})
    assert on.fingerprint() == cfg.fingerprint()      # tracking does not shape results: resume unaffected


def test_metrics_keep_finite_numbers_per_stage():
    assert run_metrics(_records()) == {
        "train.din.seconds": 1.5, "train.din.rows_in": 400.0, "train.din.rows_out": 400.0, "train.din.auc": 0.7,
        "recall.prompt.seconds": 0.0, "run.seconds": 42.0, "run.rows_out": 3600.0, "run.users": 120.0}


def test_weekly_run_logged_to_a_file_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3 keeps the file store behind a flag
    uri = f"file://{tmp_path}/mlruns"
    cfg = Config().replace(**{"tracking.mlflow_uri": uri, "tracking.experiment": "dw-test", "din.epochs": 3})
    models = tmp_path / "models" / "week=2026-11-23"
    (models / "din").mkdir(parents=True)
    (models / "din" / "din_config.json").write_text("{}")
    mid = log_weekly_run(cfg, "weekly-2026-11-23-abc", W, _records(), f"file://{models}")
    assert mid is not None
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(mid)
    assert run.info.status == "FINISHED" and run.info.run_name == "weekly-2026-11-23-abc"
    assert client.get_experiment(run.info.experiment_id).name == "dw-test"
    p = run.data.params
    assert p["din.epochs"] == "3" and p["week"] == "2026-11-23" and p["fingerprint"] == cfg.fingerprint()
    assert "spark.master" not in p and "tracking.mlflow_uri" not in p
    assert run.data.metrics == run_metrics(_records())
    t = run.data.tags
    assert t["stage.train.din"] == "succeeded" and t["stage.recall.prompt"] == "skipped: disabled in config"
    assert t["recsys.model_dir"] == f"file://{models}"
    assert [a.path for a in client.list_artifacts(mid, "models/din")] == ["models/din/din_config.json"]
    assert mlflow.active_run() is None   # the client API leaves no global run behind


def test_tracking_problems_never_fail_the_run(tmp_path, monkeypatch, caplog):
    cfg = Config().replace(**{"tracking.mlflow_uri": "nosuchscheme://tracking"})
    with caplog.at_level(logging.WARNING, logger="recsys_spark.tracking"):
        assert log_weekly_run(cfg, "weekly-x", W, _records()) is None
    assert "nosuchscheme://tracking" in caplog.text and "unaffected" in caplog.text
    caplog.clear()
    monkeypatch.setitem(sys.modules, "mlflow", None)             # mlflow not installed
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    monkeypatch.setitem(sys.modules, "mlflow.entities", None)
    with caplog.at_level(logging.WARNING, logger="recsys_spark.tracking"):
        assert log_weekly_run(cfg, "weekly-x", W, _records()) is None
    assert "mlflow is not installed" in caplog.text
