"""Check week W of discover_weekly as the deploy tests' runs wrote it, read with deltalake (no Spark).

    python tests/deploy/check_playlists.py WAREHOUSE WEEK [S3_ENDPOINT]

WAREHOUSE is a local folder or ``s3://bucket/prefix``; with S3_ENDPOINT (``http://127.0.0.1:PORT``)
the tables are read from that S3 server with the ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
of the environment. At least 100 users served, each with exactly 30 distinct tracks at positions
1..30, every user with history served, nothing already heard, at most 2 tracks per creator.
"""

import datetime as dt
import os
import sys

import pandas as pd
from deltalake import DeltaTable

wh, week = sys.argv[1], dt.date.fromisoformat(sys.argv[2])
opts = None
if len(sys.argv) > 3:
    opts = {"AWS_ENDPOINT_URL": sys.argv[3], "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"]}


def read(table):
    return DeltaTable(f"{wh}/{table}", storage_options=opts).to_pandas()


end = pd.Timestamp(week + dt.timedelta(days=7), tz="UTC")
dw = read("discover_weekly")
dw = dw[pd.to_datetime(dw["week_start"]).dt.date == week]
inter = read("interactions")
ts = pd.to_datetime(inter["event_ts"], utc=True)
heard = inter[ts < end][["user_id", "track_id"]].drop_duplicates()
tracks = read("tracks")[["track_id", "creator_id"]]
per = dw.groupby("user_id").agg(n=("track_id", "size"), d=("track_id", "nunique"),
                                lo=("position", "min"), hi=("position", "max"))
assert len(per) >= 100, f"only {len(per)} users served"
bad = per[(per.n != 30) | (per.d != 30) | (per.lo != 1) | (per.hi != 30)]
assert bad.empty, f"users without exactly 30 distinct tracks at positions 1..30:\n{bad.head()}"
missing = set(heard.user_id) - set(per.index)
assert not missing, f"{len(missing)} users with history got no playlist"
again = dw.merge(heard, on=["user_id", "track_id"])
assert again.empty, f"{len(again)} recommended tracks were already heard"
caps = dw.merge(tracks, on="track_id").groupby(["user_id", "creator_id"]).size()
assert caps.max() <= 2, f"creator cap exceeded: {caps.max()}"
print(f"discover_weekly {week} in {wh}: {len(per)} users x 30, none heard, max {caps.max()} per creator")
