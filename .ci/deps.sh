#!/bin/sh
# Install the Debian packages named as arguments that are not installed yet.
# As root: apt-get update + install. Otherwise: print the exact line and fail.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages:$missing" >&2
  echo "run: sudo apt-get update && sudo apt-get install -y$missing" >&2
  exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null || {
  echo "apt-get install failed for:$missing" >&2; exit 1; }
