#!/bin/sh
# A pipeline container's main process for a part that `movierec <part> start` starts in the
# background (the Kafka broker, Airflow's four components): start it, stay while
# `movierec <part> status` says it is healthy, stop it cleanly on SIGTERM (podman stop).
# The container ends when the part does, so the runtime's restart policy sees it.
set -u
part="$1"
movierec "$part" start || exit 1
shift
[ "$#" -gt 0 ] && movierec "$part" "$@"   # e.g. `topics` or `unpause` once it is up
trap 'movierec "$part" stop; exit 0' TERM INT
while movierec "$part" status >/dev/null 2>&1; do
  sleep 15 &
  wait $!
done
echo "movierec $part is no longer healthy; stopping the container" >&2
movierec "$part" stop
exit 1
