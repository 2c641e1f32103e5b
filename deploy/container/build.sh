#!/usr/bin/env bash
# `make container`: the bento (`make build`), then its OCI image with `bentoml containerize`.
#
#   deploy/container/build.sh [IMAGE_TAG]        # default: $IMAGE_TAG, else fraud_scorer:latest
#
# The image is also tagged with the bento's own tag (fraud_scorer:<version>).
# - A Docker engine answers (`docker info`): the docker backend, the bento's base (python:3.11-slim).
# - Otherwise: buildah (daemonless; installed with apt when missing), storage in .tools/container.
#   When the bento's base cannot be pulled (no registry reachable), the first FROM is replaced at
#   build time (`buildah build --from`, passed as `--opt from=...`) by a local Debian bookworm +
#   Python 3.11 base made by base.sh (cached). The bento itself is not changed: on a normal machine
#   the standard base is used.
# Environment: BENTO (default fraud_scorer:latest), BENTO_BUILD=0 (skip `make build`),
# BASE_IMAGE (force a base), FORCE_ENGINE=podman|docker, PULL_TIMEOUT (s, default 60).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

IMAGE_TAG=${1:-${IMAGE_TAG:-fraud_scorer:latest}}
BENTO=${BENTO:-fraud_scorer:latest}
start=$SECONDS

if [ "${BENTO_BUILD:-1}" != 0 ]; then
  log "building the bento (make build)"
  "${NICE[@]}" make --no-print-directory build
fi
[ -x "$BENTOML" ] || die "$BENTOML not found: run make build first"

bento_path=$("$BENTOML" get "$BENTO" -o path 2>/dev/null) || die "no bento $BENTO in the store (make build)"
bento_tag="$(basename "$(dirname "$bento_path")"):$(basename "$bento_path")"
bento_base=$(sed -n 's/^  base_image: *//p' "$bento_path/bento.yaml" | head -1)
bento_base=${bento_base:-python:3.11-slim}
log "bento $bento_tag (base image $bento_base)"

setup_engine
tags=(-t "$IMAGE_TAG")
[ "$IMAGE_TAG" = "$bento_tag" ] || tags+=(-t "$bento_tag")

if [ "$ENGINE" = docker ]; then
  "${NICE[@]}" "$BENTOML" containerize "$bento_tag" --backend docker "${tags[@]}"
else
  opts=()
  base=${BASE_IMAGE:-}
  if [ -z "$base" ]; then
    full=$bento_base
    [[ "$full" == */* ]] || full=docker.io/library/$full
    if podman image exists "$full"; then
      log "using $full from local storage"
    elif log "pulling $full (timeout ${PULL_TIMEOUT:-60} s)" &&
         timeout "${PULL_TIMEOUT:-60}" podman pull -q "$full" >/dev/null 2>&1; then
      log "pulled $full"
    else
      log "$full cannot be pulled (no registry reachable?): using the local base $LOCAL_BASE_IMAGE"
      "$(dirname "$0")/base.sh"
      base=$LOCAL_BASE_IMAGE
    fi
  fi
  [ -z "$base" ] || opts+=(--opt "from=$base")
  log "containerize with buildah${base:+ (FROM replaced by $base)}"
  "${NICE[@]}" "$BENTOML" containerize "$bento_tag" --backend buildah "${tags[@]}" "${opts[@]}"
fi

# The writable places of a read-only deployment, declared as VOLUME (BentoML's Dockerfile has no
# way to): on ECS Fargate a task volume mounted at a path the image declares gets the image
# directory's owner and mode (bentoml, from image-setup.sh) instead of root 0755.
# IMAGE_VOLUMES=0 skips it. The list is smoke.sh's WRITABLE_PATHS and deploy/ecs.yaml's MountPoints.
if [ "${IMAGE_VOLUMES:-1}" != 0 ]; then
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  from=$IMAGE_TAG
  [ "$ENGINE" = docker ] || [[ "$from" == */* ]] || from=localhost/$from
  printf 'FROM %s\nVOLUME ["/tmp", "/home/bentoml/prometheus_multiproc_dir"]\n' "$from" >"$ctx/Containerfile"
  log "declaring VOLUME /tmp /home/bentoml/prometheus_multiproc_dir"
  if [ "$ENGINE" = docker ]; then
    docker build -q -f "$ctx/Containerfile" "${tags[@]}" "$ctx" >/dev/null
  else
    buildah build --quiet --pull=false --layers=false -f "$ctx/Containerfile" "${tags[@]}" "$ctx" >/dev/null
  fi
fi

size=$("${CTR[@]}" image inspect --format '{{.Size}}' "$IMAGE_TAG")
log "image $IMAGE_TAG ($bento_tag): $((size / 1000000)) MB, built in $((SECONDS - start)) s with $ENGINE"
