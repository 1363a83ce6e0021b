#!/usr/bin/env bash
# Builds the Debian packages of hearth from one x86_64 Debian or Ubuntu machine:
#   hearth-relay_VERSION-1_{amd64,arm64}.deb   the relay, its systemd service and man pages
#   hearth_VERSION-1_{amd64,arm64}.deb         the terminal client, its man pages
# arm64 is for 64-bit Raspberry Pi OS (Bookworm or newer) on a Pi 3, 4 or 5.
# (packaging/build-static.sh builds static binaries for other distributions.)
#
# Usage: packaging/build-debs.sh [--install-missing] [amd64] [arm64]   (default: both)
# Output: target/debian/*.deb (or $CARGO_TARGET_DIR/debian)
# It first checks everything it needs and lists what is missing with the command that
# installs it; --install-missing (or INSTALL_MISSING=1) runs those commands instead.
# PACKAGES="hearth-relay" builds only the relay's packages (default: hearth-relay hearth-cli);
# DOC_BIN_DIR=DIR takes the man pages and completions from binaries for this machine that
# are already built there (e.g. target/debug) instead of the release build.
#
# Needs (see packaging/README.md):
#   Rust from rustup, at least the rust-version in Cargo.toml
#   cargo install cargo-deb --locked
#   for arm64: rustup target add aarch64-unknown-linux-gnu
#              sudo apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$root"

arches=()
for arg in "$@"; do
    case $arg in
        --install-missing) install_missing=1 ;;
        amd64 | arm64) arches+=("$arg") ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-debs: unknown argument $arg (amd64, arm64, --install-missing)" >&2; exit 2 ;;
    esac
done
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64)
read -r -a packages <<<"${PACKAGES:-hearth-relay hearth-cli}"
for package in "${packages[@]}"; do bin_of "$package" >/dev/null; done
[ "$(uname -m)" = x86_64 ] || { echo "build-debs: run it on an x86_64 machine (this is $(uname -m))" >&2; exit 1; }

# 0. Everything needed, checked before anything is built.
targets=()
for arch in "${arches[@]}"; do
    case $arch in
        amd64) ;;    # this machine's own target, which rustup always installs
        arm64)
            targets+=(aarch64-unknown-linux-gnu)
            need_cmd aarch64-linux-gnu-gcc "the arm64 cross compiler" \
                "sudo apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
            command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 \
                && need_apt_file libc6-dev-arm64-cross /usr/aarch64-linux-gnu/lib/crt1.o
            ;;
    esac
done
need_cmd dpkg-deb "dpkg-deb" "sudo apt-get install -y dpkg"
need_cmd gzip "gzip" "sudo apt-get install -y gzip"
need_rust ${targets[@]+"${targets[@]}"}
need_cargo_deb
need_report build-debs

package_args=$(printf -- '-p %s ' "${packages[@]}")

# 1. The binaries for this machine (amd64: they are also the packaged ones), and from them
#    the man pages and completions (the grammar is the same on every architecture).
if [ -z "${DOC_BIN_DIR:-}" ] || [[ " ${arches[*]} " == *" amd64 "* ]]; then
    timed "release build, x86_64" nice -n "${NICE:-10}" cargo build --release --locked $package_args
fi
write_docs "${DOC_BIN_DIR:-$target_dir/release}" "${packages[@]}"

# 2. One package per program and architecture; cargo-deb strips the binaries (host
#    `strip`, or aarch64-linux-gnu-strip for arm64).
mkdir -p "$target_dir/debian"
for arch in "${arches[@]}"; do
    target_args=()
    if [ "$arch" = arm64 ]; then
        target=aarch64-unknown-linux-gnu
        target_args=(--target "$target")
        # ring's C and assembly parts and the final link use the cross gcc.
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
        timed "release build, $target" nice -n "${NICE:-10}" \
            cargo build --release --locked $package_args "${target_args[@]}"
    fi
    # Both programs are built in one cargo run (above), so that shared dependencies are
    # built once with the same features; cargo-deb only packages them (--no-build).
    for package in "${packages[@]}"; do
        cargo deb --locked --no-build -p "$package" "${target_args[@]}" \
            --strip --no-dbgsym --no-separate-debug-symbols \
            --output "$target_dir/debian/"
    done
done
ls -l "$target_dir"/debian/*.deb
