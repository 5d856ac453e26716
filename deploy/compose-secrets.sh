#!/usr/bin/env bash
# Create the secret files docker-compose.yml mounts, where missing (never overwrites).
#
#   deploy/compose-secrets.sh            # into .run/compose-secrets/ (or $AISPEND_SECRETS_DIR)
#
# Names come from the `secrets:` section of docker-compose.yml; each new file gets a
# random token (the demo's chat sink accepts any; put real ones there for real
# receivers: a PagerDuty routing key, a chat bearer token). The directory is 0700 so other host users cannot read it; the files are 0644
# so the containers' own users (grafana, nobody, aispend) can read their bind mounts.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${AISPEND_SECRETS_DIR:-./.run/compose-secrets}"
mkdir -p "$dir"
chmod 700 "$dir"
names=$(sed -n 's#^ *file: \${AISPEND_SECRETS_DIR:-\./\.run/compose-secrets}/\([A-Za-z0-9_.-]*\)$#\1#p' docker-compose.yml)
if [ -z "$names" ]; then
  echo "compose-secrets: no secrets found in docker-compose.yml" >&2
  exit 1
fi
for name in $names; do
  path="$dir/$name"
  if [ -e "$path" ]; then
    echo "kept    $path"
    continue
  fi
  value=$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | cut -c1-40)
  (umask 022 && printf '%s' "$value" >"$path")
  chmod 644 "$path"
  echo "created $path"
done
echo "Grafana: user admin, password in $dir/grafana_admin_password"
