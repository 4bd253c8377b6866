"""Shared command-line plumbing for the thin jobs in ``jobs/``: arguments, config, logging."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from typing import List, Optional, Sequence

from .config import Config, ConfigError, load_config
from .weeks import current_week, require_monday


def base_parser(description: str, week: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--conf", default=None, help="config overlay (default conf/local.yaml; base.yaml always applies)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set rerank.creator_cap=3 (repeatable)")
    p.add_argument("--log-level", default="INFO")
    if week:
        p.add_argument("--week", default=None, help="Monday of the week (YYYY-MM-DD); default: this week's Monday")
    return p


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stdout, force=True)
    for noisy in ("py4j", "urllib3", "numba", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parse(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None):
    """Parse args and load the config; config errors exit with a clear one-line message."""
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = load_config(args.conf, overrides=args.set)
    except ConfigError as exc:
        parser.exit(2, f"config error: {exc}\n")
    if hasattr(args, "week"):
        try:
            args.week = require_monday(args.week) if args.week else current_week()
        except ValueError as exc:
            parser.exit(2, f"--week: {exc}\n")
    return args, cfg


def weekly_main(argv: Optional[List[str]] = None) -> int:
    """Console entry point ``recsys-weekly`` (same as ``jobs/weekly.py``)."""
    from .spark import spark_from_config
    from .pipeline import run_weekly

    args, cfg = parse(base_parser("Build this week's Discover Weekly"), argv)
    spark = spark_from_config(cfg)
    res = run_weekly(spark, cfg, args.week)
    print(res.summary)
    return 0
