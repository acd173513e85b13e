//! Logging through `tracing`: readable lines by default, JSON with `LOG_FORMAT=json`, filtered by
//! `RUST_LOG` (default `info`). librdkafka's own log lines arrive through the same subscriber
//! (target `librdkafka`) because rdkafka is built with its `tracing` feature.
//!
//! Logs go to stdout, where `docker compose logs` reads them; ANSI colours are used only when
//! stdout is a terminal so captured logs stay greppable.

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(std::io::stdout().is_terminal());
    // `try_init` fails only if a subscriber is already installed (a test that set its own):
    // that one is kept.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
