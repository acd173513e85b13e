# shellcheck shell=bash
# Sourced, not run: apt-get and apt-cache pointed at Debian 13 (trixie) on any Debian host,
# with their own package lists under .cache/trixie-apt, so the host's apt configuration and
# installed packages are neither used nor touched. The Release file is verified with the host's
# Debian archive keyring, as a normal apt source would be.
#
#   trixie_apt_update                        fetch trixie's package lists (once per hour)
#   trixie_apt_download DIR PKG...           download PKG's .deb files into DIR (not installed)
#   trixie_apt_candidates PKG...             one line "PKG VERSION" each
#
# Used by deploy/standins/build.sh (the distroless stand-in's packages) and
# deploy/install-compose-v2.sh (Debian's docker-compose 2.x package).

# The mirror and suites the real bases are made from; security updates included.
TRIXIE_APT_SOURCES='deb http://deb.debian.org/debian trixie main
deb http://deb.debian.org/debian trixie-updates main
deb http://deb.debian.org/debian-security trixie-security main'

trixie_apt_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.cache/trixie-apt"

trixie_apt_options() {
    printf '%s\n' \
        -o "Dir::Etc::SourceList=$trixie_apt_dir/sources.list" \
        -o "Dir::Etc::SourceParts=/dev/null" \
        -o "Dir::State::Lists=$trixie_apt_dir/lists" \
        -o "Dir::Cache=$trixie_apt_dir/cache" \
        -o "Dir::State::Status=/dev/null" \
        -o "APT::Sandbox::User=root"
}

trixie_apt_update() {
    mkdir -p "$trixie_apt_dir/lists/partial" "$trixie_apt_dir/cache/archives/partial"
    printf '%s\n' "$TRIXIE_APT_SOURCES" >"$trixie_apt_dir/sources.list"
    local stamp="$trixie_apt_dir/lists/.updated"
    if [[ -f "$stamp" && -n "$(find "$stamp" -mmin -60)" ]]; then return; fi
    local opts
    mapfile -t opts < <(trixie_apt_options)
    apt-get -qq "${opts[@]}" update >&2
    touch "$stamp"
}

trixie_apt_download() {
    local dest="$1" opts
    shift
    trixie_apt_update
    mapfile -t opts < <(trixie_apt_options)
    mkdir -p "$dest"
    (cd "$dest" && apt-get -qq "${opts[@]}" download "$@" >&2)
}

trixie_apt_candidates() {
    local opts
    trixie_apt_update
    mapfile -t opts < <(trixie_apt_options)
    apt-cache "${opts[@]}" policy "$@" | awk '/^[^ ]/ { p = $1; sub(/:$/, "", p) } /Candidate:/ { print p, $2 }'
}
