"""Benchmark entry point: ``python benchmarks/run.py --suite NAME --size S|M|L``.

Each suite lives in ``benchmarks/suite_<name>.py`` and exposes ``main(args)``; results are JSON
files under ``benchmarks/results/`` and the figures are summarised in ``benchmarks/README.md``.
"""

import argparse
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def main(argv=None) -> int:
    suites = sorted(f[len("suite_"):-3] for f in os.listdir(HERE) if f.startswith("suite_") and f.endswith(".py"))
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--suite", required=True, choices=suites)
    p.add_argument("--size", default="S", choices=["XS", "S", "M", "L"])
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args, rest = p.parse_known_args(argv)
    args.extra = rest
    os.makedirs(args.out, exist_ok=True)
    mod = importlib.import_module(f"suite_{args.suite}")
    rc = mod.main(args)
    return rc if isinstance(rc, int) else 0  # some suites return their result dict


if __name__ == "__main__":
    sys.exit(main())
