//! Service plumbing shared by `order-producer`, `order-tracker` and `topic-init`: the pieces
//! every service needs and none should write twice.
//!
//! - [`config`]: environment variables into typed structs, with one-line errors that name the
//!   variable and what it accepts.
//! - [`kafka`]: the one place where librdkafka settings are decided, so the services cannot
//!   drift apart on delivery guarantees.
//! - [`delivery`]: producers whose delivery reports a thread of ours serves (no idle spin, and
//!   a flat-out sender may serve its own).
//! - [`telemetry`]: `tracing` set-up (readable or JSON, `RUST_LOG` filtered).
//! - [`shutdown`]: SIGTERM/SIGINT turned into a value that running work can wait on.
//! - [`launch`]: the whole of a thin `main`: subcommands, config, logs, signals, exit code.
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`, and the `healthcheck` probe that the
//!   shell-less images use instead of curl.
//! - [`allocator`]: jemalloc for Rust and librdkafka alike, bounded.
//! - [`metrics`]: what both services export alike: build and Kafka client versions, latency
//!   histogram buckets.

pub mod allocator;
pub mod config;
pub mod delivery;
pub mod health;
pub mod kafka;
pub mod launch;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
