//! `START_FROM` positions, and what the running binaries expose: `/healthz`, `/readyz`,
//! Prometheus `/metrics`, and the `healthcheck` subcommand the shell-less images rely on.

use pipeline_tests::events::tracked;
use pipeline_tests::pipeline::{produce_on, wait_for_order_lines};
use pipeline_tests::{Pipeline, Service, binary_path, free_port, stop_gracefully};
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

fn healthcheck(binary: &str, port: u16) -> bool {
    Command::new(binary_path(binary))
        .arg("healthcheck")
        .env_clear()
        .env("HEALTH_PORT", port.to_string())
        .output()
        .expect("run healthcheck")
        .status
        .success()
}

/// GET `path` on the service's health port: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent
        .get(format!("http://127.0.0.1:{port}{path}"))
        .call()
        .expect("the health server answers");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().expect("body"))
}

#[test]
fn the_healthcheck_subcommand_follows_readiness_and_metrics_count_orders() {
    let pipeline = Pipeline::new(3);
    let tracker_port = free_port();
    assert!(
        !healthcheck("order-tracker", tracker_port),
        "nothing listens yet"
    );
    let mut tracker = pipeline
        .tracker("health")
        .env("HEALTH_PORT", tracker_port)
        .spawn();
    assert!(tracker.wait_for_event("partitions_assigned", Duration::from_secs(30)));
    assert!(
        healthcheck("order-tracker", tracker_port),
        "ready once in the group"
    );
    assert_eq!(get(tracker_port, "/healthz").0, 200);

    let producer_port = free_port();
    let mut producer = pipeline
        .producer()
        .env("HEALTH_PORT", producer_port)
        .env("ORDERS_PER_SECOND", 50)
        .spawn();
    assert!(
        producer.wait_for_event("ready", Duration::from_secs(30)),
        "{}",
        producer.report()
    );
    assert!(healthcheck("order-producer", producer_port));
    assert!(wait_for_order_lines(&tracker, 20, Duration::from_secs(30)));
    stop_gracefully(&mut producer);
    assert!(
        !healthcheck("order-producer", producer_port),
        "gone after stopping"
    );

    let (status, metrics) = get(tracker_port, "/metrics");
    assert_eq!(status, 200);
    let tracked_count = tracked(&tracker.events()).len();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("order_tracker_orders_tracked_total "))
        .unwrap_or_else(|| panic!("no tracked counter in\n{metrics}"));
    let exposed: usize = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("number");
    assert!(
        exposed >= 20 && exposed <= tracked_count.max(20),
        "{line} vs {tracked_count}"
    );
    assert!(
        metrics.contains("order_tracker_assigned_partitions 3"),
        "{metrics}"
    );
    stop_gracefully(&mut tracker);
}

#[test]
fn a_producer_that_cannot_reach_the_broker_is_alive_but_not_ready() {
    let port = free_port();
    let mut producer = Service::builder("order-producer", "127.0.0.1:1")
        .env("HEALTH_PORT", port)
        .env("FLUSH_TIMEOUT_SECS", 2)
        .spawn();
    assert!(producer.wait_for_event("starting", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(get(port, "/healthz").0, 200);
    assert_eq!(get(port, "/readyz").0, 503);
    assert!(!healthcheck("order-producer", port));
    stop_gracefully(&mut producer);
    // Reconnect attempts repeat the same client error; it is logged once, not every attempt.
    // The client-error lines are the ones with the `repeats_held_back` field (librdkafka's own
    // log lines share their target).
    let repeats = producer
        .events()
        .iter()
        .filter(|e| e.json.get("repeats_held_back").is_some())
        .count();
    assert!(
        repeats <= 3,
        "{repeats} error lines in 3 s\n{}",
        producer.report()
    );
}

#[test]
fn start_from_earliest_and_explicit_offsets() {
    let pipeline = Pipeline::new(2);
    let first_batch = pipeline.produce(40);

    // A group that committed everything...
    let mut reader = pipeline.tracker("replay").spawn();
    assert!(wait_for_order_lines(&reader, 40, Duration::from_secs(30)));
    stop_gracefully(&mut reader);

    // ...reads it all again with START_FROM=earliest.
    let mut again = pipeline
        .tracker("replay")
        .env("START_FROM", "earliest")
        .spawn();
    assert!(
        wait_for_order_lines(&again, 40, Duration::from_secs(30)),
        "{}",
        again.report()
    );
    stop_gracefully(&mut again);

    // partition:offset pairs: exactly that slice, by manual assignment.
    let on_zero: Vec<_> = first_batch.iter().filter(|d| d.partition == 0).collect();
    assert!(on_zero.len() > 3);
    let from = on_zero[2].offset;
    let mut replay = pipeline
        .tracker("debugging")
        .env("START_FROM", format!("0:{from}"))
        .spawn();
    let wanted: HashSet<String> = first_batch
        .iter()
        .filter(|d| d.partition == 0 && d.offset >= from)
        .map(|d| d.order_id.clone())
        .collect();
    assert!(
        wait_for_order_lines(&replay, wanted.len(), Duration::from_secs(30)),
        "{}",
        replay.report()
    );
    std::thread::sleep(Duration::from_secs(1));
    stop_gracefully(&mut replay);
    let replayed: HashSet<String> = tracked(&replay.events())
        .into_iter()
        .map(|t| t.order_id)
        .collect();
    assert_eq!(replayed, wanted);
}

/// `latest` needs the broker to list partition end offsets; tansu answers that query with
/// offsets that are not the end, so this runs against librdkafka's mock cluster, which behaves
/// as Kafka does. The binaries are the same.
#[test]
fn start_from_latest_reads_only_orders_produced_after_joining() {
    use rdkafka::mocking::MockCluster;
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("orders", 2, 1).expect("orders");
    mock.create_topic("orders.dlq", 1, 1).expect("dead letters");
    let bootstrap = mock.bootstrap_servers();
    let produce = |count: usize| produce_on(&bootstrap, count);
    produce(30);
    let mut latest = Service::builder("order-tracker", &bootstrap)
        .env("START_FROM", "latest")
        .env("GROUP_ID", "fresh")
        .env("HEALTH_PORT", free_port())
        .env("KAFKA_SESSION_TIMEOUT_MS", 6000)
        .spawn();
    assert!(
        latest.wait_for_event("partitions_assigned", Duration::from_secs(30)),
        "{}",
        latest.report()
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = produce(10);
    assert!(
        wait_for_order_lines(&latest, 10, Duration::from_secs(30)),
        "{}",
        latest.report()
    );
    std::thread::sleep(Duration::from_secs(1));
    stop_gracefully(&mut latest);
    let seen: HashSet<String> = tracked(&latest.events())
        .into_iter()
        .map(|t| t.order_id)
        .collect();
    let expected: HashSet<String> = after.into_iter().map(|d| d.order_id).collect();
    assert_eq!(
        seen, expected,
        "latest skips the 30 orders that were there before"
    );
}
