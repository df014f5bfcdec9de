# Sourced first by the make*.sh scripts here (as root): runs the calling script again inside a
# fresh network namespace, so that its `lo` carries only that script's traffic, and ends with
# its exit status; inside the namespace it brings `lo` up, defines `workdir` and returns to the
# script.
if [ -z "${BTCAP_IN_NS:-}" ]; then
    NS=btcap$$
    ip netns add "$NS"
    trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
    ip netns exec "$NS" env BTCAP_IN_NS=1 bash "$0" "$@"
    exit $?
fi
ip link set lo up

# workdir PREFIX: makes the script's scratch directory $WORK (/tmp/PREFIX.XXXXXX, world-readable:
# opentracker drops to nobody) and an empty PIDS; at exit every process in PIDS is killed and
# $WORK removed.
workdir() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$WORK"
    PIDS=()
    trap cleanup EXIT
}
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 0.5
    rm -rf "$WORK"
}
