#!/bin/sh
# rlhf-healthcheck [PORT...] - exit 0 when /healthz answers 200 on one of the
# ports: the arguments, else $RLHF_HEALTH_PORTS, else 8080 (learner) and 9100
# (actors and reward workers in docker/config.yaml).
for port in ${*:-${RLHF_HEALTH_PORTS:-8080 9100}}; do
  curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && exit 0
done
echo "no /healthz answer on port(s) ${*:-${RLHF_HEALTH_PORTS:-8080 9100}}"
exit 1
