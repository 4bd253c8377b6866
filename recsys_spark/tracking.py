"""Optional MLflow tracking of a weekly run: parameters, per-stage metrics, model files.

Off unless ``tracking.mlflow_uri`` is set (conf or ``--set tracking.mlflow_uri=...``) and
``mlflow`` is importable (``pip install "recsys-spark[tracking]"``: mlflow-skinny). One MLflow run
per weekly run, in experiment ``tracking.experiment``, named by the weekly run id:

- params: every configuration key that shapes results (dotted, e.g. ``din.epochs``; ``spark``,
  ``env`` and ``tracking`` left out, as in :meth:`recsys_spark.config.Config.fingerprint`), plus
  ``week``, ``run_id`` and ``fingerprint``;
- metrics: per stage ``<stage>.seconds``, ``<stage>.rows_in``, ``<stage>.rows_out`` and every count
  the stage reported (``train.din.auc``, ``run.users``, ...);
- tags: ``recsys.week``, ``recsys.run_id``, ``recsys.model_dir`` and ``stage.<name>`` (the stage's
  status, or ``skipped: <why>``);
- artifacts (``tracking.log_models``): the week's model folder (DIN, creator pooling, ALS) under
  ``models/`` when it is a local path or ``file:`` URI; for other URIs the tag
  ``recsys.model_dir`` says where the models are (MLflow would have to download them first).

Tracking never fails the weekly run: a missing mlflow or an unreachable server is logged as a
warning and the run goes on (its results are already committed when this runs).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import time
from typing import Any, Dict, Iterable, List, Optional

log = logging.getLogger(__name__)

_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


def _flatten(data: Any, prefix: str = "") -> Dict[str, str]:
    out: Dict[str, str] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = str(data)
    return out


def run_params(cfg, run_id: str, week: dt.date) -> Dict[str, str]:
    """The parameters logged for a run (see the module doc)."""
    data = {k: v for k, v in cfg.to_dict().items() if k not in ("spark", "env", "tracking")}
    params = {_BAD_KEY.sub("_", k): v[:6000] for k, v in _flatten(data).items()}
    params.update(week=week.isoformat(), run_id=run_id, fingerprint=cfg.fingerprint())
    return params


def run_metrics(records: Iterable[Any]) -> Dict[str, float]:
    """``{<stage>.<name>: value}`` from the run log's stage records (finite numbers only)."""
    out: Dict[str, float] = {}
    for r in records:
        values: Dict[str, Any] = {"seconds": r.seconds, "rows_in": r.rows_in, "rows_out": r.rows_out}
        values.update(r.counts or {})
        for name, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            out[_BAD_KEY.sub("_", f"{r.stage}.{name}")] = float(v)
    return out


def _chunks(items: List[Any], n: int):
    for o in range(0, len(items), n):
        yield items[o:o + n]


def log_weekly_run(cfg, run_id: str, week: dt.date, records: Iterable[Any], model_dir: Optional[str] = None,
                   status: str = "FINISHED") -> Optional[str]:
    """Log a weekly run to MLflow when ``cfg.tracking.mlflow_uri`` is set; returns the MLflow run id
    (``None`` when tracking is off, mlflow is missing or logging failed: never raises).

    Parameters
    ----------
    cfg : Config
    run_id, week
        The weekly run's id and week.
    records : iterable of :class:`recsys_spark.runlog.StageRecord`
        The run log's stage records.
    model_dir : str, optional
        The week's model folder (``<storage.model_dir>/week=<W>``).
    status : str
        MLflow run status (``FINISHED`` or ``FAILED``).
    """
    tc = cfg.tracking
    if not tc.mlflow_uri:
        return None
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        log.warning("tracking.mlflow_uri is set but mlflow is not installed (pip install "
                    "'recsys-spark[tracking]'): run %s is not tracked", run_id)
        return None
    records = list(records)
    try:
        client = MlflowClient(tracking_uri=tc.mlflow_uri)
        exp = client.get_experiment_by_name(tc.experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(tc.experiment)
        tags = {"recsys.week": week.isoformat(), "recsys.run_id": run_id, "recsys.model_dir": model_dir or ""}
        for r in records:
            tags[_BAD_KEY.sub("_", f"stage.{r.stage}")] = (f"skipped: {r.skipped}"[:5000] if r.skipped
                                                           else str(r.status))
        run = client.create_run(exp_id, run_name=run_id, tags={"mlflow.runName": run_id})
        mid = run.info.run_id
        now = int(time.time() * 1000)
        params = [Param(k, v) for k, v in sorted(run_params(cfg, run_id, week).items())]
        metrics = [Metric(k, v, now, 0) for k, v in sorted(run_metrics(records).items())]
        tag_list = [RunTag(k, v) for k, v in sorted(tags.items())]
        for chunk in _chunks(params, 100):  # MLflow's batch limits: 100 params, 1000 entities
            client.log_batch(mid, params=chunk)
        for chunk in _chunks(metrics, 900):
            client.log_batch(mid, metrics=chunk)
        client.log_batch(mid, tags=tag_list)
        if tc.log_models and model_dir:
            from .artifacts import is_local, local_path

            if is_local(model_dir) and os.path.isdir(local_path(model_dir)):
                client.log_artifacts(mid, local_path(model_dir), "models")
            elif not is_local(model_dir):
                log.info("MLflow: models of run %s stay at %s (not a local folder; not uploaded)", run_id, model_dir)
        client.set_terminated(mid, status)
        log.info("MLflow: weekly run %s logged as run %s in experiment %s (%s)", run_id, mid, tc.experiment,
                 tc.mlflow_uri)
        return mid
    except Exception as exc:  # tracking never fails the weekly run
        log.warning("MLflow tracking of run %s at %s failed (%s: %s); the weekly run is unaffected",
                    run_id, tc.mlflow_uri, type(exc).__name__, exc)
        return None
