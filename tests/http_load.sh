#!/bin/bash
# http_load.sh SERVER [plain|asan] - load test of the HTTP server with wrk.
#
# Starts SERVER (tests/http_server_main.c) on an ephemeral loopback port,
# warms up for 2 s, then runs wrk for 10 s (2 threads, 32 keep-alive
# connections, rotating /metrics, /healthz, /status) and checks: no socket
# errors, no non-2xx responses, a plausible request count, the server still
# answers, its resident memory grew by less than RSS_BOUND_KIB (skipped under
# ASan, whose quarantine holds freed memory on purpose; there the leak check at
# exit covers it), and it exits 0 on SIGTERM.
# Exit 77 (skip) when wrk or curl is missing.
set -u
SERVER=${1:?usage: http_load.sh SERVER [plain|asan]}
MODE=${2:-plain}
DURATION=${HTTP_LOAD_SECONDS:-10}
RSS_BOUND_KIB=${RSS_BOUND_KIB:-4096}

for tool in wrk curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool not installed (apt-get install wrk curl)"
    exit 77
  fi
done

TMP=$(mktemp -d /tmp/rlhf_http_load.XXXXXX)
SPID=""
cleanup() {
  [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "FAIL: $*"; [ -f "$TMP/server.log" ] && sed 's/^/  server: /' "$TMP/server.log" | tail -20; exit 1; }

"$SERVER" --port 0 --port-file "$TMP/port" >"$TMP/server.log" 2>&1 &
SPID=$!
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
[ -s "$TMP/port" ] || fail "server did not start"
PORT=$(cat "$TMP/port")
URL="http://127.0.0.1:$PORT"
echo "server pid $SPID on $URL ($MODE build)"

cat >"$TMP/rotate.lua" <<'LUA'
local paths = {"/metrics", "/healthz", "/status"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SPID/status"; }

wrk -t2 -c32 -d2s -s "$TMP/rotate.lua" "$URL" >"$TMP/warmup.txt" 2>&1 || fail "wrk warm-up failed: $(cat "$TMP/warmup.txt")"
RSS0=$(rss_kib)
wrk -t2 -c32 -d"${DURATION}s" --latency -s "$TMP/rotate.lua" "$URL" >"$TMP/wrk.txt" 2>&1 || fail "wrk failed: $(cat "$TMP/wrk.txt")"
RSS1=$(rss_kib)
cat "$TMP/wrk.txt"

REQS=$(awk '/requests in/ {print $1}' "$TMP/wrk.txt")
RPS=$(awk '/^Requests\/sec:/ {print $2}' "$TMP/wrk.txt")
[ -n "$REQS" ] || fail "cannot parse the wrk output"
if grep -q "Socket errors" "$TMP/wrk.txt"; then
  fail "socket errors: $(grep 'Socket errors' "$TMP/wrk.txt")"
fi
if grep -q "Non-2xx" "$TMP/wrk.txt"; then
  fail "non-2xx responses: $(grep 'Non-2xx' "$TMP/wrk.txt")"
fi
[ "$REQS" -ge 1000 ] || fail "only $REQS requests in ${DURATION}s"

curl -sf "$URL/healthz" >/dev/null || fail "server does not answer after the load"
curl -sf "$URL/metrics" | grep -q '^rlhf_http_requests_total{code="200"}' || fail "no request counter in /metrics"

GROWTH=$((RSS1 - RSS0))
echo "requests: $REQS in ${DURATION}s ($RPS req/s); RSS ${RSS0} KiB -> ${RSS1} KiB (growth ${GROWTH} KiB)"
if [ "$MODE" != asan ]; then
  [ "$GROWTH" -lt "$RSS_BOUND_KIB" ] || fail "RSS grew by ${GROWTH} KiB (bound ${RSS_BOUND_KIB} KiB)"
fi

kill -TERM "$SPID"
wait "$SPID"
RC=$?
SPID=""
[ "$RC" -eq 0 ] || fail "server exited with $RC after SIGTERM"
echo "PASS"
