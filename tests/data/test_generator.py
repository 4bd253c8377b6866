import datetime as dt
import hashlib

import numpy as np
import pytest
from pyspark.sql import functions as F

from recsys_spark.data.audio_synth import BAD_AUDIO_CASES, synth_track
from recsys_spark.embeddings.audio import AudioError, load_audio
from recsys_spark.data.generator import PlatformSpec, generate_platform
from recsys_spark.validation import InputError

END = dt.date(2026, 11, 23)
SPEC = PlatformSpec(n_users=60, n_tracks=80, n_creators=10, n_weeks=3, events_per_user_week=6, audio_tracks=3,
                    audio_seconds=1.0, audio_sample_rate=16000, bad_row_rate=0.02, partitions=2, seed=3)


def _rows(spark, d):
    inter = spark.read.option("header", True).csv(f"{d}/interactions/part-*")
    return sorted(tuple(str(x) for x in r) for r in inter.collect())


def test_deterministic_and_plausible(spark, tmp_path):
    a = generate_platform(spark, str(tmp_path / "a"), SPEC, END)
    b = generate_platform(spark, str(tmp_path / "b"), SPEC, END)
    assert a == b
    assert _rows(spark, tmp_path / "a") == _rows(spark, tmp_path / "b")
    tracks = spark.read.json(str(tmp_path / "a" / "tracks" / "part-*"))
    assert tracks.count() == 80
    assert tracks.where(F.col("audio_uri").isNotNull()).count() == 3
    files = sorted(str(p.relative_to(tmp_path / "a" / "audio")) for p in (tmp_path / "a" / "audio").glob("*/*.wav"))
    uris = sorted(r.audio_uri.split("/audio/", 1)[1] for r in tracks.where(F.col("audio_uri").isNotNull()).collect())
    assert files == uris and len(files) == 3  # <2 hex of sha1>/<track_id>.wav, the same key in the tracks export
    assert all(f == f"{hashlib.sha1(f[3:-4].encode()).hexdigest()[:2]}/{f[3:]}" for f in files)
    inter = spark.read.option("header", True).csv(str(tmp_path / "a" / "interactions" / "part-*"))
    ts = inter.select(F.min("event_ts").alias("lo"), F.max("event_ts").alias("hi")).first()
    assert ts["lo"] >= "2026-11-02" and ts["hi"] < "2026-11-23"  # 3 weeks before END
    # creators are users; creators never have their own id outside u*
    assert tracks.where(~F.col("creator_id").startswith("u")).count() == 0
    # prompts read like Suno prompts: comma separated style words
    p = spark.read.parquet(str(tmp_path / "a" / "user_prompts" / "*.parquet")).first()["prompt_text"]
    assert "," in p and len(p) > 10


def _band_profile(x, sr):
    spec = np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(len(x), 1 / sr)
    edges = np.geomspace(20, sr / 2, 41)
    v = np.log1p(np.array([spec[(f >= a) & (f < b)].sum() for a, b in zip(edges[:-1], edges[1:])]))
    v -= v.mean()
    return v / np.linalg.norm(v)


def test_audio_depends_on_style():
    sr = 16000
    prof = {(s, k): _band_profile(synth_track(s, k, 1.0, sr, 0), sr) for s in range(18) for k in (1, 2)}
    # two tracks of the same style sound more alike than tracks of different styles, for most styles
    wins = sum(prof[(s, 1)] @ prof[(s, 2)] > max(prof[(s, 1)] @ prof[(o, 2)] for o in range(18) if o != s)
               for s in range(18))
    assert wins >= 14
    wav = synth_track(1, 1, 1.0, sr, 0)
    assert wav.dtype == np.float32 and np.abs(wav).max() <= 1.0 and len(wav) == sr


def test_bad_audio_files_are_written_in_spark_and_each_fails_with_its_reason(spark, tmp_path):
    spec = PlatformSpec(**{**SPEC.__dict__, "audio_tracks": 24, "bad_audio_rate": 0.5, "bad_row_rate": 0.0})
    counts = generate_platform(spark, str(tmp_path / "p"), spec, END)
    bad = counts["bad_audio_files"]
    assert counts["audio_files"] == 24 and 0 < sum(bad.values()) < 24 and set(bad) <= set(BAD_AUDIO_CASES)
    tracks = spark.read.json(str(tmp_path / "p" / "tracks" / "part-*")).where(F.col("audio_uri").isNotNull())
    reasons = {}
    for r in tracks.collect():
        try:
            load_audio(r.audio_uri)
            reasons["ok"] = reasons.get("ok", 0) + 1
        except AudioError as exc:
            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
    # every bad file fails with the reason of its case, every other file loads
    assert reasons == {"ok": 24 - sum(bad.values()), **{BAD_AUDIO_CASES[c]: n for c, n in bad.items()}}


def test_object_store_output_is_refused_before_spark_writes():
    # bad rows, audio files and the marker are written with Python: a URI fails up front, not after
    # Spark has written half a platform to the bucket
    with pytest.raises(InputError, match=r"generate: s3a://b/raw is a s3a: URI; .*local or mounted folder"):
        generate_platform(None, "s3a://b/raw", PlatformSpec(), dt.date(2026, 11, 23))
