#!/usr/bin/env bash
# The benchmark: the services against the thinnest rdkafka loops and seed-style Python clients,
# on one test broker, interleaved, in one run. Prints a Markdown report (the README's Performance
# section shows the latest one). Not a test: nothing here asserts a speed.
#
# An idempotent producer starts sending 50 ms or 550 ms after it starts, by luck (librdkafka
# retries for its ProducerId after 500 ms). So a producer's headline rate is its steady rate,
# from the CreateTimes between the 10th and 90th percentile of its run (the whole-run rate is
# shown beside it), and latency percentiles leave out the orders created in a warm-up.
#
#   deploy/bench.sh                                  the full run (about 11 minutes on 2 cores)
#   deploy/bench.sh --orders 2000 --rounds 1 --backlog 5000 --latency-secs 2 --intake-orders 500
#                                                    a quick one (it checks that everything runs;
#                                                    2,000 orders are too few for a steady rate)
#
# Flags (all optional): --orders N (orders per throughput run, 200000), --rounds R (interleaved
# rounds, each figure is their median, 5), --backlog N (orders the tracker catches up in the
# memory rows, 1000000; 0 skips them), --latency-secs S (10; 0 skips the latency runs),
# --latency-warmup-secs W (orders created in a latency run's first W seconds are left out of its
# percentiles, 2, at most half the run), --latency-rate R (orders/s of the latency runs, 1000),
# --intake-orders N (orders posted to the HTTP intake per run, 20000; 0 skips those rows),
# --intake-concurrency C (concurrent HTTP clients, each waiting for its answer before the next
# order, 64; on loopback), --out DIR (each run's output, target/bench).
#
# BENCH_PROFILE=dev uses debug builds: only for checking that the benchmark still works (CI's
# smoke run); its figures mean nothing.
#
# Needs: the Rust toolchain, python3 with venv and pip (the Python clients are installed into
# target/test-python/ from services/pipeline-tests/python/requirements.txt), and GNU time at
# /usr/bin/time (Debian package `time`) for each process's peak memory and CPU time.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [[ ! -x /usr/bin/time ]]; then
    if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
        apt-get install -y -qq time >/dev/null
    else
        echo "bench: /usr/bin/time is missing; install GNU time (Debian: apt-get install time)" >&2
        exit 1
    fi
fi

profile="${BENCH_PROFILE:-release}"
if [[ "$profile" == "release" ]]; then
    # Line tables and symbols change no generated code; they let `perf report` name the
    # functions of exactly the binaries this run measured.
    export CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
    cargo build --release --locked --workspace --bins --examples
    dir=target/release
else
    cargo build --locked --workspace --bins --examples
    dir=target/debug
fi

echo "bench: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u '+%Y-%m-%d %H:%M UTC')" >&2
exec "$dir/examples/bench" "$@"
