"""The ``recsys`` command line: one entry point, one subcommand per job.

    recsys generate    [--week W] [--out DIR] [--no-ingest] [--overwrite]
    recsys ingest      --raw DIR | --entity NAME --path FILE
    recsys weekly      [--week W] [--force] [--if-needed]
    recsys show        [--week W] [--user ID]
    recsys evaluate    --format movielens|hetrec|csv|platform ...
    recsys maintenance [--week W|current] [--tables a,b] [--retention-hours H] ...
    recsys last-run    [--week W] [--job weekly] [--history N]

Every subcommand takes ``--conf`` (a file, or the name of a conf file shipped with the package:
``local`` (default), ``cluster``, ``databricks``), ``--set key=value`` (repeatable), ``--root DIR``
(what relative storage paths resolve against; default: the working directory, never the install
folder) and ``--log-level``. ``jobs/*.py`` are thin wrappers around these functions, so
``spark-submit jobs/weekly.py ...`` and ``recsys weekly ...`` are the same job; with only the wheel
installed, ``spark-submit ... "$(recsys --submit-file)" weekly ...`` runs it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .config import ROOT_ENV, ConfigError, load_config, resolve_path
from .weeks import current_week, require_monday


def base_parser(description: str, week: bool = True, prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--conf", default=None,
                   help="config overlay: a file, or a packaged one by name (local, cluster, databricks); "
                        "default local. The packaged base.yaml always applies first")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set rerank.creator_cap=3 (repeatable)")
    p.add_argument("--root", default=None,
                   help=f"folder relative storage paths resolve against (default: ${ROOT_ENV} or the working "
                        "directory)")
    p.add_argument("--log-level", default="INFO")
    if week:
        p.add_argument("--week", default=None, help="Monday of the week (YYYY-MM-DD); default: this week's Monday")
    p.set_defaults(_parse_week=week)
    return p


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stdout, force=True)
    for noisy in ("py4j", "urllib3", "numba", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parse(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None):
    """Parse args and load the config; config errors exit with a clear one-line message.

    Runs before any SparkSession exists, so a bad value stops the job at once.
    """
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if getattr(args, "root", None):
        os.environ[ROOT_ENV] = os.path.abspath(args.root)
    try:
        cfg = load_config(args.conf, overrides=args.set)
    except ConfigError as exc:
        parser.exit(2, f"config error: {exc}\n")
    if getattr(args, "_parse_week", False):
        try:
            args.week = require_monday(args.week) if args.week else current_week()
        except ValueError as exc:
            parser.exit(2, f"--week: {exc}\n")
    return args, cfg


def _classic_or_exit(spark, job: str) -> None:
    from .spark import require_classic

    try:
        require_classic(spark, job)
    except RuntimeError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(2) from None


# --------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------


def build_generate_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = base_parser("Generate the synthetic platform (raw files) and ingest it", prog=prog)
    p.add_argument("--out", default=None, help="raw folder (default: storage.raw_dir/synthetic)")
    p.add_argument("--no-ingest", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    return p


def generate_main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    args, cfg = parse(build_generate_parser(prog), argv)
    from .data.generator import PlatformSpec, generate_platform
    from .data.ingest import Rules, ingest_all
    from .runlog import new_run_id
    from .spark import spark_from_config
    from .tables import Tables

    spark = spark_from_config(cfg)
    _classic_or_exit(spark, "generate")
    raw = resolve_path(args.out or os.path.join(cfg.storage.raw_dir, "synthetic"))
    counts = generate_platform(spark, raw, PlatformSpec.from_conf(cfg.generator), args.week, args.overwrite)
    print(f"synthetic platform at {raw}: {counts}")
    if not args.no_ingest:
        tables = Tables.from_config(spark, cfg.storage)
        reports = ingest_all(spark, tables, raw, Rules.from_conf(cfg.ingest), new_run_id("ingest", args.week))
        for r in reports.values():
            print(f"ingested {r.entity}: read={r.read} loaded={r.loaded} updated={r.updated} "
                  f"already_present={r.already_present} quarantined={r.quarantined} {r.reasons}")
    return 0


# --------------------------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------------------------


def build_ingest_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = base_parser("Ingest raw files (JSON lines / CSV / Parquet) into the Delta tables; bad rows to quarantine",
                    week=False, prog=prog)
    p.add_argument("--raw", help="folder holding tracks/, interactions/, user_prompts/")
    p.add_argument("--entity", choices=["tracks", "interactions", "user_prompts"])
    p.add_argument("--path", help="file or folder for --entity")
    return p


def ingest_main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """``recsys ingest``: arguments, input paths and the warehouse path are checked before Spark
    starts (a missing or unreadable input, or a warehouse path that is a file, exits 2 with one
    line); bad rows and bad files never fail the run, they go to quarantine with a reason."""
    parser = build_ingest_parser(prog)
    args, cfg = parse(parser, argv)
    from .data.ingest import Rules, ingest_plan, plan_ingest
    from .runlog import new_run_id
    from .spark import spark_from_config
    from .tables import Tables
    from .validation import InputError, check_warehouse_path

    try:
        plan = plan_ingest(resolve_path(args.raw) if args.raw else None, args.entity,
                           resolve_path(args.path) if args.path else None)
        if cfg.storage.mode == "path":
            check_warehouse_path(cfg.storage.warehouse)
        rules = Rules.from_conf(cfg.ingest)
    except (InputError, ValueError) as exc:
        parser.exit(2, f"ingest: {exc}\n")
    spark = spark_from_config(cfg)
    _classic_or_exit(spark, "ingest")
    tables = Tables.from_config(spark, cfg.storage)
    try:
        reports = ingest_plan(spark, tables, plan, rules, new_run_id("ingest", None))
    except InputError as exc:  # the source vanished or became unreadable after the check
        parser.exit(2, f"ingest: {exc}\n")
    for r in reports.values():
        print(f"{r.entity}: read={r.read} loaded={r.loaded} updated={r.updated} "
              f"already_present={r.already_present} duplicates={r.duplicates} quarantined={r.quarantined} "
              f"{r.reasons}")
        for f in r.files:
            if f.reason:
                print(f"  file quarantined: {f.path}: {f.reason} ({f.detail})")
    return 0


def _flag(text: str) -> bool:
    """``--force true|false|1|0|yes|no|''`` (job parameters arrive as strings; '' is false)."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("", "0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# --------------------------------------------------------------------------------------------
# weekly
# --------------------------------------------------------------------------------------------


def build_weekly_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = base_parser("Build week W's Discover Weekly into the discover_weekly Delta table", prog=prog)
    p.add_argument("--force", nargs="?", const=True, default=False, type=_flag, metavar="BOOL",
                   help="rerun stages an earlier run of W completed (a value, e.g. a job parameter: true/false)")
    p.add_argument("--if-needed", action="store_true", help="exit at once if week W is already complete")
    p.add_argument("--warm-up", nargs="?", const=True, default=False, type=_flag, metavar="BOOL",
                   help="first run the recall stages of the earlier weeks W reads that have no recall candidates "
                        "(the DIN's label weeks: its exposure negatives), as the Mondays before W would have; for a "
                        "platform's first weeks (weeks that have candidates are left as they are)")
    return p


def _week_done(spark, cfg, week) -> bool:
    from .pipeline import week_is_complete
    from .tables import Tables

    return week_is_complete(Tables.from_config(spark, cfg.storage), week)


def weekly_main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """``recsys weekly`` (also the console script ``recsys-weekly`` and ``jobs/weekly.py``)."""
    args, cfg = parse(build_weekly_parser(prog), argv)
    from .pipeline import run_weekly, warm_up
    from .spark import spark_from_config
    from .validation import InputError, check_warehouse_path

    if cfg.storage.mode == "path":
        try:
            check_warehouse_path(cfg.storage.warehouse)
        except InputError as exc:
            print(f"weekly: {exc}", file=sys.stderr)
            return 2
    spark = spark_from_config(cfg)
    _classic_or_exit(spark, "weekly")
    try:
        if args.warm_up and not (args.if_needed and not args.force and _week_done(spark, cfg, args.week)):
            for w in warm_up(spark, cfg, args.week):
                print(f"warm-up: recall stages of {w['week']} ({w['run_id']}, {w['seconds']} s)")
        result = run_weekly(spark, cfg, args.week, force=args.force, if_needed=args.if_needed)
    except InputError as exc:  # the week cannot be built from the data (e.g. far after the last event)
        print(f"weekly: {exc}", file=sys.stderr)
        return 2
    print(result.summary)
    if cfg.storage.mode == "catalog":  # persistent views next to the tables (Databricks SQL, dashboards)
        from .queries import create_views
        from .tables import Tables

        for ref in create_views(spark, Tables.from_config(spark, cfg.storage)):
            print(f"view {ref}")
    return 0


# --------------------------------------------------------------------------------------------
# show / last-run
# --------------------------------------------------------------------------------------------


def build_show_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = base_parser("Show a user's seeds and Discover Weekly (title, tags, creator, why)", prog=prog)
    p.add_argument("--user", default=None)
    return p


def show_main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    args, cfg = parse(build_show_parser(prog), argv)
    from .show import format_user_week, pick_user
    from .spark import spark_from_config
    from .tables import Tables

    spark = spark_from_config(cfg)
    tables = Tables.from_config(spark, cfg.storage)
    user = args.user or pick_user(tables, args.week)
    if user is None:
        print(f"no playlists for week {args.week}; run `recsys weekly` first")
        return 1
    print(format_user_week(tables, args.week, user))
    print("\nTables (Delta):")
    for name in ("discover_weekly", "candidates", "tracks", "interactions", "user_prompts", "quarantine", "runs"):
        if tables.exists(name):
            print(f"  {name:<16} {tables.path(name) if tables.mode == 'path' else tables.qualified(name)}")
    q = tables.read("quarantine")
    print("\nQuarantine by reason:")
    for r in q.groupBy("entity", "reason").count().orderBy("entity", "reason").collect():
        print(f"  {r['entity']:<13} {r['reason']:<24} {r['count']}")
    return 0


def build_last_run_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = base_parser("Summary of the last run from the runs table", week=False, prog=prog)
    p.add_argument("--week", default=None, help="Monday (YYYY-MM-DD); default: the latest run of any week")
    p.add_argument("--job", default="weekly", help="weekly | maintenance | ...")
    p.add_argument("--history", type=int, default=0, help="also list the last N runs")
    return p


def last_run_main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    parser = build_last_run_parser(prog)
    args, cfg = parse(parser, argv)
    try:
        week = require_monday(args.week) if args.week else None
    except ValueError as exc:
        parser.exit(2, f"--week: {exc}\n")
    from .queries import last_run_summary, runs_overview
    from .spark import spark_from_config
    from .tables import Tables

    spark = spark_from_config(cfg)
    tables = Tables.from_config(spark, cfg.storage)
    summary = last_run_summary(spark, tables, week=week, job=args.job)
    if summary is None:
        print(f"no {args.job} run recorded{f' for week {week}' if week else ''} in {tables.warehouse}")
        return 1
    print(summary.format())
    if args.history:
        runs_overview(spark, tables, job=args.job, limit=args.history).show(args.history, truncate=60)
    return 0 if summary.status == "succeeded" else 1


# --------------------------------------------------------------------------------------------
# maintenance
# --------------------------------------------------------------------------------------------


def build_maintenance_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = base_parser("OPTIMIZE / Z-ORDER and VACUUM the Delta tables", week=False, prog=prog)
    p.add_argument("--week", default=None,
                   help="Monday (YYYY-MM-DD), or 'current' / '' for this week's: only optimize that week's "
                        "partitions (default: all)")
    p.add_argument("--tables", default="", help="comma list of tables (default: every existing table)")
    p.add_argument("--retention-hours", type=float, default=None,
                   help="VACUUM retention (default 336 = the tables' 14-day retention property)")
    p.add_argument("--force-retention", action="store_true", help="allow a retention below 336 hours")
    p.add_argument("--no-optimize", action="store_true")
    p.add_argument("--no-vacuum", action="store_true")
    return p


def maintenance_main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    from .maintenance import DEFAULT_RETENTION_HOURS

    parser = build_maintenance_parser(prog)
    args, cfg = parse(parser, argv)
    try:
        # "current" (or an empty job parameter): this week's Monday; absent: every partition
        week = current_week() if args.week in ("current", "") else require_monday(args.week) if args.week else None
    except ValueError as exc:
        parser.exit(2, f"--week: {exc}\n")
    if args.retention_hours is not None and args.retention_hours < DEFAULT_RETENTION_HOURS \
            and not args.force_retention:
        parser.exit(2, f"--retention-hours {args.retention_hours:g} is below {DEFAULT_RETENTION_HOURS:g}: time travel "
                       f"and concurrent writers need those files; add --force-retention if you are sure\n")
    names = [t.strip() for t in args.tables.split(",") if t.strip()] or None
    from .maintenance import run_maintenance
    from .spark import spark_from_config
    from .tables import Tables

    spark = spark_from_config(cfg)
    tables = Tables.from_config(spark, cfg.storage)
    try:
        steps = run_maintenance(spark, tables, week=week, names=names, do_optimize=not args.no_optimize,
                                do_vacuum=not args.no_vacuum, retention_hours=args.retention_hours,
                                force_retention=args.force_retention, config_hash=cfg.fingerprint())
    except (ValueError, KeyError) as exc:
        parser.exit(2, f"maintenance: {exc}\n")
    for s in steps:
        extra = {k: v for k, v in s.items() if k not in ("table", "operation")}
        print(f"{s['operation']:<9} {s['table']:<18} {extra}")
    return 0


# --------------------------------------------------------------------------------------------
# evaluate (the job lives with the evaluation package)
# --------------------------------------------------------------------------------------------


def evaluate_main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """``recsys evaluate``: :func:`recsys_spark.evaluation.job.main` (imported only when used)."""
    from .evaluation import job

    if prog and "evaluate" not in os.path.basename(sys.argv[0]):
        sys.argv[0] = prog  # argparse's usage line reads `recsys evaluate`
    return job.main(list(argv) if argv is not None else None)


# --------------------------------------------------------------------------------------------
# recsys <command>
# --------------------------------------------------------------------------------------------

#: name -> (main, one-line help)
COMMANDS: Dict[str, Tuple[Callable[..., int], str]] = {
    "generate": (generate_main, "generate the synthetic platform's raw files and ingest them"),
    "ingest": (ingest_main, "ingest raw exports into the Delta tables (bad rows to quarantine)"),
    "weekly": (weekly_main, "build week W's Discover Weekly (resumable; --force, --if-needed)"),
    "show": (show_main, "print one user's Discover Weekly and where the tables are"),
    "evaluate": (evaluate_main, "offline evaluation: temporal split, metrics @K, peers, report"),
    "maintenance": (maintenance_main, "OPTIMIZE / Z-ORDER and VACUUM the Delta tables"),
    "last-run": (last_run_main, "what happened in the last run (from the runs table)"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="recsys",
        description="recsys-spark: a weekly Discover Weekly on Spark + Delta. "
                    "`recsys COMMAND --help` lists a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items())
               + "\n\nspark-submit [options] \"$(recsys --submit-file)\" COMMAND [args] runs a command on a cluster.",
    )
    p.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's options")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point ``recsys``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["--submit-file"]:  # the launcher file to give spark-submit (see recsys_spark/launch)
        from .launch import recsys_job

        print(os.path.abspath(recsys_job.__file__))
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    ns = parser.parse_args(argv[:1])
    fn, _ = COMMANDS[ns.command]
    return fn(argv[1:], prog=f"recsys {ns.command}")


if __name__ == "__main__":
    sys.exit(main())
