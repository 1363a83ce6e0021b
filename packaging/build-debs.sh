#!/usr/bin/env bash
# Builds the Debian packages of hearth from one x86_64 Debian or Ubuntu machine:
#   hearth-relay_VERSION-1_{amd64,arm64}.deb   the relay, its systemd service and man pages
#   hearth_VERSION-1_{amd64,arm64}.deb         the terminal client
# arm64 is for 64-bit Raspberry Pi OS (Bookworm or newer) on a Pi 3, 4 or 5.
#
# Usage: packaging/build-debs.sh [amd64] [arm64]      (default: both)
# Output: target/debian/*.deb (or $CARGO_TARGET_DIR/debian)
# PACKAGES="hearth-relay" builds only the relay's packages (default: hearth-relay hearth-cli);
# DOC_BIN_DIR=DIR takes the man pages and completions from binaries for this machine that
# are already built there (e.g. target/debug) instead of building them in release.
#
# Needs (see packaging/README.md):
#   Rust from rustup, at least the rust-version in Cargo.toml
#   cargo install cargo-deb --locked
#   for arm64: rustup target add aarch64-unknown-linux-gnu
#              sudo apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64)
target_dir=${CARGO_TARGET_DIR:-$root/target}
generated=$root/packaging/generated

need() {
    command -v "$1" >/dev/null || { echo "build-debs: $1 is missing: $2" >&2; exit 1; }
}
need cargo "install Rust with rustup (https://rustup.rs), not Debian's cargo package"
need cargo-deb "cargo install cargo-deb --locked"

read -r -a packages <<<"${PACKAGES:-hearth-relay hearth-cli}"
bin_of() { case $1 in hearth-relay) echo hearth-relay ;; hearth-cli) echo hearth ;; *) echo "build-debs: unknown package $1" >&2; exit 2 ;; esac; }

# 1. Man pages and completions, written by a build for this machine (the grammar is the
#    same on every architecture).
doc_bins=${DOC_BIN_DIR:-}
if [ -z "$doc_bins" ]; then
    cargo build --release --locked $(printf -- '-p %s ' "${packages[@]}")
    doc_bins=$target_dir/release
fi
for package in "${packages[@]}"; do
    bin=$(bin_of "$package")
    out=$generated/${bin#hearth-}    # relay, or hearth for the client
    rm -rf "$out"
    mkdir -p "$out/man" "$out/completions"
    "$doc_bins/$bin" man --out-dir "$out/man" >/dev/null
    gzip -9n "$out/man"/*.1
    "$doc_bins/$bin" completions bash >"$out/completions/$bin.bash"
    "$doc_bins/$bin" completions zsh >"$out/completions/_$bin"
    "$doc_bins/$bin" completions fish >"$out/completions/$bin.fish"
done

# 2. One package per program and architecture; cargo-deb strips the binaries.
for arch in "${arches[@]}"; do
    case $arch in
        amd64) target=x86_64-unknown-linux-gnu ;;
        arm64)
            target=aarch64-unknown-linux-gnu
            need aarch64-linux-gnu-gcc "sudo apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
            rustup target list --installed 2>/dev/null | grep -qx "$target" \
                || { echo "build-debs: rustup target add $target" >&2; exit 1; }
            # ring's C and assembly parts and the final link use the cross gcc.
            export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
            export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
            ;;
        *) echo "build-debs: unknown architecture $arch (amd64 or arm64)" >&2; exit 2 ;;
    esac
    for package in "${packages[@]}"; do
        cargo deb --locked -p "$package" --target "$target" \
            --strip --no-dbgsym --no-separate-debug-symbols \
            --output "$target_dir/debian/"
    done
done
ls -l "$target_dir"/debian/*.deb
