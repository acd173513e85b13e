#!/usr/bin/env bash
# Makes `docker compose` (Compose v2, the command the README gives) available where only
# Compose v1 (`docker-compose`) or no Compose is installed, as Docker Engine packages of older
# distributions leave it.
#
#   deploy/install-compose-v2.sh      no-op when `docker compose version` already works
#
# It installs Debian 13's `docker-compose` package (Compose 2.x) as a Docker CLI plugin for
# this user, in ${DOCKER_CONFIG:-~/.docker}/cli-plugins/, without installing the package itself
# (its /usr/bin/docker-compose would replace v1's): the .deb is downloaded with apt from trixie
# (deploy/standins/trixie-apt.sh, signature checked by apt) and only the plugin is unpacked.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[compose-v2] %s\n' "$*" >&2; }

if version="$(docker compose version --short 2>/dev/null)" && [[ "$version" == 2.* || "$version" == v2.* ]]; then
    log "docker compose $version is installed"
    exit 0
fi
command -v apt-get >/dev/null || { log "no 'docker compose' and no apt-get to install it with"; exit 1; }

# shellcheck source=deploy/standins/trixie-apt.sh
source "$here/standins/trixie-apt.sh"
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "downloading Debian trixie's docker-compose package"
trixie_apt_download "$work" docker-compose
deb="$(compgen -G "$work/docker-compose_*.deb" | head -n1)"
[[ -n "$deb" ]] || { log "download failed"; exit 1; }
dpkg-deb -x "$deb" "$work/root"
mkdir -p "$plugins"
install -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" "$plugins/docker-compose"
log "installed $(basename "$deb") as $plugins/docker-compose: $(docker compose version)"
