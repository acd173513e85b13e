//! The benchmark behind `deploy/bench.sh`: the services against the thinnest loops the same
//! rdkafka build allows and against seed-style Python clients, on one test broker, in one run.
//!
//! Why it is shaped so:
//! - Absolute figures on the test broker (tansu) say little: its latency floor and throughput
//!   ceiling are its own. What holds from machine to machine is the *ratio* of a service to a
//!   client doing the least possible work on the same broker in the same minute. So every row
//!   is run once per round, rounds are interleaved (the order inside a round rotates), each
//!   figure is the median over rounds, and each ratio is the median of the per-round ratios.
//! - Every client gets the same librdkafka settings: the services' own, from
//!   `service_runtime::kafka` (the loops build their clients from it; the Python clients get its
//!   properties as JSON). So acks, idempotence, linger, compression, fetch and queue limits are
//!   equal, and a comparison measures the code, not the configuration.
//! - Memory and CPU come from the operating system's accounting of each whole process
//!   ([`process`]). A producer's headline rate is its steady rate, read afterwards from its
//!   topic: the orders between the 10th and 90th percentile of their CreateTimes over the time
//!   between those two, because an idempotent producer waits 50 ms or 550 ms for its ProducerId
//!   by luck, and over a whole run that luck outweighs the code ([`startup`]). Orders over the
//!   process's whole wall time (start-up and final flush included) are kept beside it. Consumer
//!   throughput is from the first order handled to the last, because joining a group on tansu
//!   takes seconds that say nothing about the consumer.
//! - Latency is from a message's CreateTime (stamped by librdkafka when the producer hands it
//!   over) to the moment the consumer has handled it; for the tracker that is the timestamp of
//!   its per-order log line, which it writes once the order is tracked. Its percentiles count
//!   only the orders created after a warm-up (`--latency-warmup-secs`, 2 s, at most half the
//!   run), for every pair alike: the orders created during the ProducerId wait would otherwise
//!   be the whole p99. The first order's latency is reported beside them.
//!
//! Nothing here is a timed test: CI runs the benchmark once with a tiny count only to keep it
//! working.

pub mod intake;
pub mod process;
pub mod report;
mod scenarios;
mod startup;

pub use scenarios::{Options, run};

use std::fmt::Display;

/// `--name value` and `--flag` arguments of the small benchmark programs.
#[derive(Debug)]
pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Self {
        Args(std::env::args().skip(1).collect())
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|arg| arg == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    /// Whether `--flag` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|arg| arg == name)
    }

    /// A value that must be given.
    pub fn required(&self, name: &str) -> String {
        self.value(name)
            .unwrap_or_else(|| fail(&format!("{name} is required")))
            .to_string()
    }

    /// A value that may be given.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.value(name).map(str::to_string)
    }

    /// A number that must be given.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> T {
        self.optional_number(name)
            .unwrap_or_else(|| fail(&format!("{name} is required")))
    }

    /// A number that may be given.
    pub fn optional_number<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.value(name).map(|text| {
            text.parse()
                .unwrap_or_else(|_| fail(&format!("{name} wants a number, not {text:?}")))
        })
    }
}

/// Prints `error` on stderr and exits 1.
pub fn fail(error: &dyn Display) -> ! {
    eprintln!("error: {error}");
    std::process::exit(1)
}

/// One JSON line on stdout (the benchmark programs' only output).
pub fn print_json(value: &serde_json::Value) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{value}");
    let _ = stdout.flush();
}

/// Kafka settings from `vars` exactly as the services read them (`KAFKA_*`).
pub fn kafka_settings(
    vars: &[(String, String)],
) -> Result<service_runtime::kafka::KafkaSettings, service_runtime::config::ConfigError> {
    use service_runtime::config::{COMMON_VARIABLES, Env};
    service_runtime::kafka::KafkaSettings::from_env(&Env::new(vars, &[COMMON_VARIABLES]))
}

/// Text on stdout.
pub fn print_text(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Wall-clock milliseconds since the epoch, the unit of Kafka timestamps.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
