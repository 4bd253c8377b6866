"""Column names shared by every module (one place, as in microsoft/recommenders' constants)."""

USER = "user_id"
TRACK = "track_id"
CREATOR = "creator_id"
TS = "event_ts"
EVENT = "event_type"
WEIGHT = "weight"
WEEK = "week_start"
CHANNEL = "channel"
SCORE = "score"
RANK = "rank"
SEED = "seed_track_id"
POSITION = "position"
SOURCES = "sources"

CANDIDATE_COLUMNS = [USER, TRACK, CHANNEL, SCORE, RANK, SEED]
