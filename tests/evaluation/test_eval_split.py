"""The temporal split on a hand-made log (cutoff, summed train, truth excludes train items, test users)."""

import datetime as dt

from chispa import assert_df_equality

from recsys_spark.evaluation.split import split_at, temporal_split


def d(day):
    return dt.datetime(2024, 1, day)


LOG = [  # user, track, day, weight
    ("u1", "A", 1, 1.0), ("u1", "B", 2, 1.0), ("u2", "A", 3, 1.0), ("u2", "C", 4, 1.0), ("u3", "B", 5, 1.0),
    ("u1", "A", 6, 2.0), ("u2", "A", 7, 1.0), ("u4", "D", 8, 1.0), ("u3", "C", 9, 0.5),
    # day 10 (5 of 14 rows): the 90th percentile
    ("u1", "B", 10, 1.0),   # already in u1's train: not truth
    ("u1", "C", 10, 1.0),   # truth
    ("u2", "D", 10, 1.0),   # truth (twice: counted once)
    ("u2", "D", 10, 3.0),
    ("u5", "E", 10, 1.0),   # u5 has no train history: not a test user
]


def _log(spark):
    return spark.createDataFrame([(u, t, d(day), "play", w, d(day).date()) for u, t, day, w in LOG],
                                 "user_id string, track_id string, event_ts timestamp, event_type string, "
                                 "weight double, event_date date")


def test_temporal_split(spark):
    s = temporal_split(_log(spark))
    assert s.cutoff == d(10)
    train_expected = spark.createDataFrame(
        [("u1", "A", 3.0, d(6), 2), ("u1", "B", 1.0, d(2), 1), ("u2", "A", 2.0, d(7), 2), ("u2", "C", 1.0, d(4), 1),
         ("u3", "B", 1.0, d(5), 1), ("u3", "C", 0.5, d(9), 1), ("u4", "D", 1.0, d(8), 1)],
        "user_id string, track_id string, weight double, last_ts timestamp, n_events long")
    assert_df_equality(s.train, train_expected, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(s.truth, spark.createDataFrame([("u1", "C"), ("u2", "D")], "user_id string, track_id string"),
                       ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(s.test_users, spark.createDataFrame([("u1", 1), ("u2", 1)], "user_id string, n_truth long"),
                       ignore_row_order=True, ignore_nullable=True)
    assert s.train_events.count() == 9


def test_split_at_with_end(spark):
    # train = days 1-3; truth window [day 4, day 7): u2 C (new), u3 B (no train), u1 A (in train)
    s = split_at(_log(spark), d(4), d(7))
    assert sorted(map(tuple, s.truth.collect())) == [("u2", "C")]
    assert sorted(map(tuple, s.test_users.collect())) == [("u2", 1)]
    assert sorted((r.user_id, r.track_id) for r in s.train.collect()) == [("u1", "A"), ("u1", "B"), ("u2", "A")]
