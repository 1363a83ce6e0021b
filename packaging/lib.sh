# Shared by build-debs.sh and build-static.sh (sourced, not run): what the builds need,
# checked before anything is built, and the man pages and completions both ship.
#
# Every check that fails is collected with the command that fixes it; `need_report`
# prints them all at once and stops, or runs them with --install-missing.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
generated=$root/packaging/generated
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
rust_version=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
install_missing=${INSTALL_MISSING:-0}
missing=()     # "what is missing|the command that installs it"

# sudo when not root (apt-get needs it), nothing when root.
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# need_cmd COMMAND WHAT INSTALL-COMMAND: COMMAND must be on PATH.
need_cmd() {
    command -v "$1" >/dev/null 2>&1 || missing+=("$2 ($1)|$3")
}

# need_apt PACKAGE FILE: the Debian package must be installed (FILE is one of its files).
need_apt_file() {
    [ -e "$2" ] || missing+=("Debian package $1 ($2)|sudo apt-get install -y $1")
}

# Rust from rustup, new enough for the workspace; then the rustup targets given.
need_rust() {
    local t installed=
    if ! command -v cargo >/dev/null 2>&1 || ! command -v rustup >/dev/null 2>&1; then
        missing+=("Rust from rustup, at least $rust_version (Debian's cargo is too old)|curl https://sh.rustup.rs -sSf | sh -s -- -y")
    else
        local have
        have=$(rustc --version | awk '{print $2}')
        if [ "$(printf '%s\n%s\n' "$rust_version" "$have" | sort -V | head -1)" != "$rust_version" ]; then
            missing+=("Rust $rust_version or newer (this is $have)|rustup update stable")
        fi
        installed=$(rustup target list --installed 2>/dev/null)
    fi
    for t in "$@"; do
        grep -qx "$t" <<<"$installed" || missing+=("the Rust standard library for $t|rustup target add $t")
    done
}

# cargo-deb (after need_rust: it is installed with cargo).
need_cargo_deb() {
    if ! command -v cargo-deb >/dev/null 2>&1; then
        missing+=("cargo-deb, which builds the packages|cargo install cargo-deb --locked --version ^3.8")
    fi
}

# Prints what is missing and stops, or (--install-missing) installs it and goes on.
need_report() {
    local script=$1 entry updated=
    [ ${#missing[@]} -gt 0 ] || return 0
    if [ "$install_missing" = 1 ]; then
        for entry in "${missing[@]}"; do
            echo "$script: installing ${entry%%|*}: ${entry#*|}" >&2
            case ${entry#*|} in
                sudo\ apt-get\ *)
                    [ -n "$updated" ] || sudo_if_needed apt-get update -q
                    updated=1
                    eval "sudo_if_needed ${entry#*|sudo }"
                    ;;
                *) eval "${entry#*|}" ;;
            esac
            # A fresh rustup puts cargo in ~/.cargo/bin, not yet on PATH.
            if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
        done
        missing=()
        return 0
    fi
    echo "$script: cannot build yet, missing:" >&2
    for entry in "${missing[@]}"; do
        printf '  %-62s %s\n' "${entry%%|*}" "${entry#*|}" >&2
    done
    echo "Run those commands, or run the script again with --install-missing." >&2
    exit 1
}

# bin_of PACKAGE: the program a cargo package builds.
bin_of() {
    case $1 in
        hearth-relay) echo hearth-relay ;;
        hearth-cli) echo hearth ;;
        *) echo "unknown package $1 (hearth-relay or hearth-cli)" >&2; exit 2 ;;
    esac
}

# write_docs DIR PACKAGE...: man pages (one per command, gzipped) and bash, zsh and fish
# completions into packaging/generated/{relay,hearth}, written by the programs in DIR
# (built for this machine: the grammar is the same on every architecture; DOC_RUNNER, e.g.
# qemu-aarch64, runs them when they are not).
write_docs() {
    local dir=$1 package bin out run
    read -r -a run <<<"${DOC_RUNNER:-}"
    shift
    for package in "$@"; do
        bin=$(bin_of "$package")
        out=$generated/${bin#hearth-}    # relay, or hearth for the client
        rm -rf "$out"
        mkdir -p "$out/man" "$out/completions"
        "${run[@]}" "$dir/$bin" man --out-dir "$out/man" >/dev/null
        gzip -9n "$out/man"/*.1
        "${run[@]}" "$dir/$bin" completions bash >"$out/completions/$bin.bash"
        "${run[@]}" "$dir/$bin" completions zsh >"$out/completions/_$bin"
        "${run[@]}" "$dir/$bin" completions fish >"$out/completions/$bin.fish"
    done
}

# timed LABEL COMMAND...: runs COMMAND, then prints how long it took.
timed() {
    local label=$1 start=$SECONDS
    shift
    "$@"
    echo "[$label: $((SECONDS - start)) s]" >&2
}
