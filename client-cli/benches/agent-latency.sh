#!/usr/bin/env bash
# One-shot command latency with the profile's agent running (issue 12): starts a relay
# on 127.0.0.1, makes two profiles and a room, then times N runs each of `hearth send`
# and `hearth read` on a warm agent, and prints the median and p90 in milliseconds.
#
#   cargo build -p hearth-cli -p hearth-relay [--release]
#   client-cli/benches/agent-latency.sh [target/debug|target/release] [N]
set -euo pipefail
bin=${1:-target/debug}
runs=${2:-51}
work=$(mktemp -d)
trap 'kill "$relay_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export HEARTH_PASSPHRASE="bench passphrase" HEARTH_TEST_FAST_KDF=1
"$bin/hearth-relay" --data "$work/relay" --listen 127.0.0.1:0 >"$work/relay.out" 2>&1 &
relay_pid=$!
for _ in $(seq 100); do grep -q 'first admin invite' "$work/relay.out" && break; sleep 0.1; done
invite() { "$bin/hearth-relay" --data "$work/relay" invite --uses 1 --expires 1h | grep -o 'hearth://[^ ]*invite[^ ]*' | tail -1; }
"$bin/hearth" --profile "$work/alice" init --invite "$(invite)" --name alice >/dev/null
"$bin/hearth" --profile "$work/bob" init --invite "$(invite)" --name bob >/dev/null
"$bin/hearth" --profile "$work/alice" room create bench >/dev/null
"$bin/hearth" --profile "$work/alice" room invite bench bob >/dev/null
"$bin/hearth" --profile "$work/bob" room join bench >/dev/null

measure() {
    local label=$1; shift
    local times=()
    for i in $(seq "$runs"); do
        local start end
        start=$(date +%s%N)
        "$@" "$i" >/dev/null
        end=$(date +%s%N)
        times+=($(( (end - start) / 1000 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '
        { t[NR] = $1 }
        END { printf "%-28s runs %d  median %.1f ms  p90 %.1f ms\n", label, NR, t[int((NR+1)/2)]/1000, t[int(NR*0.9)]/1000 }'
}
send() { "$bin/hearth" --profile "$work/alice" send bench "message $1"; }
read_() { "$bin/hearth" --profile "$work/bob" read --all bench; }
measure "hearth send (agent)" send
measure "hearth read --all (agent)" read_
nosend() { "$bin/hearth" --no-agent --profile "$work/alice" send bench "direct $1"; }
"$bin/hearth" --profile "$work/alice" lock >/dev/null
runs=5 measure "hearth send --no-agent" nosend
