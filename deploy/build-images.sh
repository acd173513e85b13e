#!/usr/bin/env bash
# Builds the three service images (order-producer, order-tracker, topic-init) from
# deploy/Dockerfile and tags them as docker-compose.yml names them:
# ${IMAGE_PREFIX:-order-pipeline}/<role>:${IMAGE_TAG:-latest}.
#
#   deploy/build-images.sh                       compile inside the Dockerfile's builder stage
#   deploy/build-images.sh --from-binaries DIR   ship DIR/{order-producer,order-tracker,topic-init}
#                                                (e.g. target/release) instead of compiling
#
# RUNTIME_IMAGE, when set, replaces the runtime base (the registry-less stand-in from
# deploy/standins/build.sh); otherwise the digest pinned in the Dockerfile is used.
#
# --from-binaries replaces the Dockerfile's builder stage and nothing else, so the runtime
# stages that ship are the committed ones:
# - With buildx (CI, most workstations) a named build context called `builder` overrides the
#   stage of that name; the committed Dockerfile is used unchanged, and BuildKit skips the
#   chef/planner stages that nothing references any more.
# - Without buildx (Docker Engine with only the legacy builder, as on the test machine) there
#   are no named build contexts, and the legacy builder builds every stage before --target
#   even when nothing uses it (it would compile the whole workspace in the Rust image, which
#   it also cannot pull). So the script writes a derived Dockerfile: the committed global ARGs,
#   a two-line builder stage that COPYs the binaries to /out where the real builder puts them,
#   then the committed text from the runtime stage to the end, and it checks byte for byte
#   that this part is identical to the committed file before building anything.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dockerfile="$repo/deploy/Dockerfile"
ROLES=(order-producer order-tracker topic-init)
IMAGE_PREFIX="${IMAGE_PREFIX:-order-pipeline}"
IMAGE_TAG="${IMAGE_TAG:-latest}"
# The first line of the shipped part of the Dockerfile; everything from it on must be built
# exactly as committed.
# shellcheck disable=SC2016 # a literal line of the Dockerfile, not a shell expansion
RUNTIME_MARKER='FROM ${RUNTIME_IMAGE} AS runtime'

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

binaries=""
while (($#)); do
    case "$1" in
        --from-binaries) binaries="${2:?--from-binaries needs a directory}"; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

# The committed global ARGs: everything before the first FROM.
global_args() { awk '/^FROM /{ exit } 1' "$1"; }
# The shipped stages: from the runtime marker line to the end, verbatim.
runtime_stages() { awk -v marker="$RUNTIME_MARKER" '$0 == marker { found = 1 } found' "$1"; }

have_buildx() { docker buildx version >/dev/null 2>&1; }

# Labels: which commit and version an image was built from (the OCI labels in the runtime stage).
revision="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
version="$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo dev)"
common_args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision")
if [[ -n "${RUNTIME_IMAGE:-}" ]]; then
    common_args+=(--build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE")
    log "runtime base: $RUNTIME_IMAGE (instead of the pinned one)"
fi

# Checks that the host-built binaries are what the runtime base can run: executables whose
# shared libraries are all in distroless/cc (glibc and libgcc_s; librdkafka, OpenSSL, zlib and
# zstd are linked in statically).
check_binary() {
    local bin="$1" needed extra
    [[ -x "$bin" ]] || die "missing binary $bin (build it with: cargo build --release --locked --bins)"
    needed="$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
    extra="$(grep -vxE 'libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1' <<<"$needed" || true)"
    [[ -z "$extra" ]] || die "$bin needs libraries the runtime image does not have: $(tr '\n' ' ' <<<"$extra")"
}

build_from_source() {
    local role
    for role in "${ROLES[@]}"; do
        log "building $IMAGE_PREFIX/$role:$IMAGE_TAG from source"
        if have_buildx; then
            docker buildx build --load "${common_args[@]}" --target "$role" \
                -t "$IMAGE_PREFIX/$role:$IMAGE_TAG" -f "$dockerfile" "$repo"
        else
            DOCKER_BUILDKIT=0 docker build "${common_args[@]}" --target "$role" \
                -t "$IMAGE_PREFIX/$role:$IMAGE_TAG" -f "$dockerfile" "$repo"
        fi
    done
}

build_from_binaries() {
    local role
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # The builder stage's output layout: /out/<binary>.
    mkdir -p "$work/out"
    for role in "${ROLES[@]}"; do
        check_binary "$binaries/$role"
        cp "$binaries/$role" "$work/out/$role"
    done

    if have_buildx; then
        log "buildx found: committed Dockerfile, builder stage replaced by a named build context"
        for role in "${ROLES[@]}"; do
            docker buildx build --load "${common_args[@]}" --target "$role" \
                --build-context "builder=$work" \
                -t "$IMAGE_PREFIX/$role:$IMAGE_TAG" -f "$dockerfile" "$repo"
        done
        return
    fi

    log "no buildx: legacy builder, derived Dockerfile with only the builder stage replaced"
    grep -qxF "$RUNTIME_MARKER" "$dockerfile" || die "no line '$RUNTIME_MARKER' in $dockerfile"
    {
        global_args "$dockerfile"
        # A builder that only supplies the binaries, where the real one leaves them.
        printf 'FROM scratch AS builder\nCOPY out/ /out/\n\n'
        runtime_stages "$dockerfile"
    } >"$work/Dockerfile"
    if ! cmp -s <(runtime_stages "$dockerfile") <(runtime_stages "$work/Dockerfile") \
        || ! cmp -s <(global_args "$dockerfile") <(global_args "$work/Dockerfile"); then
        die "derived Dockerfile differs from the committed one outside the builder stage"
    fi
    log "checked: global ARGs and runtime stages are byte-identical to deploy/Dockerfile"
    for role in "${ROLES[@]}"; do
        DOCKER_BUILDKIT=0 docker build --quiet "${common_args[@]}" --target "$role" \
            -t "$IMAGE_PREFIX/$role:$IMAGE_TAG" -f "$work/Dockerfile" "$work" >/dev/null \
            2> >(grep -v -e '^DEPRECATED: The legacy builder' -e '^ *BuildKit is currently disabled' \
                -e '^ *environment-variable\.' -e '^ *Install the buildx' -e '^ *https://docs.docker.com/go/buildx' \
                -e '^$' >&2)
    done
}

if [[ -n "$binaries" ]]; then
    build_from_binaries
else
    build_from_source
fi

for role in "${ROLES[@]}"; do
    docker image inspect -f "{{ index .RepoTags 0 }} {{ .Size }}" "$IMAGE_PREFIX/$role:$IMAGE_TAG" \
        | awk '{ printf "[build-images] %s  %.1f MB\n", $1, $2 / 1000000 }' >&2
done
