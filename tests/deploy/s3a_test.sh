#!/usr/bin/env bash
# The weekly job on an object store: every table (Delta) and the week's model artifacts (ALS through
# Spark's writers; the DIN's weights and vocabulary through recsys_spark/artifacts.py and the JVM's
# Hadoop FileSystem) on s3a:// URIs. Embeddings are off, as in cluster-test, unless
# S3A_EMBEDDINGS=1: then 60 tracks have audio (HTSAT-tiny, untrained), the embed stage's tables,
# the content channel and the creator pooling model (same artifacts.py path as the DIN) run on
# s3a:// too, and the pooling weights are checked in the bucket. The raw
# landing folder stays a local path: ingestion reads raw files with Python (it refuses object-store
# URIs, docs/OPERATIONS.md §2).
# The store is moto's S3 server (PyPI `moto[server]`, in its own venv under the work folder) on
# 127.0.0.1; Spark reaches it through hadoop-aws (the version of the pip pyspark's Hadoop client,
# with its AWS SDK bundle, ~670 MB through Ivy on the first run, cached in ~/.ivy2 after) exactly as
# a cluster reaches S3: `spark-submit --packages <delta>,org.apache.hadoop:hadoop-aws:<v>` and
# `spark.hadoop.fs.s3a.*` settings. `recsys generate` + `recsys weekly` run with --master local[2].
# Checks: discover_weekly read back from S3 by check_playlists.py (the cluster test's checks: 30
# distinct tracks at positions 1..30 per user, every user served, nothing heard, creator cap), the week's model folder in the bucket (DIN weights, ALS), no stray local folder
# named `s3a:` (what os.makedirs on a URI would create), and it stops the server it started.
# Opt-in (needs network for the first install and ~1 GB of disk): not run by .ci/run. 11.1 min on
# 2 cores on 2026-12-04 (moto install 1.3 min, generate 3.1 min, weekly 6.5 min; `make test` of
# another checkout ran beside it).
#
#   make s3a-test
#   S3A_EMBEDDINGS=1 make s3a-test
#   PYTHON_DEV=.venv/bin/python bash tests/deploy/s3a_test.sh
set -euo pipefail

CHECKOUT="$(cd "$(dirname "$0")/../.." && pwd)"
PY_DEV="${PYTHON_DEV:-$CHECKOUT/.venv/bin/python}"
WEEK="${WEEK:-2026-11-23}"
USERS="${USERS:-300}"
WORK="$(mktemp -d /tmp/recsys-s3a-test.XXXXXX)"
KEEP="${KEEP:-0}"
BUCKET=recsys
PIDS=()
export TZ=UTC

TEST_NAME=s3a-test
# shellcheck source=tests/deploy/lib.sh
source "$CHECKOUT/tests/deploy/lib.sh"

mkdir -p "$WORK"/{logs,run}
"$PY_DEV" -m venv "$WORK/moto"
log "installing moto[server] into $WORK/moto"
"$WORK/moto/bin/pip" install --quiet "moto[server]>=5,<6"
PORT="$("$PY_DEV" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ENDPOINT="http://127.0.0.1:$PORT"
"$WORK/moto/bin/moto_server" -H 127.0.0.1 -p "$PORT" > "$WORK/logs/moto.log" 2>&1 &
PIDS+=($!)
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
"$WORK/moto/bin/python" - "$ENDPOINT" "$BUCKET" <<'EOF'
import sys, time
import boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
for _ in range(60):
    try:
        s3.create_bucket(Bucket=sys.argv[2])
        break
    except Exception:  # the server is still starting
        time.sleep(0.5)
else:
    raise SystemExit("moto server did not start")
EOF
log "moto S3 server $ENDPOINT, bucket $BUCKET"

SPARK_HOME="$("$PY_DEV" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME SPARK_LOCAL_IP=127.0.0.1
unset PYSPARK_PYTHON PYSPARK_DRIVER_PYTHON
HADOOP_VERSION="$(ls "$SPARK_HOME"/jars/hadoop-client-api-*.jar | sed -E 's/.*hadoop-client-api-(.*)\.jar/\1/')"
DELTA="$("$PY_DEV" -c 'from recsys_spark.spark import delta_coordinates; print(delta_coordinates())')"
LAUNCHER="$("$PY_DEV" -m recsys_spark.cli --submit-file)"
S3="s3a://$BUCKET"
SETS=(--set "storage.warehouse=$S3/warehouse" --set "storage.model_dir=$S3/models"
      --set "storage.raw_dir=file://$WORK/raw" "${SMALL_RUN[@]}")
if [ "${S3A_EMBEDDINGS:-0}" = 1 ]; then  # later --set wins over SMALL_RUN's
  SETS+=(--set generator.audio_tracks=60 --set embeddings.enabled=true --set embeddings.audio_model=HTSAT-tiny
         --set embeddings.text_model=transformer --set embeddings.batch_size=8
         --set recall.prompt.target=track_prompt --set aggregation.method=attention)
fi
SUBMIT=("$SPARK_HOME/bin/spark-submit" --master "local[2]" --driver-memory 3g
        --packages "$DELTA,org.apache.hadoop:hadoop-aws:$HADOOP_VERSION"
        --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
        --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
        --conf spark.pyspark.python="$PY_DEV" --conf spark.pyspark.driver.python="$PY_DEV"
        --conf spark.hadoop.fs.s3a.endpoint="$ENDPOINT" --conf spark.hadoop.fs.s3a.endpoint.region=us-east-1
        --conf spark.hadoop.fs.s3a.path.style.access=true
        --conf spark.hadoop.fs.s3a.connection.ssl.enabled=false
        --conf spark.ui.showConsoleProgress=false --conf spark.log.level=WARN
        --conf spark.databricks.delta.snapshotPartitions=2 --conf spark.default.parallelism=4)
cd "$WORK/run"
log "spark-submit ... recsys generate (hadoop-aws $HADOOP_VERSION)"
"${SUBMIT[@]}" "$LAUNCHER" generate --week "$WEEK" "${SETS[@]}" > "$WORK/logs/generate.log" 2>&1
log "spark-submit ... recsys weekly"
"${SUBMIT[@]}" "$LAUNCHER" weekly --week "$WEEK" "${SETS[@]}" > "$WORK/logs/weekly.log" 2>&1
[ ! -e "$WORK/run/s3a:" ] || { echo "a local folder named s3a: was written"; exit 1; }

"$WORK/moto/bin/python" - "$ENDPOINT" "$BUCKET" "$WEEK" "${S3A_EMBEDDINGS:-0}" <<'EOF'
import sys
import boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2]) for o in p.get("Contents", [])]
week = f"models/week={sys.argv[3]}/"
need = {"din weights": f"{week}din/din_state.pt", "din vocabulary": f"{week}din/vocab.json"}
if sys.argv[4] == "1":
    assert any(k.startswith("warehouse/track_embeddings/_delta_log/") for k in keys), "no track_embeddings table"
    pooling = [k for k in keys if k.startswith(f"{week}creator_pooling")]
    assert pooling, f"no creator pooling model under {week}; model keys: {sorted(k for k in keys if k.startswith(week))}"
    print("creator pooling objects:", pooling)
missing = {k: v for k, v in need.items() if v not in keys}
assert not missing, f"not in the bucket: {missing}; model keys: {sorted(k for k in keys if k.startswith('models/'))[:40]}"
assert any(k.startswith(f"{week}als/") for k in keys), "no ALS model in the bucket"
assert any(k.startswith("warehouse/discover_weekly/_delta_log/") for k in keys), "no discover_weekly table"
print(f"bucket: {len(keys)} objects; {sum(k.startswith(week) for k in keys)} under {week}")
EOF
"$PY_DEV" "$CHECKOUT/tests/deploy/check_playlists.py" "s3://$BUCKET/warehouse" "$WEEK" "$ENDPOINT"
log "OK"
