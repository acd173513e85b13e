//! The benchmark's entry point (run it through `deploy/bench.sh`, which builds everything
//! first): parses the flags and prints the report; see `pipeline_bench` for what is measured.
//!
//!   bench [--orders N] [--rounds R] [--backlog N] [--latency-secs S]
//!         [--latency-warmup-secs W] [--latency-rate R] [--intake-orders N]
//!         [--intake-concurrency C] [--out DIR]

use pipeline_bench::{Args, Options};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::from_env();
    let options = Options {
        orders: args.optional_number("--orders").unwrap_or(200_000),
        rounds: args.optional_number("--rounds").unwrap_or(5),
        backlog: args.optional_number("--backlog").unwrap_or(1_000_000),
        latency_secs: args.optional_number("--latency-secs").unwrap_or(10),
        latency_warmup_secs: args.optional_number("--latency-warmup-secs").unwrap_or(2.0),
        latency_rate: args.optional_number("--latency-rate").unwrap_or(1000.0),
        intake_orders: args.optional_number("--intake-orders").unwrap_or(20_000),
        intake_concurrency: args.optional_number("--intake-concurrency").unwrap_or(64),
        out_dir: args
            .optional("--out")
            .map_or_else(|| PathBuf::from("target/bench"), PathBuf::from),
    };
    if options.orders == 0 || options.rounds == 0 || options.intake_concurrency == 0 {
        pipeline_bench::fail(&"--orders, --rounds and --intake-concurrency must be at least 1");
    }
    // `f64` parses "NaN" too.
    if options.latency_warmup_secs.is_nan() || options.latency_warmup_secs < 0.0 {
        pipeline_bench::fail(&"--latency-warmup-secs must be 0 or more");
    }
    match pipeline_bench::run(options) {
        Ok(report) => {
            pipeline_bench::print_text(&report);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench failed: {err}");
            ExitCode::FAILURE
        }
    }
}
