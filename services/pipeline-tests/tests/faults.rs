//! Fault tests on librdkafka's mock cluster, for failures the real test broker cannot be made
//! to have: a broker that goes away mid-production, and injected request errors. The producer
//! library runs in-process against the mock, exactly as its binary runs it; the tracker runs as
//! its binary.

use order_producer::config::ProducerConfig;
use pipeline_tests::events::{named, order_lines};
use pipeline_tests::pipeline::{produce_on, wait_for_order_lines};
use pipeline_tests::{Event, Service, free_port, read_topic, stop_gracefully};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use service_runtime::launch::Outcome;
use service_runtime::shutdown;
use std::collections::HashSet;
use std::time::Duration;

fn producer_config(bootstrap: &str, topic: &str, count: usize, rate: u32) -> ProducerConfig {
    let vars: Vec<(String, String)> = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.to_string()),
        ("ORDERS_TOPIC", topic.to_string()),
        ("ORDER_COUNT", count.to_string()),
        ("ORDERS_PER_SECOND", rate.to_string()),
        ("HEALTH_PORT", free_port().to_string()),
        ("FLUSH_TIMEOUT_SECS", "60".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ProducerConfig::from_vars(&vars).expect("config")
}

fn order_ids(bootstrap: &str, topic: &str, expected: usize) -> Vec<String> {
    read_topic(bootstrap, topic, expected)
        .into_iter()
        .map(|record| {
            let value: serde_json::Value =
                serde_json::from_slice(&record.value.expect("value")).expect("json");
            value["order_id"].as_str().expect("id").to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_goes_down_and_comes_back_during_production_loses_no_order() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("orders", 3, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();
    let config = producer_config(&bootstrap, "orders", 400, 100);
    let (_trigger, stop) = shutdown::channel();

    let outage = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        mock.broker_down(1).expect("broker down");
        tokio::time::sleep(Duration::from_secs(3)).await;
        mock.broker_up(1).expect("broker up");
    };
    let (outcome, ()) = tokio::join!(order_producer::run(config, stop), outage);
    assert_eq!(
        outcome.expect("run"),
        Outcome::Completed,
        "no delivery failed"
    );

    let ids = order_ids(&bootstrap, "orders", 400);
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 400, "every order is in the topic");
    // Idempotence does not cover every disconnection: with several produce requests in flight
    // when the connection drops, librdkafka may bump the producer epoch, and an order the broker
    // had already written is then written again under the new epoch (librdkafka issue #4953;
    // seen once in CI: 401 records for 400 orders). At most what was in flight: five requests
    // of about one order each at 100 orders/s and a 10 ms linger.
    let copies = ids.len() - distinct.len();
    eprintln!("orders written twice across the outage: {copies}");
    assert!(copies <= 10, "{copies} orders written twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_request_errors_are_retried_without_loss_or_duplication() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("orders", 3, 1).expect("topic");
    use RDKafkaRespErr::*;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ],
    );
    let bootstrap = mock.bootstrap_servers();
    let config = producer_config(&bootstrap, "orders", 200, 0);
    let (_trigger, stop) = shutdown::channel();
    let outcome = order_producer::run(config, stop).await.expect("run");
    assert_eq!(outcome, Outcome::Completed, "every error was retried away");
    let ids = order_ids(&bootstrap, "orders", 200);
    assert_eq!(ids.len(), 200);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        200,
        "idempotence: no duplicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_that_cannot_deliver_reports_failure() {
    // The counterpart: when delivery is impossible (the broker never comes back within the
    // message timeout), the bounded run must say so with PartlyFailed, never claim success.
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("orders", 1, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();
    let mut config = producer_config(&bootstrap, "orders", 20, 0);
    config.flush_timeout = Duration::from_secs(2);
    mock.broker_down(1).expect("broker down");
    let (_trigger, stop) = shutdown::channel();
    let outcome = order_producer::run(config, stop).await.expect("run");
    assert_eq!(outcome, Outcome::PartlyFailed);
}

/// A tracker on the mock cluster that has handled 40 orders is stopped after `refusals` are
/// queued for the next commits; returns its events and how many order lines a successor in
/// the same group then printed (0 when the final commit went through).
fn stop_with_commits_refused(refusals: &[RDKafkaRespErr]) -> (Vec<Event>, usize) {
    let mock = MockCluster::new(1).expect("mock cluster");
    for topic in ["orders", "orders.dlq", "order-stats"] {
        mock.create_topic(topic, 2, 1).expect("topic");
    }
    let bootstrap = mock.bootstrap_servers();
    let tracker = || {
        Service::builder("order-tracker", &bootstrap)
            .env("HEALTH_PORT", free_port())
            .env("GROUP_ID", "refused")
            .spawn()
    };
    produce_on(&bootstrap, 40);
    let mut first = tracker();
    assert!(
        wait_for_order_lines(&first, 40, Duration::from_secs(60)),
        "{}",
        first.report()
    );
    mock.request_errors(RDKafkaApiKey::OffsetCommit, refusals);
    stop_gracefully(&mut first);
    let events = first.events();
    let names: Vec<&str> = events.iter().filter_map(|e| e.name()).collect();
    let started = names.iter().position(|n| *n == "shutdown_started");
    let refused = names[started.expect("shutdown_started")..]
        .iter()
        .filter(|name| **name == "final_commit_retry")
        .count();
    assert!(
        refused >= 1,
        "the final commit met none of the refusals (a checkpoint took them?): {names:?}\n{}",
        first.report()
    );

    let mut successor = tracker();
    assert!(
        successor.wait_for_event("partitions_assigned", Duration::from_secs(60)),
        "{}",
        successor.report()
    );
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut successor);
    (events, order_lines(&successor.events()).len())
}

/// The outcome event of the final commit, which must be the only one (its retries are not
/// outcomes).
fn final_commit_outcome(events: &[Event]) -> &Event {
    let outcomes: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.name()
                .is_some_and(|n| n.starts_with("final_commit") && n != "final_commit_retry")
        })
        .collect();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes[0]
}

/// Kafka refuses a commit while its group completes a rebalance (`REBALANCE_IN_PROGRESS`):
/// `docker compose down` stopping a service's trackers a moment apart can meet it. The final
/// commit is sent again until the shutdown budget's share for it runs out, and the successor
/// then re-reads nothing.
#[test]
fn a_final_commit_refused_while_the_group_rebalances_is_sent_again() {
    use RDKafkaRespErr::*;
    let (events, reread) = stop_with_commits_refused(&[
        RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
    ]);
    let outcome = final_commit_outcome(&events);
    assert_eq!(outcome.name(), Some("final_commit"), "{outcome:?}");
    assert_ne!(outcome.field("offsets").as_deref(), Some("none"));
    assert_eq!(
        reread, 0,
        "the successor re-read what the final commit committed"
    );
}

/// A commit refused for an ended generation (`ILLEGAL_GENERATION`) makes librdkafka drop the
/// member's partitions as lost. The final commit must then say it failed, not "done": nothing
/// was committed, and the successor does re-read every order.
#[test]
fn a_final_commit_refused_until_the_partitions_are_lost_says_so() {
    use RDKafkaRespErr::*;
    let (events, reread) = stop_with_commits_refused(&[
        RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
    ]);
    assert!(
        named(&events, "partitions_lost").next().is_some(),
        "this run does not test lost partitions: {events:?}"
    );
    let outcome = final_commit_outcome(&events);
    assert_eq!(outcome.name(), Some("final_commit_failed"), "{outcome:?}");
    assert_eq!(
        reread, 40,
        "nothing was committed, so the successor re-reads all"
    );
}
