#!/bin/sh
# Runs inside the image build (bentofile.yaml docker.setup_script), as root, after the Python
# packages are installed. Prepares the image for a read-only root file system: BentoML creates
# $BENTOML_HOME/{bentos,models,envs,tmp} at start when they are missing (they stay empty in a
# container: the bento and its models live in $BENTO_PATH), so they are made here, owned by the
# non-root user. $BENTOML_HOME/prometheus_multiproc_dir is made too, with the owner and mode a
# volume mounted there must get (ECS Fargate copies them when the image declares it with VOLUME,
# see deploy/container/build.sh). Writable at run time: /tmp and that directory only.
set -eu
home=${BENTOML_HOME:-/home/bentoml/}
user=bentoml
for d in bentos models envs tmp prometheus_multiproc_dir; do
  mkdir -p "$home/$d"
  chown "$user:$user" "$home/$d"
  chmod 0755 "$home/$d"
done
chmod 1777 /tmp
