#!/usr/bin/env bash
# The machine tools the containers need, from Debian's packages: podman (with buildah and runc;
# no Docker engine needed), debootstrap for the base image, HAProxy and wrk for the rollout
# bench. As root they are installed; otherwise a missing one is an error naming the command.
set -euo pipefail
# command -> the Debian package that provides it (catatonit: the init process of `run --init`)
declare -A PACKAGES=(
  [podman]=podman [buildah]=buildah [runc]=runc [debootstrap]=debootstrap
  [haproxy]=haproxy [wrk]=wrk [/usr/libexec/podman/catatonit]=catatonit
)
missing=()
for command in "${!PACKAGES[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$command" >/dev/null || missing+=("${PACKAGES[$command]}")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "container tools present: ${!PACKAGES[*]}"
  exit 0
fi
install=(apt-get install -y -o DPkg::Lock::Timeout=600 "${missing[@]}")
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${missing[*]}; install them as root with: ${install[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} (Debian's packages)"
apt-get update -o DPkg::Lock::Timeout=600 -qq
DEBIAN_FRONTEND=noninteractive "${install[@]}"
