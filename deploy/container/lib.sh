# Sourced by build.sh, base.sh and smoke.sh: picks the container engine and, when no Docker
# engine runs, sets up daemonless podman/buildah with everything kept under .tools/container
# (git-ignored): storage, configuration, the cached local base image.
# shellcheck shell=bash

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONTAINER_DIR=${CONTAINER_DIR:-$REPO_ROOT/.tools/container}
BENTOML=${BENTOML:-$REPO_ROOT/.venv/bin/bentoml}
# Heavy steps run at the lowest CPU and I/O priority (CI runners and dev machines stay usable).
NICE=(nice -n 19 ionice -c3)
# The base used when the standard one (python:3.11-slim) cannot be pulled: see base.sh.
LOCAL_BASE_IMAGE=${LOCAL_BASE_IMAGE:-localhost/fraudscore-base:bookworm-py311}

log() { printf '[container] %s\n' "$*" >&2; }
die() { printf '[container] ERROR: %s\n' "$*" >&2; exit 1; }

# ENGINE=docker when a Docker engine answers, else podman (daemonless; builds with buildah).
# FORCE_ENGINE=podman|docker overrides the detection.
detect_engine() {
  if [ -n "${FORCE_ENGINE:-}" ]; then
    ENGINE=$FORCE_ENGINE
  elif command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
    ENGINE=docker
  else
    ENGINE=podman
  fi
  export ENGINE
}

# Installs buildah/podman/runc (and what base.sh and smoke.sh need) with apt when missing.
DAEMONLESS_PACKAGES=(buildah podman runc debootstrap fuse-overlayfs uidmap containernetworking-plugins
                     iptables catatonit slirp4netns curl ca-certificates)
ensure_daemonless_tools() {
  local missing=() tool
  for tool in buildah podman runc debootstrap fuse-overlayfs curl iptables; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 \
      || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  log "installing ${DAEMONLESS_PACKAGES[*]} with apt (missing: ${missing[*]})"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "${NICE[@]}" apt-get install -y -qq --no-install-recommends \
    "${DAEMONLESS_PACKAGES[@]}" >/dev/null
  for tool in "${missing[@]}"; do
    PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 || die "$tool still missing after apt-get install"
  done
}

# Storage and engine configuration for podman and buildah, private to this checkout.
# Overlay (kernel overlayfs, root only) when it works here, else vfs (slower, more disk).
setup_podman_env() {
  mkdir -p "$CONTAINER_DIR"
  local conf=$CONTAINER_DIR/storage.conf driver=${STORAGE_DRIVER:-}
  if [ -z "$driver" ]; then
    if [ -f "$CONTAINER_DIR/driver" ]; then
      driver=$(cat "$CONTAINER_DIR/driver")
    else
      driver=vfs
      if [ "$(id -u)" -eq 0 ] && grep -qw overlay /proc/filesystems && _overlay_works; then driver=overlay; fi
      echo "$driver" >"$CONTAINER_DIR/driver"
    fi
  fi
  cat >"$conf" <<EOF
[storage]
driver = "$driver"
graphroot = "$CONTAINER_DIR/storage"
runroot = "$CONTAINER_DIR/run"
EOF
  # runc: crun fails on hosts with hybrid cgroups ("cgroups in hybrid mode not supported").
  cat >"$CONTAINER_DIR/containers.conf" <<EOF
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  export CONTAINERS_STORAGE_CONF=$conf
  export CONTAINERS_CONF=$CONTAINER_DIR/containers.conf
  export BUILDAH_ISOLATION=chroot
  export BUILDAH_RUNTIME=runc
  export BUILDAH_LAYERS=true   # cache layers between builds: a warm rebuild reuses the apt/pip steps
}

_overlay_works() {
  local d
  d=$(mktemp -d "$CONTAINER_DIR/ovl.XXXXXX") || return 1
  mkdir -p "$d/l" "$d/u" "$d/w" "$d/m"
  if mount -t overlay overlay -o "lowerdir=$d/l,upperdir=$d/u,workdir=$d/w" "$d/m" 2>/dev/null; then
    umount "$d/m"; rm -rf "$d"; return 0
  fi
  rm -rf "$d"; return 1
}

# The engine command as an array: CTR=(docker) or CTR=(podman).
setup_engine() {
  detect_engine
  if [ "$ENGINE" = podman ]; then
    ensure_daemonless_tools
    setup_podman_env
  fi
  # shellcheck disable=SC2034  # used by the scripts that source this file
  CTR=("$ENGINE")
}
