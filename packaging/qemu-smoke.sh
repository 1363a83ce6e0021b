#!/usr/bin/env bash
# Runs the arm64 relay from the built .deb under qemu-user, with native `hearth` clients
# through a full exchange: alice joins with the relay's first invite, bob with an invite
# from `hearth-relay invite` (also run under qemu), alice makes a room, invites bob, bob
# joins and reads what alice sent.
#
# Usage: packaging/qemu-smoke.sh [path/to/hearth-relay_VERSION_arm64.deb]
# Needs: qemu-user, libc6-dev-arm64-cross (the arm64 loader and libraries), a native
#        release build of hearth (cargo build --release -p hearth-cli), or HEARTH_BIN=PATH
#        naming another native hearth binary.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
deb=${1:-$(ls "$target_dir"/debian/hearth-relay_*_arm64.deb | tail -1)}
hearth=${HEARTH_BIN:-$target_dir/release/hearth}
command -v qemu-aarch64 >/dev/null || { echo "qemu-smoke: sudo apt-get install qemu-user" >&2; exit 1; }
[ -x "$hearth" ] || { echo "qemu-smoke: cargo build --release -p hearth-cli first" >&2; exit 1; }

work=$(mktemp -d)
relay_pid=
cleanup() {
    set +e
    HEARTH_PROFILE=$work/alice "$hearth" lock >/dev/null 2>&1
    HEARTH_PROFILE=$work/bob "$hearth" lock >/dev/null 2>&1
    if [ -n "$relay_pid" ]; then
        kill "$relay_pid" 2>/dev/null
        wait "$relay_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The package's files in a temporary root, as dpkg would install them.
dpkg-deb -x "$deb" "$work/root"
file "$work/root/usr/bin/hearth-relay" | grep -q "ARM aarch64" \
    || { echo "qemu-smoke: $deb does not hold an aarch64 relay" >&2; exit 1; }
relay() {
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$work/root/usr/bin/hearth-relay" \
        --data "$work/relay" "$@"
}

port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkfifo "$work/banner"
# Not through `relay`: $! must be qemu's own pid, for the cleanup to stop it.
RUST_LOG=warn qemu-aarch64 -L /usr/aarch64-linux-gnu "$work/root/usr/bin/hearth-relay" \
    --data "$work/relay" --listen "127.0.0.1:$port" --public-host 127.0.0.1 >"$work/banner" &
relay_pid=$!
first=
while read -r line; do
    echo "relay: $line"
    case $line in
        "first admin invite"*) first=${line##* } ;;
        data:*) break ;;
    esac
done <"$work/banner"
cat "$work/banner" >/dev/null &
[ -n "$first" ] || { echo "qemu-smoke: no first invite" >&2; exit 1; }

export HEARTH_PASSPHRASE="qemu smoke test" HEARTH_TEST_FAST_KDF=1 NO_COLOR=1
hearth_as() { local who=$1; shift; HEARTH_PROFILE=$work/$who "$hearth" "$@"; }
hearth_as alice init --invite "$first" --name alice
second=$(relay invite --uses 1)
hearth_as bob init --invite "$second" --name bob
hearth_as alice room create family
hearth_as alice room invite family bob
hearth_as bob room join family
hearth_as alice send family "hello from a native client through the emulated Pi"
out=$(hearth_as bob read family --all)
echo "$out"
grep -q "hello from a native client through the emulated Pi" <<<"$out"
relay status | head -3
echo "qemu-smoke: ok: $(basename "$deb") served a full exchange under qemu-aarch64"
