#!/usr/bin/env bash
# Install the Debian packages aispend runs for real (Prometheus, Alertmanager, and gcc
# for the fake NVML library the GPU tests build, docker-compose to validate
# docker-compose.yml) when they are missing.
set -euo pipefail

missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null \
  || missing+=(prometheus-alertmanager)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
# `docker-compose config` validates docker-compose.yml in the tests (no engine needed).
command -v docker-compose >/dev/null || missing+=(docker-compose)
for pkg in "$@"; do
  command -v "${pkg%%:*}" >/dev/null || missing+=("${pkg#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "aispend needs the Debian packages: ${missing[*]}" >&2
  echo "Run as root, or: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
