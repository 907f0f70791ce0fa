#!/bin/bash
# docker/build-base.sh [IMAGE] - make the base image the Dockerfiles start FROM
# available without a registry.
#
# When IMAGE (default: the FROM line of docker/Dockerfile, debian:bookworm-slim)
# is already in the local engine, nothing is done. Otherwise a minimal Debian
# bookworm root file system is made with debootstrap (variant minbase, from the
# mirror this machine's apt already uses, or debootstrap's default mirror) and
# imported under IMAGE with `docker import`. Elsewhere, where a registry is
# reachable, plain `docker build` pulls the real image and this script is not
# needed. Needs root (debootstrap) and the debootstrap package.
# Environment: RLHF_DEBIAN_MIRROR overrides the mirror; RLHF_BASE_REBUILD=1
# rebuilds even when IMAGE exists.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMAGE=${1:-$(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' "$HERE/Dockerfile" | head -n1)}
SUITE=bookworm

if [ "${RLHF_BASE_REBUILD:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE: present"
  exit 0
fi

for tool in debootstrap tar; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-base.sh: $tool not found (apt-get install debootstrap)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "build-base.sh: debootstrap needs root" >&2; exit 1; }

# The Debian mirror apt already uses here (deb822 .sources or one-line .list);
# empty = debootstrap's default.
mirror_from_apt() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (uri != "" && hit) { print uri; exit } uri = ""; hit = 0; next }
      tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security/ || suite ~ /security/) { uri = $i; break } }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
      END { if (uri != "" && hit) print uri }' "$f"
  done | head -n1
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" { u = ""; s = ""
        for (i = 2; i <= NF; i++) { if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; continue }
          if (u == "") u = $i; else { s = $i; break } }
        if (s == suite) print u }' "$f"
  done | head -n1
}
MIRROR=${RLHF_DEBIAN_MIRROR:-$(mirror_from_apt | head -n1)}

WORK=$(mktemp -d /tmp/rlhf-base.XXXXXX)
cleanup() {
  # a failed debootstrap can leave /proc or /sys mounted inside the tree
  for m in proc sys dev/pts dev; do umount -l "$WORK/root/$m" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "base image $IMAGE: missing; debootstrap $SUITE (minbase) from ${MIRROR:-the default mirror of debootstrap}"
start=$(date +%s)
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$WORK/root" ${MIRROR:+"$MIRROR"} \
  >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; echo "build-base.sh: debootstrap failed" >&2; exit 1; }

# apt inside the image: the suite and its updates from the mirror debootstrap
# used, security from where this machine's apt gets it (if it does)
M=$(awk '$1 == "deb" { print $2; exit }' "$WORK/root/etc/apt/sources.list")
SEC=$(SUITE=$SUITE-security; mirror_from_apt | head -n1)
{
  echo "deb $M $SUITE main"
  echo "deb $M $SUITE-updates main"
  [ -z "$SEC" ] || echo "deb $SEC $SUITE-security main"
} >"$WORK/root/etc/apt/sources.list.new"
mv "$WORK/root/etc/apt/sources.list.new" "$WORK/root/etc/apt/sources.list"
# what the official slim image does: no docs, no caches
rm -rf "$WORK/root/var/lib/apt/lists/"* "$WORK/root/var/cache/apt/"*.bin \
  "$WORK/root/var/cache/apt/archives/"*.deb "$WORK/root/usr/share/doc/"* \
  "$WORK/root/usr/share/man/"* "$WORK/root/usr/share/info/"* "$WORK/root/var/log/"*.log
cat >"$WORK/root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
CFG
echo 'APT::Install-Recommends "false";' >"$WORK/root/etc/apt/apt.conf.d/99no-recommends"

tar --numeric-owner --xattrs -C "$WORK/root" -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $SUITE" - "$IMAGE" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')
echo "base image $IMAGE: imported in $(($(date +%s) - start)) s, $size"
