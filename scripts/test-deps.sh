#!/usr/bin/env bash
# The serve tests need a real Redis and a headless Chromium from Debian's packages.
# Installs them when missing (as root); otherwise stops and names the command to run.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} for the serve tests (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >&2
else
  echo "the serve tests need ${missing[*]}: run  sudo apt-get install -y ${missing[*]}  and then npm test again" >&2
  exit 1
fi
