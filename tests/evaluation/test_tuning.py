"""Tuning runs the weekly job on a validation split cut from the training events only."""

import datetime as dt

from pyspark.sql import functions as F

from recsys_spark.evaluation.split import split_at
from recsys_spark.evaluation.tuning import choose, monday_on_or_after, validation_split


def test_validation_split_never_sees_the_test_period(spark):
    ts = dt.datetime(2024, 1, 1)
    rows = [(f"u{u}", f"t{(u + i) % 9}", ts + dt.timedelta(days=i + u), 1.0) for u in range(5) for i in range(10)]
    inter = spark.createDataFrame(rows, "user_id string, track_id string, event_ts timestamp, weight double")
    test = split_at(inter, dt.datetime(2024, 1, 10))
    val = validation_split(test)
    assert val.cutoff < test.cutoff
    last = val.truth.join(inter, ["user_id", "track_id"]).agg(F.max("event_ts")).first()[0]
    assert last < test.cutoff
    assert val.train_events.agg(F.max("event_ts")).first()[0] < val.cutoff


def test_week_of_a_cutoff_and_choice():
    assert monday_on_or_after(dt.datetime(2024, 2, 26)) == dt.date(2024, 2, 26)        # a Monday, midnight
    assert monday_on_or_after(dt.datetime(2024, 2, 26, 0, 0, 1)) == dt.date(2024, 3, 4)
    assert monday_on_or_after(dt.datetime(2024, 2, 28, 9)) == dt.date(2024, 3, 4)
    res = {"candidates": {"shipped": {"ndcg@30": 0.10}, "replica": {"ndcg@30": 0.12}, "tie": {"ndcg@30": 0.12}}}
    assert choose(res) == "replica"                                                      # ties keep the earlier
