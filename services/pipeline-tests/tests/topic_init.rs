//! topic-init: waits for a broker that is not up yet, creates the topics (orders, dead letters,
//! window statistics), is idempotent, and refuses an existing topic of another shape with the
//! reason and a non-zero exit.

use pipeline_tests::events::named;
use pipeline_tests::{Service, TestBroker, free_port, read_topic, unique_name};
use std::time::Duration;

fn topic_init(bootstrap: &str, orders: &str, vars: &[(&str, &str)]) -> Service {
    let mut builder = Service::builder("topic-init", bootstrap)
        .env("ORDERS_TOPIC", orders)
        .env("DEAD_LETTER_TOPIC", format!("{orders}.dlq"))
        .env("WINDOW_STATS_TOPIC", format!("{orders}.stats"));
    for (key, value) in vars {
        builder = builder.env(key, value);
    }
    builder.spawn()
}

fn finish(mut service: Service) -> (i32, Service) {
    let status = service
        .wait_exit(Duration::from_secs(60))
        .expect("topic-init ends");
    (status.code().unwrap_or(-1), service)
}

#[test]
fn topic_init_waits_for_a_late_broker_then_creates_the_three_topics() {
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let orders = unique_name("orders");
    let waiting = topic_init(&bootstrap, &orders, &[("CONNECT_MAX_BACKOFF_MS", "500")]);
    assert!(
        waiting.wait_until(Duration::from_secs(20), |events| {
            named(events, "broker_not_reachable_yet").count() >= 2
        }),
        "it logs each attempt\n{}",
        waiting.report()
    );
    let broker = TestBroker::start_on(port);
    let (code, init) = finish(waiting);
    assert_eq!(code, 0, "{}", init.report());
    let events = init.events();
    let created: Vec<(String, String)> = named(&events, "topic_created")
        .map(|e| {
            (
                e.field("topic").expect("topic"),
                e.field("partitions").expect("partitions"),
            )
        })
        .collect();
    assert_eq!(
        created,
        vec![
            (orders.clone(), "6".to_string()),
            (format!("{orders}.dlq"), "1".to_string()),
            (format!("{orders}.stats"), "3".to_string())
        ]
    );
    assert!(named(&events, "broker_reachable").next().is_some());

    // The topics exist and take messages: the real producer can deliver to the orders topic.
    let mut producer = Service::builder("order-producer", &broker.bootstrap())
        .env("ORDERS_TOPIC", &orders)
        .env("ORDER_COUNT", 12)
        .env("ORDERS_PER_SECOND", 0)
        .env("HEALTH_PORT", free_port())
        .spawn();
    assert!(
        producer
            .wait_exit(Duration::from_secs(30))
            .expect("ends")
            .success()
    );
    assert_eq!(read_topic(&broker.bootstrap(), &orders, 12).len(), 12);
}

#[test]
fn topic_init_gives_up_after_its_attempts_with_the_reason() {
    let (code, init) = finish(topic_init(
        &format!("127.0.0.1:{}", free_port()),
        "orders",
        &[
            ("CONNECT_MAX_ATTEMPTS", "2"),
            ("CONNECT_MAX_BACKOFF_MS", "200"),
        ],
    ));
    assert_eq!(code, 1, "{}", init.report());
    assert!(
        init.events()
            .iter()
            .any(|e| e.message.contains("not reachable after 2 attempts")),
        "{}",
        init.report()
    );
}

#[test]
fn running_topic_init_twice_is_fine_and_another_shape_is_refused_with_the_reason() {
    let broker = TestBroker::start();
    let orders = unique_name("orders");
    let (code, first) = finish(topic_init(
        &broker.bootstrap(),
        &orders,
        &[("TOPIC_PARTITIONS", "3")],
    ));
    assert_eq!(code, 0, "{}", first.report());

    let (code, again) = finish(topic_init(
        &broker.bootstrap(),
        &orders,
        &[("TOPIC_PARTITIONS", "3")],
    ));
    assert_eq!(code, 0, "{}", again.report());
    assert_eq!(named(&again.events(), "topic_as_wanted").count(), 3);

    let reason_of = |service: &Service| {
        service
            .events()
            .into_iter()
            .find(|e| e.level == "ERROR")
            .map(|e| e.message)
            .unwrap_or_default()
    };
    let (code, fewer) = finish(topic_init(
        &broker.bootstrap(),
        &orders,
        &[("TOPIC_PARTITIONS", "2")],
    ));
    assert_eq!(code, 1, "{}", fewer.report());
    assert!(
        reason_of(&fewer).contains("more than TOPIC_PARTITIONS=2"),
        "{}",
        fewer.report()
    );

    let (code, retention) = finish(topic_init(
        &broker.bootstrap(),
        &orders,
        &[("TOPIC_PARTITIONS", "3"), ("TOPIC_RETENTION_MS", "1000")],
    ));
    assert_eq!(code, 1, "{}", retention.report());
    assert!(
        reason_of(&retention).contains("TOPIC_RETENTION_MS=1000"),
        "{}",
        retention.report()
    );

    // More partitions wanted: grown where the broker supports it; tansu does not, so the
    // refusal must be reported clearly with both numbers and the broker's reason.
    let (code, grow) = finish(topic_init(
        &broker.bootstrap(),
        &orders,
        &[("TOPIC_PARTITIONS", "5")],
    ));
    let grown = named(&grow.events(), "topic_grown").next().is_some();
    if code == 0 {
        assert!(grown, "{}", grow.report());
    } else {
        let reason = reason_of(&grow);
        assert!(
            reason.contains("exists with 3 partitions, fewer than TOPIC_PARTITIONS=5"),
            "{reason}"
        );
        assert!(reason.contains("could not be grown"), "{reason}");
    }
}
