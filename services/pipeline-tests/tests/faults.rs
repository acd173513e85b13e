//! Fault tests on librdkafka's mock cluster, for failures the real test broker cannot be made
//! to have: a broker that goes away mid-production, and injected request errors. The producer
//! library runs in-process against the mock, exactly as its binary runs it.

use order_producer::config::ProducerConfig;
use pipeline_tests::{free_port, read_topic};
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
    assert_eq!(ids.len(), 400, "every order is in the topic");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 400, "none twice");
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
