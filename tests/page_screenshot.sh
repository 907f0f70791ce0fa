#!/bin/bash
# page_screenshot.sh BIN_DIR FREE_PORT_TOOL OUT_DIR - the learner's live page in a real browser.
#
# Starts a learner (tiny model, more steps than it will do), a reward worker
# and an actor on free loopback ports, waits for the learner's third step
# (asking `rlhf top --once --json`), then loads http://127.0.0.1:PORT/ in
# headless Chromium:
#   --dump-dom    the DOM after the page's script ran: the step, the queue
#                 table and the actor row must have been filled in from
#                 /status (the step starts as "—");
#   --screenshot  OUT_DIR/page_screenshot.png at 1280x900, to look at.
# Every process and the temporary directory are removed on exit, whatever
# happens. Exit 77 (skip) when chromium is missing.
set -u
BIN=${1:?usage: page_screenshot.sh BIN_DIR FREE_PORT_TOOL OUT_DIR}
FREE_PORT=${2:?usage: page_screenshot.sh BIN_DIR FREE_PORT_TOOL OUT_DIR}
OUT=${3:?usage: page_screenshot.sh BIN_DIR FREE_PORT_TOOL OUT_DIR}
CHROMIUM=${CHROMIUM:-chromium}
DEADLINE_S=${PAGE_DEADLINE_S:-120}

if ! command -v "$CHROMIUM" >/dev/null 2>&1; then
  echo "SKIP: $CHROMIUM not installed (apt-get install chromium)"
  exit 77
fi

TMP=$(mktemp -d /tmp/rlhf_page.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAIL: $*"
  for f in "$TMP"/*.log; do [ -f "$f" ] && tail -n 8 "$f" | sed "s|^|  $(basename "$f"): |"; done
  exit 1
}

ports=()
for _ in 1 2 3 4 5 6 7; do ports+=("$("$FREE_PORT" --free-port)") || fail "no free port"; done
HTTP=${ports[6]}
cat >"$TMP/run.yaml" <<YML
run: {out_dir: "$TMP/out", steps: 100000, max_lag: 1, seed: 7}
model: {preset: tiny}
task: {n_train: 256, n_heldout: 8}
ppo: {batch_prompts: 8, k: 2, minibatch: 8, epochs: 1}
sampling: {max_new_tokens: 6}
learner: {work_port: ${ports[0]}, rollouts_port: ${ports[1]}, score_port: ${ports[2]}, scored_port: ${ports[3]},
          announce_port: ${ports[4]}, weights_port: ${ports[5]}, http_port: $HTTP, ticket_prompts: 2, threads: 1,
          checkpoint_every: 0, eval_every: 2}
actor: {threads: 1, batch: 8, http_port: 0}
reward: {threads: 1, batch: 8, http_port: 0}
YML
"$BIN/rlhf-learner" --config "$TMP/run.yaml" --id L 2>"$TMP/learner.log" & PIDS+=($!)
"$BIN/rlhf-reward" --config "$TMP/run.yaml" --id r0 2>"$TMP/r0.log" & PIDS+=($!)
"$BIN/rlhf-actor" --config "$TMP/run.yaml" --id a0 2>"$TMP/a0.log" & PIDS+=($!)

START=$(date +%s)
STEP=0
while [ $(($(date +%s) - START)) -lt "$DEADLINE_S" ]; do
  STEP=$("$BIN/rlhf" top --once --json --interval 0.2 "127.0.0.1:$HTTP" 2>/dev/null |
    sed -n 's/^  "step": \([0-9]*\),$/\1/p')
  [ "${STEP:-0}" -ge 3 ] && break
  sleep 0.5
done
[ "${STEP:-0}" -ge 3 ] || fail "the learner did not reach step 3 within ${DEADLINE_S}s"
echo "learner on 127.0.0.1:$HTTP at step $STEP"

URL="http://127.0.0.1:$HTTP/"
CHROME=("$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
        --user-data-dir="$TMP/chrome" --virtual-time-budget=6000)
"${CHROME[@]}" --dump-dom "$URL" >"$TMP/dom.html" 2>"$TMP/chrome.log" || fail "chromium --dump-dom failed"
SHOWN=$(sed -n 's/.*id="step">\([^<]*\)<.*/\1/p' "$TMP/dom.html" | head -1)
echo "page shows step '$SHOWN'"
echo "$SHOWN" | grep -Eq '^[0-9,]+ / [0-9,]+$' || fail "the step was not filled in by the page's script ('$SHOWN')"
grep -q 'prompts → actors' "$TMP/dom.html" || fail "the queue table was not filled in"
grep -q '<td><b>a0</b></td>' "$TMP/dom.html" || fail "the actor a0 is not listed"
grep -q '<td><b>r0</b></td>' "$TMP/dom.html" || fail "the reward worker r0 is not listed"

mkdir -p "$OUT"
rm -f "$OUT/page_screenshot.png"
"${CHROME[@]}" --hide-scrollbars --window-size=1280,900 --screenshot="$OUT/page_screenshot.png" "$URL" \
  >>"$TMP/chrome.log" 2>&1 || fail "chromium --screenshot failed"
[ -s "$OUT/page_screenshot.png" ] || fail "no screenshot written"
echo "screenshot: $OUT/page_screenshot.png"
echo "PASS"
