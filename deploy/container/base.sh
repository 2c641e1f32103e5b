#!/usr/bin/env bash
# Builds (once) the local stand-in for python:3.11-slim, for machines where no registry is
# reachable: a Debian bookworm root file system made with debootstrap (Python 3.11, pip, venv,
# CA certificates including this host's extra CAs), imported into podman's storage as
# $LOCAL_BASE_IMAGE. The root file system tarball is cached under .tools/container/base/ and the
# image is rebuilt only when its inputs change (suite, packages, uv version, host CA certificates).
#
# What the BentoML 1.4 Dockerfile needs from a base (env/docker/Dockerfile in the bento):
# groupadd/useradd, apt-get, /bin/sh, `uv` (else it runs `pip install uv`, which Debian's
# externally-managed Python refuses) and a python3.11 that `uv venv --python 3.11` finds on PATH.
# uv (pinned like the Makefile's) is preinstalled, and python/python3/pip links go in /usr/local/bin
# like in the python:*-slim images.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-pip,python3-venv,ca-certificates
UV_VERSION=${UV_VERSION:-$(sed -n 's/^UV_VERSION *:= *//p' "$REPO_ROOT/Makefile")}
UV_VERSION=${UV_VERSION:-0.13.8}
BASE_SCRIPT_VERSION=2

[ "$(id -u)" -eq 0 ] || die "base.sh needs root (debootstrap, chroot)"
setup_engine
[ "$ENGINE" = podman ] || die "base.sh is for the daemonless (podman) path only"

extra_cas=()
if [ -d /usr/local/share/ca-certificates ]; then
  while IFS= read -r -d '' f; do extra_cas+=("$f"); done \
    < <(find /usr/local/share/ca-certificates -type f -name '*.crt' -print0 | sort -z)
fi
key=$( { echo "$BASE_SCRIPT_VERSION $SUITE $MIRROR $PACKAGES uv=$UV_VERSION $(uname -m)";
         [ ${#extra_cas[@]} -eq 0 ] || cat "${extra_cas[@]}"; } | sha256sum | cut -c1-16)

current=$(podman image inspect --format '{{ index .Labels "fraudscore.base-key" }}' "$LOCAL_BASE_IMAGE" 2>/dev/null || true)
if [ "$current" = "$key" ]; then
  log "local base $LOCAL_BASE_IMAGE is up to date (key $key)"
  exit 0
fi

tarball=$CONTAINER_DIR/base/rootfs-$key.tar
if [ ! -s "$tarball" ]; then
  log "building the local base root file system (debootstrap $SUITE minbase; a few minutes, once)"
  mkdir -p "$CONTAINER_DIR/base"
  rootfs=$(mktemp -d "$CONTAINER_DIR/base/rootfs.XXXXXX")
  cleanup_rootfs() { mountpoint -q "$rootfs/proc" && umount "$rootfs/proc"; rm -rf "$rootfs"; }
  trap cleanup_rootfs EXIT
  "${NICE[@]}" debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
    >"$CONTAINER_DIR/base/debootstrap.log" 2>&1 \
    || { tail -20 "$CONTAINER_DIR/base/debootstrap.log" >&2; die "debootstrap failed (log: $CONTAINER_DIR/base/debootstrap.log)"; }
  # Slim like debian:*-slim (what python:*-slim is built on): apt keeps no .deb files and no
  # translations, dpkg installs no documentation (the image's own apt-get install inherits this).
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
DPKG
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/groff/* "$rootfs"/usr/share/lintian/*
  # A TLS-inspecting proxy on the way to PyPI/apt adds its CA to the host: the build needs it too.
  if [ ${#extra_cas[@]} -gt 0 ]; then
    cp "${extra_cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
  fi
  cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  # a clean environment: nothing of this host's PIP_*/SSL_* settings leaks into the chroot
  local_env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
  chroot "$rootfs" "${local_env[@]}" update-ca-certificates >/dev/null 2>&1
  # uv lands in /usr/local/bin (Debian's pip installs there as root)
  chroot "$rootfs" "${local_env[@]}" PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "${NICE[@]}" python3 -m pip install --quiet --no-cache-dir --break-system-packages "uv==$UV_VERSION"
  umount "$rootfs/proc"
  for link in python:python3 python3:python3 pip:pip3 pip3:pip3; do
    ln -sf "/usr/bin/${link#*:}" "$rootfs/usr/local/bin/${link%%:*}"
  done
  chroot "$rootfs" "${local_env[@]}" /bin/sh -c 'python --version && uv --version && pip --version' >&2
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/*.log "$rootfs"/root/.cache "$rootfs"/tmp/*
  : >"$rootfs/etc/resolv.conf"   # the runtime provides its own
  "${NICE[@]}" tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  cleanup_rootfs
  trap - EXIT
  # keep only the current tarball
  find "$CONTAINER_DIR/base" -name 'rootfs-*.tar' ! -name "rootfs-$key.tar" -delete
fi

log "importing $tarball as $LOCAL_BASE_IMAGE"
"${NICE[@]}" podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL fraudscore.base-key=$key" \
  --change "LABEL org.opencontainers.image.description=Local Debian $SUITE base with Python 3.11 (stand-in for python:3.11-slim)" \
  --change 'CMD ["python3"]' \
  "$tarball" "$LOCAL_BASE_IMAGE" >/dev/null
log "local base ready: $LOCAL_BASE_IMAGE ($(podman image inspect --format '{{.Size}}' "$LOCAL_BASE_IMAGE") bytes)"
