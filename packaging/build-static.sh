#!/usr/bin/env bash
# Builds static (musl) binaries of hearth and hearth-relay for Linux distributions other
# than Debian and Raspberry Pi OS, from one x86_64 Debian or Ubuntu machine:
#   target/static/hearth-VERSION-x86_64-linux-musl.tar.gz
#   target/static/hearth-VERSION-aarch64-linux-musl.tar.gz
# Each holds bin/hearth, bin/hearth-relay (stripped, no shared libraries at all), the man
# pages, bash/zsh/fish completions, the relay's systemd unit as an example and the
# licences, laid out for `sudo tar -C /usr/local --strip-components=1 -xzf FILE`.
#
# Usage: packaging/build-static.sh [--install-missing] [x86_64] [aarch64]   (default: both)
# It first checks everything it needs and lists what is missing with the command that
# installs it; --install-missing (or INSTALL_MISSING=1) runs those commands instead.
#
# Needs (see packaging/README.md):
#   Rust from rustup, at least the rust-version in Cargo.toml
#   x86_64:  rustup target add x86_64-unknown-linux-musl;  sudo apt-get install musl-tools
#   aarch64: rustup target add aarch64-unknown-linux-musl
#            sudo apt-get install gcc-aarch64-linux-gnu qemu-user
# ring's C and assembly parts are compiled by musl-gcc (x86_64) or aarch64-linux-gnu-gcc
# (aarch64, which also links: Rust's musl targets bring their own C library and start
# files); qemu-aarch64 checks the aarch64 binaries run.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$root"

arches=()
for arg in "$@"; do
    case $arg in
        --install-missing) install_missing=1 ;;
        x86_64 | aarch64) arches+=("$arg") ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-static: unknown argument $arg (x86_64, aarch64, --install-missing)" >&2; exit 2 ;;
    esac
done
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)
[ "$(uname -m)" = x86_64 ] || { echo "build-static: run it on an x86_64 machine (this is $(uname -m))" >&2; exit 1; }

# 0. Everything needed, checked before anything is built.
targets=()
for arch in "${arches[@]}"; do
    targets+=("$arch-unknown-linux-musl")
    case $arch in
        x86_64) need_cmd musl-gcc "the musl C compiler wrapper" "sudo apt-get install -y musl-tools" ;;
        aarch64)
            need_cmd aarch64-linux-gnu-gcc "the arm64 cross compiler" "sudo apt-get install -y gcc-aarch64-linux-gnu"
            need_cmd qemu-aarch64 "qemu-user (runs the aarch64 binaries here)" "sudo apt-get install -y qemu-user"
            ;;
    esac
done
need_cmd file "file" "sudo apt-get install -y file"
need_cmd readelf "readelf" "sudo apt-get install -y binutils"
need_rust "${targets[@]}"
need_report build-static

# Distributed binaries: no debug information, symbols stripped by the linker.
export CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols
export CC_x86_64_unknown_linux_musl=musl-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc

out_dir=$target_dir/static
mkdir -p "$out_dir"
docs_written=
for arch in "${arches[@]}"; do
    target=$arch-unknown-linux-musl
    timed "release build, $target" nice -n "${NICE:-10}" \
        cargo build --release --locked -p hearth-relay -p hearth-cli --target "$target"
    bins=$target_dir/$target/release
    runner=
    [ "$arch" = x86_64 ] || runner=qemu-$arch

    # Static: no program interpreter, no shared libraries; and it runs.
    for bin in hearth hearth-relay; do
        echo "$bin ($target): $(file -b "$bins/$bin")"
        if readelf -lW "$bins/$bin" | grep -q 'program interpreter' \
            || readelf -dW "$bins/$bin" | grep -q '(NEEDED)'; then
            echo "build-static: $bins/$bin is not static (it names an interpreter or a shared library)" >&2
            exit 1
        fi
        $runner "$bins/$bin" --version
    done

    if [ -z "$docs_written" ]; then
        DOC_RUNNER=$runner write_docs "$bins" hearth-relay hearth-cli
        docs_written=1
    fi

    name=hearth-$version-$arch-linux-musl
    stage=$out_dir/$name
    rm -rf "$stage"
    install -D -m 0755 -t "$stage/bin" "$bins/hearth" "$bins/hearth-relay"
    install -D -m 0644 -t "$stage/share/man/man1" "$generated"/relay/man/*.1.gz "$generated"/hearth/man/*.1.gz
    for bin in hearth hearth-relay; do
        completions=$generated/${bin#hearth-}/completions
        install -D -m 0644 "$completions/$bin.bash" "$stage/share/bash-completion/completions/$bin"
        install -D -m 0644 "$completions/_$bin" "$stage/share/zsh/site-functions/_$bin"
        install -D -m 0644 "$completions/$bin.fish" "$stage/share/fish/vendor_completions.d/$bin.fish"
    done
    install -D -m 0644 -t "$stage/share/doc/hearth" README.md LICENSE-MIT LICENSE-APACHE \
        docs/user-guide.md docs/deploy-pi.md packaging/relay/debian/hearth-relay.service
    tar -C "$out_dir" --owner=0 --group=0 --numeric-owner -czf "$out_dir/$name.tar.gz" "$name"
    rm -rf "$stage"
done
ls -l "$out_dir"/*.tar.gz
