"""Offline evaluation: temporal split, metrics @K, peers, per-channel and funnel metrics, reports.

Library entry points::

    from recsys_spark.evaluation import evaluate, load_dataset
    ds = load_dataset(spark, "movielens", "../shared/data/movielens_latest_small")
    result = evaluate(spark, ds, ["popularity", "ease", "item_cf"], k=30, out_dir="/tmp/eval_ml")

Plug-in point for new methods / the pipeline: :func:`register_method` and :class:`StagedResult`
(see :mod:`recsys_spark.evaluation.methods`).
"""

from .evaluate import evaluate, evaluate_recs  # noqa: F401
from .loaders import EvalDataset, load_dataset  # noqa: F401
from .methods import MethodContext, StagedResult, register_method  # noqa: F401
from .peers import MethodUnavailable  # noqa: F401
from .split import Split, split_at, temporal_split  # noqa: F401
