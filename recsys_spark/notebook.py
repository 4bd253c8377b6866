"""Plumbing shared by the notebooks in ``notebooks/``: parameters, session, config, printing.

A notebook parameter ``name`` is read from, in order:

1. the Databricks widget ``name`` (created with the default when running on Databricks),
2. the environment variable ``RECSYS_<NAME>`` (local runs, tests, jobs),
3. the notebook's default.

Common parameters (see :func:`setup`): ``conf`` (overlay YAML, e.g. ``conf/databricks.yaml``),
``warehouse`` (overrides ``storage.warehouse``), ``set`` (``;``-separated ``key=value`` config
overrides), ``week`` (a Monday; default: the latest week in ``discover_weekly``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .config import Config, load_config
from .tables import Tables
from .weeks import current_week, require_monday

log = logging.getLogger(__name__)


def _dbutils(spark: Optional[SparkSession]):
    """Databricks ``dbutils`` when running there, else None."""
    if spark is None:
        return None
    try:
        from pyspark.dbutils import DBUtils  # only on Databricks runtimes
    except ImportError:
        return None
    try:
        return DBUtils(spark)
    except Exception:  # noqa: BLE001
        return None


def param(name: str, default: str = "", spark: Optional[SparkSession] = None) -> str:
    """The value of notebook parameter ``name`` (widget, then ``RECSYS_<NAME>``, then default)."""
    dbu = _dbutils(spark or SparkSession.getActiveSession())
    if dbu is not None:
        try:
            dbu.widgets.text(name, default)
            value = dbu.widgets.get(name)
            if value != "":
                return value
        except Exception:  # noqa: BLE001 - e.g. widgets unavailable in a job context
            pass
    return os.environ.get(f"RECSYS_{name.upper()}", default)


@dataclass
class NotebookContext:
    spark: SparkSession
    cfg: Config
    tables: Tables
    week: dt.date


def latest_week(tables: Tables) -> Optional[dt.date]:
    """The newest ``week_start`` in ``discover_weekly`` (one aggregate row), or None."""
    row = tables.read("discover_weekly").agg(F.max("week_start").alias("w")).first()
    return row["w"] if row else None


def setup(default_conf: str = "") -> NotebookContext:
    """Config, session (the active one on Databricks), tables and week from the parameters."""
    from .spark import spark_from_config

    logging.basicConfig(level=logging.WARNING)
    overrides = [s.strip() for s in param("set", "").split(";") if s.strip()]
    warehouse = param("warehouse", "")
    if warehouse:
        overrides.append(f"storage.warehouse={warehouse}")
    cfg = load_config(param("conf", default_conf) or None, overrides=overrides)
    spark = spark_from_config(cfg)
    tables = Tables.from_config(spark, cfg.storage)
    week_text = param("week", "")
    week = require_monday(week_text) if week_text else (latest_week(tables) or current_week())
    print(f"recsys-spark notebook: env={cfg.env} week={week} tables="
          f"{tables.warehouse if tables.mode == 'path' else tables.qualified('runs').rsplit('.', 1)[0]}")
    return NotebookContext(spark, cfg, tables, week)


def section(title: str) -> None:
    """Print a section header (the notebook tests look for these)."""
    print(f"\n=== {title} ===\n")


def _display():
    """Databricks' (or Jupyter's) ``display`` of the calling notebook, or None."""
    import builtins
    import sys

    fn = getattr(builtins, "display", None)
    if fn is None:
        main = sys.modules.get("__main__")
        fn = getattr(main, "display", None)
    if fn is None:
        try:  # Databricks notebooks put display into the IPython user namespace
            from IPython import get_ipython

            ip = get_ipython()
            fn = ip.user_ns.get("display") if ip is not None else None
        except ImportError:
            fn = None
    return fn if callable(fn) and getattr(fn, "__module__", "").startswith(("dbruntime", "databricks")) else None


def show(df: DataFrame, n: int = 30, truncate: int = 60) -> None:
    """``display(df.limit(n))`` on Databricks (sortable table, charts); else print the first ``n`` rows."""
    disp = _display()
    if disp is not None:
        disp(df.limit(n))
    else:
        df.show(n, truncate=truncate)
