#!/bin/sh
# Builds the relay, the CLI and the stress tools, then runs one tool:
#   stress/run.sh kill-loop --kills 100
#   stress/run.sh client-kill-loop --kills 30
#   stress/run.sh disk-full            (mounts a tmpfs: run as root, or pass --no-mount)
#   stress/run.sh soak --duration-secs 60
# PROFILE=debug builds without --release (faster to build, slower to run).
set -eu
tool=${1:?usage: stress/run.sh kill-loop|client-kill-loop|disk-full|soak [ARGS...]}
shift
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
flag=--release
[ "$profile" = debug ] && flag=
cargo build $flag -p hearth-relay -p hearth-cli -p hearth-stress
target=${CARGO_TARGET_DIR:-target}
exec "$target/$profile/$tool" "$@"
