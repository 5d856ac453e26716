#!/usr/bin/env bash
# Install the Debian packages aispend needs when they are missing: python3-venv (the
# venv), Prometheus and Alertmanager (run for real), gcc for the fake NVML library the
# GPU tests build, docker-compose to validate docker-compose.yml.
set -euo pipefail

missing=()
# The venv needs python3 with its venv module (ensurepip): on Debian that is python3-venv.
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || missing+=(python3)
"$python" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
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

# Installed here for their binaries only. On a systemd host Debian starts them as
# services on :9090 and :9093, the ports `make demo` and `aispend stack up` use.
if [ -d /run/systemd/system ]; then
  for pkg in prometheus prometheus-alertmanager; do
    if printf '%s\n' "${missing[@]}" | grep -qx "$pkg"; then
      echo "stopping and disabling the $pkg service the package started (aispend runs its own)"
      systemctl disable --now "$pkg" || true
    fi
  done
fi
