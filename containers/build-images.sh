#!/usr/bin/env bash
# Build the images of the Dockerfile's targets (default: service loadbalancer pipeline), each
# tagged localhost/movierec-<target>:<commit> and :latest. podman prints every build step as
# it goes; this script adds a line per image with its time and size.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(service loadbalancer pipeline)
# The tag and the image's revision label: the commit (IMAGE_TAG / GIT_COMMIT override them).
head="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
dirty=""
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then dirty="-dirty"; fi
commit="${GIT_COMMIT:-$head$dirty}"
tag="${IMAGE_TAG:-${head:0:12}$dirty}"
base="${BASE_IMAGE:-localhost/debian:bookworm}"
# The machine's CA bundle, for the build steps that fetch over HTTPS (PyPI, Maven Central): where
# an intercepting proxy stands between, its CA is in it. A build secret: never in a layer.
cacerts="${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
for target in "${targets[@]}"; do
  began=$SECONDS
  image="localhost/movierec-$target"
  echo "== image $image:$tag (target $target, from $base)"
  # --format docker: the OCI format has no HEALTHCHECK; --ulimit: the limits runc may set here.
  podman --runtime runc build --format docker --network host \
    --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
    --build-arg BASE_IMAGE="$base" --label org.opencontainers.image.revision="$commit" \
    --secret id=cacerts,src="$cacerts" \
    --target "$target" --tag "$image:$tag" .
  # :latest is what compose.yaml runs by default (TAG_LATEST=0 leaves it alone, as the tests do)
  [ "${TAG_LATEST:-1}" = 0 ] || podman tag "$image:$tag" "$image:latest"
  size=$(podman image inspect --format '{{.Size}}' "$image:$tag")
  echo "== $image:$tag built in $((SECONDS - began)) s, $((size / 1000000)) MB"
done
