#!/bin/bash
# prometheus_scrape.sh SERVER - a real Prometheus scrapes our /metrics.
#
# Starts SERVER (tests/http_server_main.c) on an ephemeral loopback port and
# Debian's prometheus on another free loopback port with a temporary config
# that scrapes SERVER every second, then asks Prometheus' HTTP API for
#   up{job="rlhf"}                                                   == 1
#   rate(rlhf_messages_total{queue="selftest",direction="in"}[5s])   > 0
# (the server's self-test counter grows by 20/s). Both processes and the
# temporary directory are removed on exit, whatever happens.
# Exit 77 (skip) when prometheus or curl is missing.
set -u
SERVER=${1:?usage: prometheus_scrape.sh SERVER}
PROMETHEUS=${PROMETHEUS:-prometheus}
DEADLINE_S=${PROMETHEUS_DEADLINE_S:-60}

for tool in "$PROMETHEUS" curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool not installed (apt-get install prometheus curl)"
    exit 77
  fi
done

TMP=$(mktemp -d /tmp/rlhf_prom.XXXXXX)
SPID=""
PPID_=""
cleanup() {
  [ -n "$PPID_" ] && kill "$PPID_" 2>/dev/null && sleep 0.5 && kill -9 "$PPID_" 2>/dev/null
  [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAIL: $*"
  [ -f "$TMP/prometheus.log" ] && sed 's/^/  prometheus: /' "$TMP/prometheus.log" | tail -15
  [ -f "$TMP/server.log" ] && sed 's/^/  server: /' "$TMP/server.log" | tail -10
  exit 1
}

"$SERVER" --port 0 --port-file "$TMP/port" >"$TMP/server.log" 2>&1 &
SPID=$!
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
[ -s "$TMP/port" ] || fail "server did not start"
PORT=$(cat "$TMP/port")

cat >"$TMP/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: rlhf
    static_configs:
      - targets: ['127.0.0.1:$PORT']
YML

# a free port for Prometheus; retried if someone takes it before we bind
for attempt in 1 2 3; do
  PPORT=$("$SERVER" --free-port) || fail "no free port"
  "$PROMETHEUS" --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
    --web.listen-address="127.0.0.1:$PPORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
  PPID_=$!
  PURL="http://127.0.0.1:$PPORT"
  for _ in $(seq 150); do
    curl -sf "$PURL/-/ready" >/dev/null 2>&1 && break
    kill -0 "$PPID_" 2>/dev/null || break
    sleep 0.2
  done
  curl -sf "$PURL/-/ready" >/dev/null 2>&1 && break
  kill "$PPID_" 2>/dev/null; wait "$PPID_" 2>/dev/null; PPID_=""
  [ "$attempt" -eq 3 ] && fail "prometheus did not become ready"
done
echo "server on 127.0.0.1:$PORT, prometheus on $PURL"

# value of the first sample of an instant query, or empty
query() {
  curl -sf --get --data-urlencode "query=$1" "$PURL/api/v1/query" |
    sed -n 's/.*"value":\[[0-9.e+-]*,"\([^"]*\)"\].*/\1/p'
}

START=$(date +%s)
UP="" RATE=""
while [ $(($(date +%s) - START)) -lt "$DEADLINE_S" ]; do
  UP=$(query 'up{job="rlhf"}')
  RATE=$(query 'rate(rlhf_messages_total{job="rlhf",queue="selftest",direction="in"}[5s])')
  if [ "$UP" = 1 ] && [ -n "$RATE" ] && awk -v r="$RATE" 'BEGIN { exit !(r > 0) }'; then
    HIST=$(query 'histogram_quantile(0.5, rate(rlhf_selftest_latency_seconds_bucket{job="rlhf"}[5s]))')
    echo "up=$UP rate(rlhf_messages_total{queue=\"selftest\",direction=\"in\"}[5s])=$RATE/s" \
      "median selftest hop=${HIST:-?} s after $(($(date +%s) - START)) s"
    echo "PASS"
    exit 0
  fi
  sleep 1
done
echo "targets: $(curl -s "$PURL/api/v1/targets" | head -c 600)"
fail "no positive rate within ${DEADLINE_S}s (up='$UP', rate='$RATE')"
