"""Deliberately malformed rows appended to the synthetic export, one file per entity.

A real platform export has bad rows; these exercise every quarantine reason of ingestion. The
number of rows is bounded (``bad_row_rate`` of the users, at most 40 per kind), so building
them on the driver costs nothing at any scale.
"""

from __future__ import annotations

import datetime as dt
import json
import os


def write_bad_rows(out_dir: str, spec, end: dt.date) -> int:
    per_kind = max(1, min(40, int(spec.n_users * spec.bad_row_rate)))
    ts = (dt.datetime.combine(end, dt.time()) - dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    good_user, good_track = "u0000001", "t0000001"
    inter = ["user_id,track_id,event_ts,event_type,weight"]
    tracks, prompts = [], []
    for i in range(per_kind):
        inter += [
            f",{good_track},{ts},play,1",                         # null key
            f"{good_user},{good_track},{ts},teleport,1",          # unknown event type
            f"{good_user},{good_track},{ts},play,-2",             # negative weight
            f"{good_user},{good_track},{ts},play,lots",           # non-numeric weight
            f"{good_user},{good_track},yesterday-ish,play,1",     # unparseable timestamp
            f"{good_user},{good_track},2199-01-01T00:00:00Z,play,1",  # future timestamp
            f"{good_user},t9{i:06d},{ts},play,1",                 # unknown track id
            # unknown track ids behind a 9-digit fraction with a +0000 offset / an NBSP-and-ZWSP padded
            # user id: the timestamp and the id are read, the reason is the track (first failing rule)
            f"{good_user},t8{i:06d},{ts[:-1]}.123456789+0000,play,1",
            f"\u00a0{good_user}\u200b,t7{i:06d},{ts},play,1",
        ]
        tracks += [
            json.dumps({"track_id": None, "creator_id": "u0000002", "title": "no id"}),
            json.dumps({"track_id": f"tbad{i:04d}", "creator_id": "u0000002", "title": "x" * 5000}),
            json.dumps({"track_id": f"tbadplay{i:04d}", "creator_id": "u0000002", "title": "neg",
                        "play_count": -5}),
            # a count too large for a long: quarantined (invalid_count), never a cast overflow
            json.dumps({"track_id": f"tbigplay{i:04d}", "creator_id": "u0000002", "title": "big",
                        "play_count": 1e30, "upvote_count": "1e19"}),
            # an id with a zero-width space inside (invalid_id), two objects on one line (concatenated_json)
            json.dumps({"track_id": f"tzw\u200b{i:04d}", "creator_id": "u0000002", "title": "zw"}),
            json.dumps({"track_id": f"tcat{i:04d}", "creator_id": "u0000002"})
            + json.dumps({"track_id": f"tcat{i:04d}b", "creator_id": "u0000002"}),
        ]
        prompts.append(json.dumps({"prompt_id": f"pbad{i:04d}", "user_id": None, "prompt_text": "lofi"}))
        prompts.append(json.dumps({"prompt_id": f"pbig{i:04d}", "user_id": good_user,
                                   "prompt_text": "lofi " * 2000}))
    # a duplicated valid-looking pair of rows (the first is kept, the second quarantined as duplicate)
    inter += [f"{good_user},{good_track},{ts},upvote,3"] * 2
    os.makedirs(os.path.join(out_dir, "interactions"), exist_ok=True)
    with open(os.path.join(out_dir, "interactions", "bad-rows.csv"), "w") as fh:
        fh.write("\n".join(inter) + "\n")
    with open(os.path.join(out_dir, "tracks", "bad-rows.json"), "wb") as fh:
        fh.write(("\n".join(tracks) + "\n").encode())
        # broken encoding: invalid UTF-8 bytes inside a title
        fh.write(b'{"track_id": "tbadenc", "creator_id": "u0000002", "title": "caf\xe9 \xff\xfe"}\n')
        fh.write(b'{"track_id": "tbroken", "creator_id": \n')  # truncated JSON
    os.makedirs(os.path.join(out_dir, "user_prompts"), exist_ok=True)
    with open(os.path.join(out_dir, "user_prompts", "bad-rows.json"), "w") as fh:
        fh.write("\n".join(prompts) + "\n")
    return (len(inter) - 1) + len(tracks) + 2 + len(prompts)
