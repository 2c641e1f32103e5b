#!/usr/bin/env bash
# `make container-test`: builds the image (build.sh) and checks it the way it will run in
# production: read-only root file system with only the writable paths below on tmpfs, a random key
# from the environment, a non-root serving process, no .env, no key and no test tools inside.
#
#   deploy/container/smoke.sh [IMAGE_TAG]     # default: $IMAGE_TAG, else fraud_scorer:latest
#
# Environment: SMOKE_BUILD=0 (test an existing image, no build), READY_TIMEOUT (s, default 90),
# READ_ONLY=0 (writable root file system), FORCE_ENGINE=podman|docker.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

IMAGE_TAG=${1:-${IMAGE_TAG:-fraud_scorer:latest}}
READY_TIMEOUT=${READY_TIMEOUT:-90}
# The only paths the service writes at run time (the ECS task definition mounts the same ones):
# /tmp (worker sockets, temp files) and BentoML's Prometheus multiprocess directory, which must be
# writable by the service user when it exists (image-setup.sh makes it): BentoML uses an existing
# empty one without checking, and metrics then fail. $BENTOML_HOME/{bentos,models,envs,tmp} exist
# in the image (image-setup.sh) and are only looked at.
WRITABLE_PATHS=(/tmp /home/bentoml/prometheus_multiproc_dir)

fail() { printf '[smoke] FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf '[smoke] ok: %s\n' "$*" >&2; }

if [ "${SMOKE_BUILD:-1}" != 0 ]; then
  "$(dirname "$0")/build.sh" "$IMAGE_TAG"
fi
setup_engine
command -v curl >/dev/null 2>&1 || die "curl is needed"
"${CTR[@]}" image inspect "$IMAGE_TAG" >/dev/null 2>&1 || fail "no image $IMAGE_TAG (run build.sh)"

key=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name=fraudscore-smoke-$$
base_url=http://127.0.0.1:$port

cleanup() {
  local rc=$?
  if [ $rc -ne 0 ] && "${CTR[@]}" container inspect "$name" >/dev/null 2>&1; then
    echo "[smoke] last container logs:" >&2
    "${CTR[@]}" logs --tail 40 "$name" >&2 2>&1 || true
  fi
  "${CTR[@]}" rm -f -v "$name" >/dev/null 2>&1 || true
  rm -f "/tmp/smoke-body.$$"
  exit $rc
}
trap cleanup EXIT

# the decision log in SQLite on the /tmp tmpfs (production: PostgreSQL, FRAUD_STORE_URL), so the
# smoke sees the writer process write in the image
run_args=(-d --name "$name" -p "127.0.0.1:$port:3000" -e "FRAUD_API_KEYS=$key" -e "FRAUD_DATA_DIR=/tmp/fraudscore-data")
if [ "$ENGINE" = podman ]; then
  # podman's default RLIMIT_NOFILE (1048576) is refused on some hosts: use this shell's hard
  # limits (nproc capped at 32768, the most runc is allowed to set here).
  nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
  run_args+=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")
fi
if [ "${READ_ONLY:-1}" != 0 ]; then
  run_args+=(--read-only)
  [ "$ENGINE" = podman ] && run_args+=(--read-only-tmpfs=false)   # only the mounts below
  # owned by the service user: podman's U option (it ignores mode= here), Docker's mode=1777
  tmpfs_opts=rw,noexec,nosuid,nodev,size=64m
  if [ "$ENGINE" = podman ]; then tmpfs_opts+=,U; else tmpfs_opts+=,mode=1777; fi
  for p in "${WRITABLE_PATHS[@]}"; do run_args+=(--tmpfs "$p:$tmpfs_opts"); done
fi

started=$(date +%s.%N)
"${CTR[@]}" run "${run_args[@]}" "$IMAGE_TAG" >/dev/null || fail "the container did not start"
code=000
deadline=$((SECONDS + READY_TIMEOUT))
while [ $SECONDS -lt $deadline ]; do
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$base_url/readyz" || true)
  [ "$code" = 200 ] && break
  state=$("${CTR[@]}" container inspect --format '{{.State.Status}}' "$name" 2>/dev/null || echo gone)
  [ "$state" = running ] || fail "the container stopped while starting (state: $state)"
  sleep 0.25
done
[ "$code" = 200 ] || fail "/readyz answered $code, not 200, within ${READY_TIMEOUT} s"
mode="read-only root file system, tmpfs: ${WRITABLE_PATHS[*]}"
[ "${READ_ONLY:-1}" != 0 ] || mode="writable root file system"
ok "/readyz 200 $(python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')") s after the container start ($mode)"

# post PATH KEY(optional) -> prints "status body"
post() {
  local path=$1 k=${2:-} hdr=()
  [ -z "$k" ] || hdr=(-H "X-API-Key: $k")
  curl -s -m 10 -o /tmp/smoke-body.$$ -w '%{http_code}' "${hdr[@]}" -H 'Content-Type: application/json' \
    --data-binary @model/sample_fraud.json "$base_url$path"
}
check_json() {  # BODY_FILE KEY...
  python3 - "$@" <<'EOF'
import json, sys
body = json.load(open(sys.argv[1]))
missing = [k for k in sys.argv[2:] if k not in body]
if missing:
    sys.exit(f"missing keys {missing} in {body}")
EOF
}

status=$(post /fraud_score "$key")
[ "$status" = 200 ] || fail "POST /fraud_score with the key: $status $(cat /tmp/smoke-body.$$)"
check_json /tmp/smoke-body.$$ fraud_score fraud_probability is_fraud decision threshold model_version transaction_id \
  || fail "POST /fraud_score: unexpected body"
ok "POST /fraud_score 200: $(cat /tmp/smoke-body.$$)"

status=$(post /v1/fraud-score "$key")
[ "$status" = 200 ] || fail "POST /v1/fraud-score with the key: $status $(cat /tmp/smoke-body.$$)"
check_json /tmp/smoke-body.$$ fraud-score is-fraud model-version || fail "POST /v1/fraud-score: unexpected body"
ok "POST /v1/fraud-score 200: $(cat /tmp/smoke-body.$$)"

for path in /fraud_score /v1/fraud-score; do
  status=$(post "$path")
  [ "$status" = 403 ] || fail "POST $path without a key answered $status, not 403"
  status=$(post "$path" "wrong-${key}")
  [ "$status" = 403 ] || fail "POST $path with a wrong key answered $status, not 403"
done
ok "no key / wrong key: 403"

metrics=$(curl -s -m 10 "$base_url/metrics") || fail "GET /metrics failed"
grep -Eq '^fraud_decisions_total\{decision="block".*\} [1-9]' <<<"$metrics" \
  || fail "/metrics does not count the scored transaction (fraud_decisions_total)"
ok "/metrics counts the decisions"

# the decision log's writer process runs in the image (read-only root, its own interpreter) and
# writes what was scored: it gets records every 200 ms, so a few seconds is plenty
for _ in $(seq 1 20); do
  metrics=$(curl -s -m 10 "$base_url/metrics") || fail "GET /metrics failed"
  grep -Eq '^fraud_decision_log_written_total [1-9]' <<<"$metrics" && break
  sleep 0.5
done
grep -Eq '^fraud_decision_log_written_total [1-9]' <<<"$metrics" \
  || fail "the decision log wrote nothing within 10 s (fraud_decision_log_written_total)"
ok "the decision log's writer process writes the decisions"

# every process in the container (the server and its workers) runs as a non-root user
# shellcheck disable=SC2016  # expanded by the shell in the container
uids=$("${CTR[@]}" exec "$name" sh -c 'for p in /proc/[0-9]*; do [ -r "$p/status" ] && awk "/^Uid:/ {print \$2}" "$p/status"; done | sort -u' | xargs)
[ -n "$uids" ] || fail "could not read the container's process uids"
case " $uids " in *" 0 "*) fail "a process in the container runs as root (uids: $uids)";; esac
user=$("${CTR[@]}" image inspect --format '{{.Config.User}}' "$IMAGE_TAG")
if [ -z "$user" ] || [ "$user" = root ] || [ "$user" = 0 ]; then fail "image USER is '$user'"; fi
ok "processes run as uid(s) $uids (image USER $user)"

dotenv=$("${CTR[@]}" exec "$name" sh -c 'find / -xdev -name .env 2>/dev/null; find /home/bentoml /app -name .env 2>/dev/null' | sort -u)
[ -z "$dotenv" ] || fail "a .env file is in the image: $dotenv"
img_env=$("${CTR[@]}" image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE_TAG")
secret_env=$(grep -E '^(FRAUD_API_KEYS|API_KEY|[A-Z_]*(SECRET|PASSWORD|TOKEN)[A-Z_]*)=' <<<"$img_env" || true)
[ -z "$secret_env" ] || fail "the image environment holds a key or secret: $secret_env"
grep -qxF "BENTOML_CONFIG=/home/bentoml/bento/src/configuration.yaml" <<<"$img_env" \
  || fail "the image does not set BENTOML_CONFIG to the bento's configuration.yaml"
ok "no .env, no key in the image environment; BENTOML_CONFIG is the bento's configuration.yaml"

devtools=$("${CTR[@]}" exec "$name" python -c '
import importlib.util
print(" ".join(m for m in ("pytest", "hypothesis", "sklearn", "skops", "ruff") if importlib.util.find_spec(m)))')
[ -z "$devtools" ] || fail "test/training packages in the image: $devtools"
ok "no test or training packages (pytest, hypothesis, sklearn, skops, ruff)"

echo "[smoke] PASS: $IMAGE_TAG ($ENGINE, $((  $("${CTR[@]}" image inspect --format '{{.Size}}' "$IMAGE_TAG") / 1000000 )) MB)" >&2
