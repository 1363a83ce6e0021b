#!/bin/sh
# The Raspberry Pi stand-in for `hearth-bench relay --wrap bench/pi-standin.sh`: runs the
# server it is given pinned to one core (`taskset -c 1`) in a memory cgroup capped at
# 256 MiB (HEARTH_PI_MEMORY bytes to change it). Needs root to make the cgroup; where
# systemd runs, `--wrap "systemd-run --scope -p MemoryMax=256M taskset -c 1"` is the same.
set -eu
cap=${HEARTH_PI_MEMORY:-268435456}
if [ -d /sys/fs/cgroup/memory ]; then
    # cgroup v1
    group=/sys/fs/cgroup/memory/hearth-pi-standin
    mkdir -p "$group"
    echo "$cap" > "$group/memory.limit_in_bytes"
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    # cgroup v2
    group=/sys/fs/cgroup/hearth-pi-standin
    mkdir -p "$group"
    echo "$cap" > "$group/memory.max"
else
    echo "pi-standin: no memory cgroup on this machine" >&2
    exit 1
fi
echo $$ > "$group/cgroup.procs"
exec taskset -c 1 "$@"
