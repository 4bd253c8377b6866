"""Loaders on tiny hand-made files: MovieLens ratings.csv and u.data, HetRec date rules, generic CSV."""

import datetime as dt

import pytest

from recsys_spark.evaluation.loaders import load_dataset


def _rows(ds):
    return sorted((r.user_id, r.track_id, r.event_ts, r.weight, r.event_type, r.event_date)
                  for r in ds.interactions.collect())


def test_movielens_ratings_csv(spark, tmp_path):
    p = tmp_path / "ratings.csv"
    p.write_text("userId,movieId,rating,timestamp\n1,10,4.0,964982703\n2,20,3.5,1000000000\n")
    ds = load_dataset(spark, "movielens", str(tmp_path))  # the folder works too
    assert _rows(ds) == [
        ("1", "10", dt.datetime(2000, 7, 30, 18, 45, 3), 1.0, "rating", dt.date(2000, 7, 30)),
        ("2", "20", dt.datetime(2001, 9, 9, 1, 46, 40), 1.0, "rating", dt.date(2001, 9, 9)),
    ]
    ds = load_dataset(spark, "movielens", str(p), weight="rating")
    assert [r[3] for r in _rows(ds)] == [4.0, 3.5]


def test_movielens_u_data(spark, tmp_path):
    p = tmp_path / "u.data"
    p.write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    ds = load_dataset(spark, "movielens", str(p))
    assert _rows(ds) == [
        ("186", "302", dt.datetime(1998, 4, 4, 19, 22, 22), 1.0, "rating", dt.date(1998, 4, 4)),
        ("196", "242", dt.datetime(1997, 12, 4, 15, 55, 49), 1.0, "rating", dt.date(1997, 12, 4)),
    ]


def test_hetrec_first_tag_day_years_from_2005(spark, tmp_path):
    p = tmp_path / "user_taggedartists.dat"
    p.write_text(
        "userID\tartistID\ttagID\tday\tmonth\tyear\n"
        "2\t52\t13\t1\t4\t2009\n"
        "2\t52\t15\t3\t3\t2009\n"     # earlier tag of the same pair: the pair's date, weight 2
        "2\t60\t7\t1\t1\t1956\n"      # before 2005: dropped (the pair disappears)
        "3\t52\t7\t1\t1\t2004\n"      # before 2005: neither dates nor weighs the pair
        "3\t52\t8\t1\t5\t2008\n"
        "3\t52\t9\t2\t5\t2008\n"
        "4\t70\t1\t31\t2\t2009\n")    # impossible date: dropped
    ds = load_dataset(spark, "hetrec", str(tmp_path))
    assert _rows(ds) == [
        ("2", "52", dt.datetime(2009, 3, 3), 2.0, "tag", dt.date(2009, 3, 3)),
        ("3", "52", dt.datetime(2008, 5, 1), 2.0, "tag", dt.date(2008, 5, 1)),
    ]


def test_csv_unix_and_iso_times_and_weights(spark, tmp_path):
    p = tmp_path / "events.tsv"
    p.write_text("who\twhat\twhen\thow_much\n"
                 "u1\ti1\t1700000000\t2\n"
                 "u2\ti2\t2024-03-01T12:30:00Z\t1.5\n"
                 "u3\ti3\t2024-03-02\t3\n"
                 "u4\ti4\t1700000000000\t1\n"     # milliseconds
                 "u5\ti5\tnot a time\t1\n")       # unparseable: dropped
    ds = load_dataset(spark, "csv", str(p), sep="\\t", user_col="who", item_col="what", time_col="when",
                      weight_col="how_much")
    assert _rows(ds) == [
        ("u1", "i1", dt.datetime(2023, 11, 14, 22, 13, 20), 2.0, "interaction", dt.date(2023, 11, 14)),
        ("u2", "i2", dt.datetime(2024, 3, 1, 12, 30), 1.5, "interaction", dt.date(2024, 3, 1)),
        ("u3", "i3", dt.datetime(2024, 3, 2), 3.0, "interaction", dt.date(2024, 3, 2)),
        ("u4", "i4", dt.datetime(2023, 11, 14, 22, 13, 20), 1.0, "interaction", dt.date(2023, 11, 14)),
    ]
    assert ds.name == "events"


def test_csv_missing_column_is_a_clear_error(spark, tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="missing columns"):
        load_dataset(spark, "csv", str(p), user_col="user", item_col="b", time_col="c")


def test_movielens_movies_csv_gives_titles_and_genres(spark, tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.0,964982703\n")
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n10,"Heat, The (1995)",Action|Crime\n'
                                         "20,Nothing (2000),(no genres listed)\n")
    ds = load_dataset(spark, "movielens", str(tmp_path))
    got = sorted((r.track_id, r.title, r.genre, list(r.tags)) for r in ds.tracks.collect())
    assert got == [("10", "Heat, The (1995)", "action", ["action", "crime"]), ("20", "Nothing (2000)", None, [])]
    assert "creator_id" not in ds.tracks.columns   # nothing is invented
