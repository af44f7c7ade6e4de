#!/usr/bin/env bash
# Make podman stand in for a Docker engine, so that `./pants package ::` builds the service images here.
#
#   eval "$(scripts/containers/setup.sh)"    # set up (idempotent, ~1 s when already done), export settings
#   ./pants package docker::
#
# Progress goes to stderr; stdout carries only the `export` lines (DOCKER_HOST, BASE_IMAGE, CONTAINERS_CONF).
# What it does, each step skipped when already done:
#   1. installs podman, runc and debootstrap with apt (root only);
#   2. writes a containers.conf selecting runc (crun fails on hybrid cgroups) and ulimits below this
#      machine's open-files cap;
#   3. builds a Debian bookworm base image with python3 (3.11, the interpreter the pex files are built for)
#      with debootstrap and imports it as localhost/pm-base:bookworm, because no registry can be reached;
#   4. starts `podman system service` on a unix socket for the docker client that Pants runs.
# On a machine with a Docker engine none of this is needed: the Dockerfiles default to python:3.11-slim.
set -euo pipefail

STATE="${PM_CONTAINERS_STATE:-/tmp/pm-containers-$(id -u)}"
BASE_IMAGE_NAME="${PM_BASE_IMAGE:-localhost/pm-base:bookworm}"
DEBIAN_MIRROR="${PM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SOCKET="$STATE/podman.sock"
CONF="$STATE/containers.conf"

say() { echo "containers: $*" >&2; }
die() { say "$*"; exit 1; }

mkdir -p "$STATE"
exec 9>"$STATE/setup.lock"
flock 9

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them with: sudo apt-get install -y podman runc debootstrap"
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]} with apt-get"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

desired_conf='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"'
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$desired_conf" ]; then
  say "writing $CONF (runtime runc, ulimits within the open-files cap)"
  printf '%s\n' "$desired_conf" >"$CONF"
fi
export CONTAINERS_CONF="$CONF"

if podman image exists "$BASE_IMAGE_NAME"; then
  say "base image $BASE_IMAGE_NAME present"
else
  [ "$(id -u)" = 0 ] || die "building the base image needs root (debootstrap); run this script as root once"
  rootfs="$(mktemp -d "$STATE/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  say "building base image $BASE_IMAGE_NAME with debootstrap (Debian bookworm + python3, about a minute)"
  debootstrap --variant=minbase --include=python3 bookworm "$rootfs" "$DEBIAN_MIRROR" >"$STATE/debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $STATE/debootstrap.log"
  # Trim what a runtime image never reads; python3 and its standard library stay.
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*
  tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["python3"]' - "$BASE_IMAGE_NAME" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  say "imported $BASE_IMAGE_NAME"
fi

service_answers() { curl -fsS --max-time 3 --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }
if service_answers; then
  say "podman service answering on $SOCKET"
else
  if [ -f "$STATE/service.pid" ] && kill -0 "$(cat "$STATE/service.pid")" 2>/dev/null; then
    kill "$(cat "$STATE/service.pid")" 2>/dev/null || true
  fi
  rm -f "$SOCKET"
  say "starting podman system service on $SOCKET (log: $STATE/service.log)"
  # fd 9 (the setup lock) must not leak into the long-lived service, or the next run would wait forever.
  # It runs from $STATE: conmon fails ("Failed to get working directory") once the caller's folder is gone.
  (cd "$STATE" && exec nohup setsid podman system service --time=0 "unix://$SOCKET" >"$STATE/service.log" 2>&1 </dev/null 9>&-) &
  echo $! >"$STATE/service.pid"
  for _ in $(seq 1 100); do
    service_answers && break
    sleep 0.1
  done
  service_answers || die "podman service did not answer on $SOCKET; see $STATE/service.log"
fi

cat <<ENV
export DOCKER_HOST=unix://$SOCKET
export BASE_IMAGE=$BASE_IMAGE_NAME
export CONTAINERS_CONF=$CONF
ENV
