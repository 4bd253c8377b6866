# Shared by cluster_test.sh and s3a_test.sh (sourced): logging, and a cleanup on exit that stops
# every process in PIDS (TERM, then KILL after 15 s), prints the tails of $WORK/logs/*.log when the
# script failed, and removes $WORK unless KEEP=1; and SMALL_RUN, the `--set`s of a tiny generate +
# weekly run. The caller sets TEST_NAME, WORK, KEEP, PIDS and USERS.

log() { echo "[$TEST_NAME $(date -u +%H:%M:%S)] $*"; }

cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ "$rc" != 0 ]; then
    log "FAILED (rc=$rc); logs:"
    for f in "$WORK"/logs/*.log; do echo "----- $f (last 40 lines)"; tail -40 "$f" || true; done
  fi
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# a tiny platform and model sizes; CLAP on 2 CPU cores is the slow part of a tiny run, so embeddings
# (content / prompt channels, creator pooling) are off; the other channels, DIN and the re-ranking run
SMALL_RUN=(--set "generator.n_users=$USERS" --set generator.n_tracks=400 --set generator.n_creators=60
           --set generator.n_weeks=4 --set generator.events_per_user_week=8 --set generator.audio_tracks=0
           --set generator.partitions=2 --set generator.bad_row_rate=0.01 --set generator.prompt_user_share=0.15
           --set embeddings.enabled=false
           --set recall.als.rank=16 --set recall.als.max_iter=5 --set din.epochs=2 --set din.train_weeks=2
           --set din.embedding_dim=8 "--set=din.attention_hidden=[16]" "--set=din.mlp_hidden=[16]"
           --set spark.shuffle_partitions=4)
