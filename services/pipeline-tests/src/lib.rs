//! The test harness of the pipeline: not a service, never built into an image. It holds what
//! the integration tests in `tests/` share, so each test reads like the behaviour it proves:
//!
//! - [`broker`]: the test broker, tansu, fetched and hash-checked in this one place, started
//!   fresh per test on a free loopback port and killed when dropped;
//! - [`process`]: the real service binaries run as processes, their JSON logs collected;
//! - [`events`]: those logs read as facts, by their stable `event` field;
//! - [`topics`]: reading and writing topics directly, and creating them with `topic-init`;
//! - [`pipeline`]: a broker with fresh topics and the services configured for it;
//! - [`wait`]: [`eventually`], the one way the tests wait;
//! - [`window_totals`]: window totals from the orders themselves and from
//!   `order-tracker window-totals --json`, compared by the window tests;
//! - [`observability`]: the proof of docker-compose.yml's `observability` profile (Prometheus
//!   finds every service by name; every dashboard query returns data), callable on any stack;
//! - [`python`]: clients the project did not write (Python's `confluent-kafka`, `jsonschema`),
//!   in a pinned virtual environment, for the tests that need an outside view;
//! - [`compose`]: driving `docker compose` and reading the services' JSON logs from it, for
//!   the end-to-end test (`tests/compose.rs`).

pub mod broker;
pub mod compose;
pub mod events;
pub mod observability;
pub mod pipeline;
pub mod process;
pub mod python;
pub mod topics;
pub mod wait;
pub mod window_totals;

pub use broker::{TestBroker, free_port, tansu_binary};
pub use events::{Delivered, Event, OrderLine};
pub use pipeline::{Pipeline, stop_gracefully, stop_within_ten_seconds};
pub use process::{Service, ServiceBuilder, binary_path};
pub use topics::{RawMessage, Record, create_topics, produce_raw, read_topic, unique_name};
pub use wait::eventually;
