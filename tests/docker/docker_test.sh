#!/bin/bash
# docker_test.sh [SRCDIR] - the container stack end to end (docker/, issue 5).
#
# Builds the images (docker/build-base.sh, then docker build: cached builds take
# seconds), starts learner + 1 reward worker + 2 actors + Prometheus under a
# project name of its own, with the learner's and Prometheus' HTTP on free host
# ports, and checks, printing each step:
#   1. learner steps advance (/status on the published port)
#   2. `up -d --no-deps --scale actor=4 actor` adds actors, the learner sees 4 and each generates
#      samples (rlhf_samples_generated_total inside each actor container)
#   3. Prometheus scrapes every replica (dns_sd_configs: 4 actor targets up) and
#      loaded the alert rules
#   4. an actor killed mid-run has its tickets reissued (/status tickets_reissued
#      grows; learner.ticket_timeout_ms is 10 s in docker/config.yaml) and steps go on
#   5. Prometheus reports a positive rollout rate over the last 30 s
# Everything it started (containers, network, volumes) is removed on exit,
# whatever happens; the images are kept as the build cache.
# Exit 77 (skip) when there is no Docker engine, no compose tool (docker compose
# or docker-compose), no curl, or no way to get the base image.
# Environment: RLHF_COMPOSE="docker-compose" picks the compose tool;
# RLHF_DOCKER_KEEP=1 leaves the stack up for inspection.
set -u
SRC=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
IMAGE=rlhf:latest
PROM_IMAGE=rlhf-prometheus:latest
T0=$(date +%s)

skip() { echo "SKIP: $*"; exit 77; }
say() { printf '[%4ds] %s\n' $(($(date +%s) - T0)) "$*"; }

command -v docker >/dev/null 2>&1 || skip "docker not installed"
docker info >/dev/null 2>&1 || skip "no Docker engine (docker info failed)"
command -v curl >/dev/null 2>&1 || skip "curl not installed"
if [ -n "${RLHF_COMPOSE:-}" ]; then
  read -r -a COMPOSE <<<"$RLHF_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  skip "no compose tool (neither 'docker compose' nor 'docker-compose')"
fi
"${COMPOSE[@]}" version >/dev/null 2>&1 || skip "compose tool '${COMPOSE[*]}' does not run"
BASE=$(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' "$SRC/docker/Dockerfile" | head -n1)
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  { [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null 2>&1; } ||
    skip "base image $BASE missing and debootstrap (as root) not available to make it"
fi

TMP=$(mktemp -d /tmp/rlhf_docker.XXXXXX)
PROJECT=rlhftest$$
export RLHF_IMAGE=$IMAGE RLHF_PROMETHEUS_IMAGE=$PROM_IMAGE
# 0 = Docker picks a free host port; read back with `compose port`
export RLHF_HTTP_PORT=0 RLHF_PROMETHEUS_PORT=0
# the stack must not inherit settings from whoever runs the test
for v in $(env | sed -n 's/^\(RLHF_[A-Z0-9_]*\)=.*/\1/p'); do
  case $v in RLHF_IMAGE|RLHF_PROMETHEUS_IMAGE|RLHF_HTTP_PORT|RLHF_PROMETHEUS_PORT|RLHF_COMPOSE|RLHF_DOCKER_KEEP) ;;
  *) unset "$v" ;; esac
done
dc() { "${COMPOSE[@]}" -p "$PROJECT" -f "$SRC/docker/compose.yaml" "$@"; }

UP=0
cleanup() {
  local rc=$?
  if [ "$UP" = 1 ]; then
    if [ "${RLHF_DOCKER_KEEP:-0}" = 1 ]; then
      echo "RLHF_DOCKER_KEEP=1: stack left up; remove with: ${COMPOSE[*]} -p $PROJECT -f $SRC/docker/compose.yaml down -v"
    else
      dc down -v --remove-orphans -t 5 >"$TMP/down.log" 2>&1 || cat "$TMP/down.log"
      remove_project "$PROJECT" # belt and braces: anything still labelled with the project
      say "stack removed"
    fi
  fi
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAIL: $*"
  if [ "$UP" = 1 ]; then
    dc ps 2>&1 | sed 's/^/  ps: /'
    for s in learner reward actor prometheus; do dc logs --no-color --tail 15 "$s" 2>&1 | sed "s/^/  /"; done
  fi
  exit 1
}

# stacks of earlier runs that were killed before their trap ran (a ctest
# timeout): project rlhftest<PID> whose PID is gone
remove_project() {
  docker ps -aq --filter "label=com.docker.compose.project=$1" | xargs -r docker rm -f >/dev/null 2>&1
  docker volume ls -q --filter "label=com.docker.compose.project=$1" | xargs -r docker volume rm >/dev/null 2>&1
  docker network ls -q --filter "label=com.docker.compose.project=$1" | xargs -r docker network rm >/dev/null 2>&1
}
for p in $(docker ps -a --format '{{.Label "com.docker.compose.project"}}' | grep '^rlhftest[0-9]\+$' | sort -u); do
  kill -0 "${p#rlhftest}" 2>/dev/null && continue
  say "removing the stack of an earlier run: $p"
  remove_project "$p"
done

# ---- images ----
say "compose tool: ${COMPOSE[*]} ($("${COMPOSE[@]}" version 2>/dev/null | head -n1))"
t=$(date +%s)
"$SRC/docker/build-base.sh" "$BASE" >"$TMP/base.log" 2>&1 || { cat "$TMP/base.log"; fail "docker/build-base.sh"; }
sed 's/^/  /' "$TMP/base.log"
docker build --force-rm -f "$SRC/docker/Dockerfile" -t "$IMAGE" "$SRC" >"$TMP/build.log" 2>&1 ||
  { tail -n 40 "$TMP/build.log"; fail "docker build $IMAGE"; }
docker build --force-rm -f "$SRC/docker/Dockerfile.prometheus" -t "$PROM_IMAGE" "$SRC/docker" >"$TMP/build-prom.log" 2>&1 ||
  { tail -n 40 "$TMP/build-prom.log"; fail "docker build $PROM_IMAGE"; }
say "images $IMAGE, $PROM_IMAGE built in $(($(date +%s) - t)) s"
# Images of earlier builds that nothing uses any more: replaced runtime images,
# and builder stages other than the one just used (the cache of the next build;
# its id is the last layer before the second FROM in the classic builder's log)
docker images -q --filter dangling=true --filter label=rlhf.stage=runtime | xargs -r docker rmi >/dev/null 2>&1
BUILDER=$(awk '/^Step [0-9]+\/[0-9]+ : FROM /{ if (++n == 2) { print last; exit } } /^ ---> [0-9a-f]+$/{ last = $2 }' "$TMP/build.log")
if [ -n "$BUILDER" ]; then
  docker images -q --no-trunc --filter dangling=true --filter label=rlhf.stage=build |
    grep -v "^sha256:$BUILDER" | xargs -r docker rmi >/dev/null 2>&1
fi
docker run --rm "$IMAGE" sh -c 'for p in rlhf rlhf-learner rlhf-actor rlhf-reward; do command -v $p >/dev/null || exit 1; done' ||
  fail "the image lacks one of rlhf, rlhf-learner, rlhf-actor, rlhf-reward"

# ---- up: learner, 1 reward worker, 2 actors, prometheus ----
UP=1
t=$(date +%s)
dc up -d --scale actor=2 --scale reward=1 >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log"; fail "compose up"; }
port_of() { dc port "$1" "$2" 2>/dev/null | sed -n 's/.*:\([0-9]\+\)$/\1/p' | head -n1; }
LPORT=$(port_of learner 8080)
PPORT=$(port_of prometheus 9090)
[ -n "$LPORT" ] && [ -n "$PPORT" ] || fail "no published ports (learner '$LPORT', prometheus '$PPORT')"
LURL=http://127.0.0.1:$LPORT
PURL=http://127.0.0.1:$PPORT
say "project $PROJECT up in $(($(date +%s) - t)) s: learner $LURL, prometheus $PURL"

status() { curl -sf -m 5 "$LURL/status"; }
# jfield JSON KEY: the first integer value of "KEY" in JSON (flat enough for /status)
jfield() { sed -n "s/.*\"$2\":\([0-9]\+\).*/\1/p" <<<"$1" | head -n1; }
# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 2 s
wait_for() {
  local limit=$1 what=$2 start=$(date +%s)
  shift 2
  while ! "$@"; do
    [ $(($(date +%s) - start)) -ge "$limit" ] && fail "$what: not within ${limit}s"
    sleep 2
  done
}

# ---- 1. learner steps advance ----
STEP0=""
learner_stepping() {
  local st step
  st=$(status) || return 1
  step=$(jfield "$st" step)
  [ -n "$step" ] || return 1
  [ -z "$STEP0" ] && STEP0=$step
  [ "$step" -ge $((STEP0 + 3)) ] && [ "$step" -ge 3 ]
}
wait_for 120 "learner steps advance" learner_stepping
ST=$(status)
say "1. learner steps advance: step $STEP0 -> $(jfield "$ST" step), workers actors=$(jfield "$ST" actors) reward=$(jfield "$ST" reward)"
dc ps | grep -q healthy || true

# ---- 2. scale to 4 actors while running ----
t=$(date +%s)
# --no-deps ... actor: only the actors change (a bare `up --scale actor=4` would
# also set every other service back to its configured count)
dc up -d --no-deps --scale actor=4 actor >"$TMP/up4.log" 2>&1 || { cat "$TMP/up4.log"; fail "compose up --scale actor=4"; }
ACTORS=$(dc ps -q actor 2>/dev/null)
[ "$(wc -w <<<"$ACTORS")" = 4 ] || fail "expected 4 actor containers, have $(wc -w <<<"$ACTORS")"
four_actors() { [ "$(jfield "$(status)" actors)" = 4 ]; }
wait_for 90 "learner sees 4 actors" four_actors
samples_of() { docker exec "$1" curl -sf -m 3 http://127.0.0.1:9100/metrics 2>/dev/null |
  sed -n 's/^rlhf_samples_generated_total \([0-9.e+]*\)$/\1/p' | awk '{ printf "%d", $1 }'; }
all_generate() {
  local c n
  for c in $ACTORS; do n=$(samples_of "$c"); [ -n "$n" ] && [ "$n" -gt 0 ] || return 1; done
}
wait_for 90 "every actor generates samples" all_generate
line=""
for c in $ACTORS; do line="$line $(docker inspect -f '{{.Name}}' "$c" | sed 's,^/,,')=$(samples_of "$c")"; done
say "2. scaled to 4 actors in $(($(date +%s) - t)) s; learner workers.actors=4; samples generated:$line"

# ---- 3. prometheus scrapes every replica, rules loaded ----
# pquery EXPR: the value of the first sample, or empty
pquery() { curl -sf -m 5 --get --data-urlencode "query=$1" "$PURL/api/v1/query" |
  sed -n 's/.*"value":\[[0-9.e+-]*,"\([^"]*\)"\].*/\1/p'; }
t=$(date +%s)
scraped_all() { [ "$(pquery 'count(up{job="actor"} == 1)')" = 4 ] && [ "$(pquery 'count(up{job="reward"} == 1)')" = 1 ] &&
  [ "$(pquery 'count(up{job="learner"} == 1)')" = 1 ]; }
wait_for 90 "prometheus scrapes 4 actors, 1 reward worker, the learner" scraped_all
RULES=$(curl -sf -m 5 "$PURL/api/v1/rules" | grep -o '"type":"alerting"' | wc -l)
[ "$RULES" -ge 4 ] || fail "prometheus loaded $RULES alerting rules (docker/alerts.yml)"
say "3. prometheus: up{job=actor} 4, reward 1, learner 1 (after $(($(date +%s) - t)) s); $RULES alert rules loaded"

# ---- 4. kill an actor: its tickets are reissued ----
ST=$(status)
REISSUED0=$(jfield "$ST" tickets_reissued)
VICTIM=""
for _ in $(seq 30); do
  for c in $ACTORS; do
    n=$(docker exec "$c" curl -sf -m 3 http://127.0.0.1:9100/metrics 2>/dev/null |
      sed -n 's/^rlhf_tickets_in_progress \([0-9]*\).*/\1/p')
    [ -n "$n" ] && [ "$n" -gt 0 ] && { VICTIM=$c; break 2; }
  done
  sleep 0.5
done
[ -n "$VICTIM" ] || VICTIM=$(head -n1 <<<"$ACTORS")
VNAME=$(docker inspect -f '{{.Name}}' "$VICTIM" | sed 's,^/,,')
docker kill "$VICTIM" >/dev/null || fail "docker kill $VNAME"
t=$(date +%s)
STEP_K=$(jfield "$(status)" step)
say "4. killed $VNAME (SIGKILL) with its tickets in flight; tickets_reissued was $REISSUED0"
reissued() {
  local st
  st=$(status) || return 1
  [ "$(jfield "$st" tickets_reissued)" -gt "$REISSUED0" ] && [ "$(jfield "$st" actors)" = 3 ]
}
wait_for 90 "the killed actor's tickets are reissued and the learner counts 3 actors" reissued
ST=$(status)
still_stepping() { [ "$(jfield "$(status)" step)" -ge $((STEP_K + 3)) ]; }
wait_for 90 "learner steps go on after the kill" still_stepping
ST=$(status)
say "   reissued after $(($(date +%s) - t)) s: tickets_reissued $(jfield "$ST" tickets_reissued)," \
  "issued $(jfield "$ST" tickets_issued), completed $(jfield "$ST" tickets_completed), prompts_lost $(jfield "$ST" prompts_lost)," \
  "workers.actors $(jfield "$ST" actors), step $STEP_K -> $(jfield "$ST" step)"
[ "$(docker inspect -f '{{.State.Running}}' "$VICTIM")" = false ] || fail "$VNAME restarted after docker kill"

# ---- 5. prometheus: positive rollout rate ----
RATE="" GEN=""
rollouts_flow() {
  RATE=$(pquery 'sum(rate(rlhf_messages_total{job="learner",queue="rollouts",direction="in"}[30s]))')
  GEN=$(pquery 'sum(rate(rlhf_samples_generated_total{job="actor"}[30s]))')
  [ -n "$RATE" ] && [ -n "$GEN" ] && awk -v r="$RATE" -v g="$GEN" 'BEGIN { exit !(r > 0 && g > 0) }'
}
wait_for 60 "prometheus: positive rollout rate" rollouts_flow
say "5. prometheus: learner receives $(printf '%.2f' "$RATE") rollout messages/s, actors generate $(printf '%.1f' "$GEN") samples/s (rate over 30s)"

echo "PASS (total $(($(date +%s) - T0)) s)"
exit 0
