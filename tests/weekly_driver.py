"""Test-side driver of a weekly run that kills itself at a chosen point (fault-injection tests).

    python tests/weekly_driver.py --kill-after recall.als --week 2026-11-23 --set k=v ...
    python tests/weekly_driver.py --kill-during-commit --week 2026-11-23 --set k=v ...

It is ``jobs/weekly.py`` plus :class:`recsys_spark.pipeline.RunHooks` that SIGKILL the process
after a stage, or from a task of the final ``discover_weekly`` write job (while Delta writes the
files, before the commit can land). Production code knows nothing of it.
"""

import logging
import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from recsys_spark.cli import base_parser, parse  # noqa: E402

log = logging.getLogger("weekly_driver")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_hooks(kill_after=None, during_commit=False):
    from recsys_spark.pipeline import RunHooks

    def after_stage(name):
        if name == kill_after:
            log.error("fault injection: SIGKILL after stage %s", name)
            _die()

    def wrap_commit(df):
        """Kill the driver from inside the write job: Delta has started writing the week's files,
        and the commit (which only follows a finished job) can never land. No timing involved."""
        if not during_commit:
            return df
        from pyspark.sql import functions as F

        driver = os.getpid()
        log.error("fault injection: SIGKILL from a task of the discover_weekly write job")

        def die(position):
            os.kill(driver, signal.SIGKILL)
            return position

        return df.withColumn("position", F.udf(die, "int")("position"))

    return RunHooks(after_stage=after_stage, wrap_commit=wrap_commit)


def main(argv=None) -> int:
    from recsys_spark.pipeline import run_weekly
    from recsys_spark.spark import spark_from_config

    parser = base_parser("weekly run with fault injection (tests only)")
    parser.add_argument("--kill-after", default=None, help="SIGKILL after this stage")
    parser.add_argument("--kill-during-commit", action="store_true", help="SIGKILL during the final commit")
    args, cfg = parse(parser, argv)
    spark = spark_from_config(cfg)
    run_weekly(spark, cfg, args.week, hooks=kill_hooks(args.kill_after, args.kill_during_commit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
