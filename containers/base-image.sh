#!/usr/bin/env bash
# The Debian bookworm base image, made locally: no image registry is reachable here, so
# debootstrap builds a minbase root filesystem from Debian's archive and podman imports it as
# localhost/debian:bookworm (the tag the Dockerfile starts FROM). A machine with a registry can
# skip this and build with --build-arg BASE_IMAGE=docker.io/library/debian:bookworm.
# Idempotent: an existing image is kept unless --force.
set -euo pipefail
TAG="${MOVIEREC_BASE_IMAGE:-localhost/debian:bookworm}"
SUITE=bookworm
MIRROR="${MOVIEREC_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "${1:-}" != "--force" ] && podman image exists "$TAG"; then
  echo "base image $TAG exists ($(podman image inspect --format '{{.Created}}' "$TAG")); --force rebuilds it"
  exit 0
fi
root="$(mktemp -d /var/tmp/movierec-debootstrap.XXXXXX)"
trap 'rm -rf "$root"' EXIT
began=$SECONDS
echo "base image: debootstrap --variant=minbase $SUITE from $MIRROR into $root (a few minutes)"
# debootstrap prints one line per step (retrieving, validating, unpacking, configuring packages).
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR"
# Nothing host-specific or cached goes into the image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/* "$root"/var/log/*.log
echo "base image: importing $(du -sh "$root" | cut -f1) as $TAG"
tar -C "$root" --numeric-owner -c . | podman import --message "debootstrap --variant=minbase $SUITE" - "$TAG" >/dev/null
echo "base image $TAG ready in $((SECONDS - began)) s"
