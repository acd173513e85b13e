#!/usr/bin/env bash
# Builds a local stand-in for prom/prometheus, the image of docker-compose.yml's `observability`
# profile, on machines that cannot pull it: Debian 13's own `prometheus` package in a Debian 13
# (trixie) root filesystem made with debootstrap.
#
#   deploy/standins/prometheus.sh      build (or reuse) the stand-in, print STANDIN_PROMETHEUS_IMAGE=
#
# It is run exactly as the real image is: the entrypoint is the prometheus binary, so the
# compose file's `command:` (flags only) and its mounted configuration apply unchanged; it runs
# as nobody (65534), as prom/prometheus does, and /prometheus (the data volume) belongs to that
# user. Debian packages an older Prometheus (2.x) than the pinned image (3.5): the scrape
# configuration and the dashboard's PromQL are kept to what both accept, which is what the test
# that uses this stand-in proves for 2.x (and promtool, also 2.x, for the configuration).
#
# Needs root (debootstrap) and reaches Debian's mirror. The image is labelled with a hash of this
# script; a re-run reuses it unless the script changed or FORCE=1.
set -euo pipefail

STANDIN_PROMETHEUS_IMAGE="${STANDIN_PROMETHEUS_IMAGE:-order-pipeline-standin/prometheus:latest}"
DEBIAN_SUITE="${DEBIAN_SUITE:-trixie}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FORCE="${FORCE:-0}"

log() { printf '[standin-prometheus] %s\n' "$*" >&2; }
as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

inputs="$(cat "${BASH_SOURCE[0]}" <(echo "$DEBIAN_SUITE $DEBIAN_MIRROR") | sha256sum | cut -c1-64)"
current="$(docker image inspect -f '{{ index .Config.Labels "org.order-pipeline.standin.inputs" }}' \
    "$STANDIN_PROMETHEUS_IMAGE" 2>/dev/null || true)"
if [[ "$FORCE" != 1 && "$current" == "$inputs" ]]; then
    log "$STANDIN_PROMETHEUS_IMAGE is up to date"
    printf 'STANDIN_PROMETHEUS_IMAGE=%s\n' "$STANDIN_PROMETHEUS_IMAGE"
    exit 0
fi

command -v debootstrap >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null

work="$(mktemp -d)"
# debootstrap leaves root-owned files behind, hence as_root for the clean-up.
trap 'as_root rm -rf "$work"' EXIT
rootfs="$work/rootfs"

log "debootstrap $DEBIAN_SUITE (minbase) with prometheus from $DEBIAN_MIRROR"
# --include installs the package with its dependencies and runs its maintainer scripts in the
# chroot, as apt would in an image build (it creates the `prometheus` system user; we do not
# use it, see below).
as_root debootstrap --variant=minbase --include=prometheus "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
[[ -x "$rootfs/usr/bin/prometheus" ]] || { log "no /usr/bin/prometheus in the rootfs"; exit 1; }
version="$(as_root chroot "$rootfs" /usr/bin/prometheus --version 2>&1 | head -n1)"
log "$version"

# prom/prometheus keeps its data in /prometheus, owned by nobody; a named volume mounted there
# takes this ownership on first use.
as_root install -d -m 0755 -o 65534 -g 65534 "$rootfs/prometheus"
# Package lists and caches are not needed at run time.
as_root rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb

log "importing $STANDIN_PROMETHEUS_IMAGE"
as_root tar -C "$rootfs" --numeric-owner -c . | docker import \
    -c 'USER 65534:65534' \
    -c 'WORKDIR /prometheus' \
    -c 'EXPOSE 9090' \
    -c 'ENTRYPOINT ["/usr/bin/prometheus"]' \
    -c 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]' \
    -c "LABEL org.order-pipeline.standin.inputs=$inputs" \
    -c "LABEL org.opencontainers.image.description=\"Local stand-in for prom/prometheus: Debian $DEBIAN_SUITE prometheus package ($version)\"" \
    - "$STANDIN_PROMETHEUS_IMAGE" >/dev/null
printf 'STANDIN_PROMETHEUS_IMAGE=%s\n' "$STANDIN_PROMETHEUS_IMAGE"
