"""Machine speed: a fixed single-node workload, no Spark (``python benchmarks/run.py --suite machine``).

Timing figures here are wall seconds on a shared 2-core box whose speed changes from day to day
(the host, not the code). This suite times the same small CPU work every time, so that a timing
taken on one day can be compared with one taken on another: a pure-Python loop, a numpy matrix
product, and implicit's ALS and cosine item-item fits on MovieLens latest-small (the evaluation's
single-node peers, which no code of this project touches). Run it on a quiet machine just before
or after the timing it calibrates; the result names the load average at both ends.

Writes ``results/machine_<date>.json`` (``--tag`` replaces the date).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time

from suite_evaluation import DATASETS  # the shared data sets' folders ($RECSYS_SHARED_DATA)

DEFAULT_RATINGS = os.path.join(DATASETS["movielens"][1], "ratings.csv")


def _best(fn, repeat: int = 3) -> float:
    """The fastest of ``repeat`` timed calls (the least disturbed by other work)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(min(times), 3)


def python_loop(n: int = 20_000_000) -> int:
    s = 0
    for i in range(n):
        s += i
    return s


def measure(ratings: str) -> dict:
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    out = {"python_loop_20M_s": _best(python_loop)}
    rng = np.random.default_rng(0)
    a = rng.random((1500, 1500))
    with threadpool_limits(1):
        out["numpy_matmul_1500_x5_one_thread_s"] = _best(lambda: [a @ a for _ in range(5)])
    if os.path.exists(ratings):
        from implicit.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import CosineRecommender

        df = pd.read_csv(ratings)
        users = df["userId"].astype("category").cat.codes.to_numpy()
        items = df["movieId"].astype("category").cat.codes.to_numpy()
        m = sp.csr_matrix((np.ones(len(df), dtype=np.float32), (users, items)))

        def als():
            AlternatingLeastSquares(factors=64, iterations=15, random_state=0).fit(m, show_progress=False)

        def cosine():
            CosineRecommender(K=100).fit(m, show_progress=False)

        with threadpool_limits(1):
            out["implicit_als_movielens_small_one_thread_s"] = _best(als)
            out["implicit_cosine_movielens_small_s"] = _best(cosine)
        out["ratings"] = {"path": os.path.relpath(ratings), "rows": int(len(df)), "users": int(m.shape[0]),
                          "items": int(m.shape[1])}
    return out


def main(args) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="suite machine")
    p.add_argument("--ratings", default=DEFAULT_RATINGS)
    p.add_argument("--tag", default=None, help="file name part (default: today's date)")
    p.add_argument("--note", default="", help="what this calibrates (free text, kept in the JSON)")
    extra = p.parse_args(args.extra)
    load0 = list(os.getloadavg())
    t0 = time.time()
    figures = measure(os.path.abspath(extra.ratings))
    result = {
        "what": "fixed single-node CPU workload (no Spark, no project code): compare timings across days",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "figures": figures, "seconds": round(time.time() - t0, 1),
        "load_average_start": load0, "load_average_end": list(os.getloadavg()), "note": extra.note,
    }
    name = f"machine_{extra.tag or dt.date.today().isoformat()}.json"
    path = os.path.join(args.out, name)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result, indent=2))
    print(f"-> {path}")
    return 0
