//! Windowed statistics against the real broker: the stats topic, read as the README says
//! (last record per key, parts summed per window), gives exactly the orders in the orders
//! topic for each window by `created_at`, across a tracker SIGKILLed mid-stream and a scale
//! from one tracker to two; late and future-dated orders are reported; currencies stay apart;
//! every record matches its JSON Schema; `order-tracker window-totals` prints the same totals.

use chrono::{DateTime, Utc};
use pipeline_tests::events::{named, tracked};
use pipeline_tests::window_totals::{self, Totals, parse_window_totals, window_start};
use pipeline_tests::{
    Pipeline, Record, Service, binary_path, free_port, produce_raw, read_topic, stop_gracefully,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

const STATS_SCHEMA_JSON: &str =
    include_str!("../../order-tracker/schema/order-stats.v1.schema.json");

/// What the stats should say: every order message in the orders topic, by `created_at`.
fn expected_totals(orders: &[Record], window_secs: i64) -> Totals {
    let values: Vec<serde_json::Value> = orders
        .iter()
        .map(|record| {
            serde_json::from_slice(record.value.as_deref().expect("value")).expect("an order")
        })
        .collect();
    window_totals::expected_totals(&values, window_secs).expect("orders")
}

/// The stats topic read as the README says: every record checked against the schema, the last
/// record per key kept, the parts of each window summed.
fn published_totals(pipeline: &Pipeline) -> (Totals, Vec<(String, serde_json::Value)>) {
    published_totals_on(&pipeline.bootstrap(), &pipeline.stats, 1)
}

/// [`published_totals`] of the stats topic `stats` on any broker (the mock cluster, say),
/// once at least `expected` records are there.
fn published_totals_on(
    bootstrap: &str,
    stats: &str,
    expected: usize,
) -> (Totals, Vec<(String, serde_json::Value)>) {
    let schema: serde_json::Value = serde_json::from_str(STATS_SCHEMA_JSON).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let records = read_topic(bootstrap, stats, expected);
    let mut all = Vec::new();
    let mut latest: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for record in &records {
        let key = String::from_utf8(record.key.clone().expect("a key")).expect("text key");
        let value: serde_json::Value =
            serde_json::from_slice(record.value.as_deref().expect("a value")).expect("JSON");
        if let Err(error) = validator.validate(&value) {
            panic!("stats record does not match its schema: {error}\n{value}");
        }
        assert_eq!(
            key,
            format!(
                "{}/{}/{}/{}",
                value["group"].as_str().expect("group"),
                value["window_start"].as_str().expect("start"),
                value["partition"],
                value["first_offset"]
            ),
            "the key names the part"
        );
        all.push((key.clone(), value.clone()));
        latest.insert(key, value);
    }
    let mut totals = Totals::new();
    for value in latest.values() {
        let start: DateTime<Utc> = value["window_start"]
            .as_str()
            .and_then(|text| text.parse().ok())
            .expect("window_start");
        let window = totals.entry(start).or_default();
        window.0 += value["orders"].as_u64().expect("orders");
        for (currency, cents) in value["revenue_cents"].as_object().expect("revenue") {
            *window.1.entry(currency.clone()).or_default() += cents.as_i64().expect("cents");
        }
    }
    (totals, all)
}

/// `order-tracker window-totals --json`, as a user runs it, read into the same shape.
fn subcommand_totals(pipeline: &Pipeline) -> Totals {
    subcommand_totals_on(
        &pipeline.bootstrap(),
        [&pipeline.orders, &pipeline.dead_letters, &pipeline.stats],
        "windows",
    )
    .0
}

/// [`subcommand_totals`] on any broker, for `group`, with the windows it calls closed.
fn subcommand_totals_on(
    bootstrap: &str,
    [orders, dead_letters, stats]: [&str; 3],
    group: &str,
) -> (Totals, BTreeSet<DateTime<Utc>>) {
    let output = Command::new(binary_path("order-tracker"))
        .args(["window-totals", "--json"])
        .env_clear()
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("ORDERS_TOPIC", orders)
        .env("DEAD_LETTER_TOPIC", dead_letters)
        .env("WINDOW_STATS_TOPIC", stats)
        .output()
        .expect("run order-tracker window-totals");
    assert!(
        output.status.success(),
        "window-totals failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_window_totals(&String::from_utf8_lossy(&output.stdout), group)
        .expect("window-totals --json output")
}

#[test]
fn window_totals_equal_the_orders_produced_across_a_sigkill_and_a_scale_out() {
    let pipeline = Pipeline::new(3);
    let total = 2400;
    let mut producer = pipeline
        .producer()
        .env("ORDER_COUNT", total)
        .env("ORDERS_PER_SECOND", 200)
        .spawn();
    // Short spans, so that windows are split into several parts, and replays cross them.
    let tracker = || {
        pipeline
            .tracker("windows")
            .env("WINDOW_PART_SPAN_OFFSETS", 150)
    };
    let mut first = tracker().spawn();
    let first_published = first.wait_until(Duration::from_secs(60), |events| {
        tracked(events).len() >= 600 && named(events, "window_part").count() >= 3
    });
    assert!(first_published, "{}", first.report());
    // Kill it only once the group has a checkpoint, and has read on past it: the successor
    // must resume from a commit, not from the start (where any commit model is exact).
    let checkpointed = pipeline_tests::eventually(Duration::from_secs(30), || {
        committed_offsets(&pipeline, "windows")
            .values()
            .any(|o| *o > 0)
    });
    assert!(checkpointed, "no checkpoint committed\n{}", first.report());
    std::thread::sleep(Duration::from_secs(1));
    first.kill(); // SIGKILL, of the process: no handover, no final commit

    let resumed_at = committed_offsets(&pipeline, "windows");
    let mut restarted = tracker().spawn();
    assert!(
        restarted.wait_until(Duration::from_secs(60), |e| tracked(e).len() >= 200),
        "{}",
        restarted.report()
    );
    let mut second = tracker().spawn(); // scale from one tracker to two
    let status = producer
        .wait_exit(Duration::from_secs(90))
        .expect("producer ends");
    assert!(status.success(), "{}", producer.report());

    let orders = read_topic(&pipeline.bootstrap(), &pipeline.orders, total);
    assert_eq!(orders.len(), total);
    let expected = expected_totals(&orders, 2);
    // Every window's parts reach the topic: closed by order time, or ended while quiet.
    let mut published = Totals::new();
    let matched = pipeline_tests::eventually(Duration::from_secs(60), || {
        published = published_totals(&pipeline).0;
        published == expected
    });
    assert!(
        matched,
        "published {published:?}\nexpected {expected:?}\n{}\n{}",
        restarted.report(),
        second.report()
    );

    // The replay after the SIGKILL really happened: the successors read again orders the
    // killed tracker had already counted (the commit lags the open windows).
    let first_ids: BTreeSet<String> = tracked(&first.events())
        .into_iter()
        .map(|t| t.order_id)
        .collect();
    let replayed = tracked(&restarted.events())
        .into_iter()
        .chain(tracked(&second.events()))
        .filter(|t| first_ids.contains(&t.order_id))
        .count();
    assert!(replayed > 0, "no order was replayed after the SIGKILL");

    // It resumed where the checkpoints said, not from the start.
    assert!(
        resumed_at.values().any(|offset| *offset > 0),
        "{resumed_at:?}"
    );

    // A clean stop of both hands their partitions over; the totals stay exact.
    stop_gracefully(&mut restarted);
    stop_gracefully(&mut second);
    let (after_stop, records) = published_totals(&pipeline);
    assert_eq!(after_stop, expected, "after both trackers stopped");
    assert!(
        records
            .iter()
            .any(|(_, value)| value["part_end"] == "span_ended"),
        "windows were split into spans"
    );
    assert_eq!(subcommand_totals(&pipeline), expected, "window-totals");
}

/// The group's committed offsets on the orders topic, by partition, read by a plain client.
fn committed_offsets(pipeline: &Pipeline, group: &str) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", pipeline.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a plain consumer");
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..3 {
        list.add_partition(&pipeline.orders, partition);
    }
    consumer
        .committed_offsets(list, Duration::from_secs(10))
        .map(|committed| {
            committed
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(offset) => Some((e.partition(), offset)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A valid order as an outside client would write it.
fn order_json(created_at: DateTime<Utc>, currency: &str, cents: i64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schema_version": 1,
        "order_id": uuid::Uuid::new_v4().to_string(),
        "customer_id": "CUST-00042",
        "created_at": created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "items": [{"sku": "PIZ-MARG", "name": "Margherita", "quantity": 1, "unit_price_cents": cents}],
        "total_cents": cents,
        "currency": currency
    }))
    .expect("json")
}

#[test]
fn late_and_future_dated_orders_are_reported_and_currencies_stay_apart() {
    let pipeline = Pipeline::new(1);
    let mut tracker = pipeline
        .tracker("late")
        .env("WINDOW_SECS", 10)
        .env("WINDOW_GRACE_SECS", 2)
        .spawn();
    assert!(
        tracker.wait_for_event("partitions_assigned", Duration::from_secs(60)),
        "{}",
        tracker.report()
    );
    // A window well in the past, so that every order here is dated by the test alone.
    let now = Utc::now();
    let w = window_start(now - chrono::Duration::minutes(5), 10);
    let secs = chrono::Duration::seconds;
    let future = now + chrono::Duration::hours(1);
    let messages: Vec<(&str, Vec<u8>)> = vec![
        ("in W", order_json(w + secs(1), "EUR", 1000)),
        ("in W", order_json(w + secs(2), "USD", 700)),
        ("in W", order_json(w + secs(3), "EUR", 250)),
        ("closes W", order_json(w + secs(15), "EUR", 100)), // watermark W+15 >= W+10+2
        ("late", order_json(w + secs(5), "EUR", 999)),
        ("future", order_json(future, "EUR", 500)), // must not move the watermark
        ("in W+10", order_json(w + secs(16), "USD", 300)), // so this is not late
        ("closes W+10", order_json(w + secs(40), "EUR", 50)),
    ];
    let late_id =
        serde_json::from_slice::<serde_json::Value>(&messages[4].1).expect("json")["order_id"]
            .as_str()
            .expect("id")
            .to_string();
    let raw: Vec<_> = messages
        .iter()
        .map(|(_, value)| (Some(b"CUST-00042".as_slice()), Some(value.as_slice())))
        .collect();
    produce_raw(&pipeline.bootstrap(), &pipeline.orders, &raw);
    assert!(
        tracker.wait_until(Duration::from_secs(30), |e| {
            tracked(e).len() == messages.len() && named(e, "window_part").count() >= 2
        }),
        "{}",
        tracker.report()
    );
    stop_gracefully(&mut tracker); // hands the open windows over: published too

    let events = tracker.events();
    let late: Vec<_> = named(&events, "late_order").collect();
    assert_eq!(late.len(), 1, "{}", tracker.report());
    assert_eq!(late[0].field("order_id"), Some(late_id));

    let (totals, records) = published_totals(&pipeline);
    let cents = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
        pairs.iter().map(|(c, v)| (c.to_string(), *v)).collect()
    };
    assert_eq!(
        totals.get(&w),
        Some(&(3, cents(&[("EUR", 1250), ("USD", 700)]))),
        "window W: three orders, currencies apart, the late one in no window"
    );
    assert_eq!(
        totals.get(&(w + secs(10))),
        Some(&(2, cents(&[("EUR", 100), ("USD", 300)]))),
        "window W+10 took the order after the future-dated one: not late"
    );
    assert_eq!(
        totals.get(&window_start(future, 10)).map(|t| t.0),
        Some(1),
        "the future-dated order counts in its own window"
    );
    let ends: HashMap<String, String> = records
        .iter()
        .map(|(_, v)| {
            (
                v["window_start"].as_str().expect("start").to_string(),
                v["part_end"].as_str().expect("end").to_string(),
            )
        })
        .collect();
    let start_of = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    assert_eq!(ends[&start_of(w)], "window_closed");
    assert_eq!(ends[&start_of(w + secs(10))], "window_closed");
    assert_eq!(ends[&start_of(window_start(future, 10))], "handed_over");
}

/// A window length for which `now` is at least `margin` before its window's end (aligned
/// windows: a fixed length would sometimes put `now` at a window's very end).
fn window_secs_leaving(now: DateTime<Utc>, margin: i64) -> i64 {
    (300..)
        .find(|length| {
            let start = window_start(now, *length);
            (start + chrono::Duration::seconds(*length) - now).num_seconds() >= margin
                && (now - start).num_seconds() >= 5
        })
        .expect("a length")
}

/// The wall-clock decision that ends a quiet partition's parts and commits past them must not
/// make a replay count twice: a window goes quiet twice, gets more orders, and its tracker is
/// SIGKILLed; its successor resumes after the last quiet part, so the window's total is every
/// order once. The window is the current one and long, so that it stays open throughout.
#[test]
fn a_window_that_goes_quiet_and_resumes_stays_exact_across_a_sigkill() {
    let pipeline = Pipeline::new(1);
    let now = Utc::now();
    let window_secs = window_secs_leaving(now, 180);
    // A grace period (and so a quiet period) long enough that the SIGKILL below surely lands
    // before the last batch is quiet, even on a loaded machine.
    let tracker = || {
        pipeline
            .tracker("quiet")
            .env("WINDOW_SECS", window_secs)
            .env("WINDOW_GRACE_SECS", 5)
    };
    let mut first = tracker().spawn();
    assert!(
        first.wait_for_event("partitions_assigned", Duration::from_secs(60)),
        "{}",
        first.report()
    );
    // Orders dated just before now, in the current window.
    let w = window_start(now, window_secs);
    let dated = now - chrono::Duration::seconds(2);
    let mut cents_in_w = 0;
    let mut produced = 0;
    let mut batch = |n: usize| {
        let messages: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let cents = 100 + (produced + i) as i64;
                cents_in_w += cents;
                order_json(
                    dated + chrono::Duration::milliseconds((produced + i) as i64),
                    "EUR",
                    cents,
                )
            })
            .collect();
        produced += n;
        let raw: Vec<_> = messages
            .iter()
            .map(|value| (Some(b"CUST-00042".as_slice()), Some(value.as_slice())))
            .collect();
        produce_raw(&pipeline.bootstrap(), &pipeline.orders, &raw);
        produced
    };
    let quiet_parts = |events: &[pipeline_tests::Event]| {
        named(events, "window_part")
            .filter(|e| e.field("part_end").as_deref() == Some("quiet"))
            .count()
    };
    for expected_quiet in 1..=2 {
        let total = batch(4);
        let committed = pipeline_tests::eventually(Duration::from_secs(30), || {
            committed_offsets(&pipeline, "quiet").get(&0) == Some(&(total as i64))
        });
        assert!(
            committed && quiet_parts(&first.events()) == expected_quiet,
            "after {total} orders and a quiet second: commit {:?}\n{}",
            committed_offsets(&pipeline, "quiet"),
            first.report()
        );
    }
    let total = batch(3);
    assert!(
        first.wait_until(Duration::from_secs(30), |e| tracked(e).len() == total),
        "{}",
        first.report()
    );
    first.kill(); // before this last batch is quiet: its part is neither published nor committed

    let mut second = tracker().spawn();
    assert!(
        second.wait_until(Duration::from_secs(60), |e| tracked(e).len() >= 3),
        "{}",
        second.report()
    );
    stop_gracefully(&mut second);
    assert_eq!(
        tracked(&second.events()).len(),
        3,
        "resumed after the quiet parts\n{}",
        second.report()
    );
    let (totals, _) = published_totals(&pipeline);
    assert_eq!(
        totals.get(&w),
        Some(&(
            total as u64,
            BTreeMap::from([("EUR".to_string(), cents_in_w)])
        )),
        "every order of the window once\n{}",
        second.report()
    );
}

/// A partition that receives nothing more still closes its windows in bounded time (the end
/// of its latest window plus twice the grace period), even when it changed owner while quiet:
/// the old owner ends the window's part and stops before that time, and the new owner, which
/// never reads a message, closes the window from what the handover commit carried. The close
/// is real: an order for that window arriving afterwards is late, and `window-totals` calls
/// the window closed with every order in it.
///
/// On librdkafka's mock cluster, not tansu: tansu drops the metadata of offset commits (a
/// commit made with metadata reads back with none), which is what carries the watermark and
/// the window to close from one owner to the next. Real Kafka keeps it.
#[test]
fn a_quiet_partition_closes_its_window_in_bounded_time_even_under_a_new_owner() {
    const WINDOW_SECS: i64 = 20;
    const GRACE_SECS: i64 = 3;
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let bootstrap = mock.bootstrap_servers();
    let (orders, dead_letters, stats) = ("orders", "orders.dlq", "orders.stats");
    for topic in [orders, dead_letters, stats] {
        mock.create_topic(topic, 1, 1).expect("topic");
    }
    let tracker = || {
        Service::builder("order-tracker", &bootstrap)
            .env("ORDERS_TOPIC", orders)
            .env("DEAD_LETTER_TOPIC", dead_letters)
            .env("WINDOW_STATS_TOPIC", stats)
            .env("WINDOW_SECS", WINDOW_SECS)
            .env("WINDOW_GRACE_SECS", GRACE_SECS)
            .env("GROUP_ID", "closing")
            .env("HEALTH_PORT", free_port())
            .env("STATS_INTERVAL_SECS", 60)
            .env("KAFKA_SESSION_TIMEOUT_MS", 6000)
            .env("KAFKA_HEARTBEAT_INTERVAL_MS", 500)
    };
    let produce = |values: &[Vec<u8>]| {
        let raw: Vec<_> = values
            .iter()
            .map(|value| (Some(b"CUST-00042".as_slice()), Some(value.as_slice())))
            .collect();
        produce_raw(&bootstrap, orders, &raw);
    };
    let mut first = tracker().spawn();
    assert!(
        first.wait_for_event("partitions_assigned", Duration::from_secs(60)),
        "{}",
        first.report()
    );
    // Orders early in a window, so that the first owner's quiet part comes well before the
    // window may close (its end plus twice the grace).
    let into_window = |now: DateTime<Utc>| (now - window_start(now, WINDOW_SECS)).num_seconds();
    while !(1..4).contains(&into_window(Utc::now())) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let dated = Utc::now();
    let w = window_start(dated, WINDOW_SECS);
    let closes_by = w + chrono::Duration::seconds(WINDOW_SECS + 2 * GRACE_SECS);
    produce(
        &(0..4)
            .map(|i| order_json(dated + chrono::Duration::milliseconds(i), "EUR", 100))
            .collect::<Vec<_>>(),
    );
    assert!(
        first.wait_until(Duration::from_secs(30), |e| {
            named(e, "window_part").any(|p| p.field("part_end").as_deref() == Some("quiet"))
        }),
        "{}",
        first.report()
    );
    stop_gracefully(&mut first);
    assert!(
        Utc::now() < closes_by,
        "the first owner stopped too late for this test ({closes_by})"
    );
    assert_eq!(
        named(&first.events(), "window_closed_quiet").count(),
        0,
        "not closed before its end plus twice the grace\n{}",
        first.report()
    );

    let mut second = tracker().spawn();
    assert!(
        second.wait_for_event("window_closed_quiet", Duration::from_secs(60)),
        "{}",
        second.report()
    );
    let closed_at = Utc::now();
    assert!(
        closed_at < closes_by + chrono::Duration::seconds(5),
        "closed at {closed_at}, bound {closes_by} plus the checkpoint interval and slack\n{}",
        second.report()
    );
    assert_eq!(tracked(&second.events()).len(), 0, "it read no order");
    // The log line comes when the record is queued; the topic shows it once acknowledged.
    let read_by = Instant::now() + Duration::from_secs(15);
    let (totals, closed) = loop {
        let (totals, closed) =
            subcommand_totals_on(&bootstrap, [orders, dead_letters, stats], "closing");
        if closed.contains(&w) || Instant::now() > read_by {
            break (totals, closed);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(totals.get(&w).map(|t| t.0), Some(4), "{totals:?}");
    assert!(
        closed.contains(&w),
        "window {w} is closed: {closed:?}\n{}",
        second.report()
    );

    // The close holds: an order for that window now is late; one for the current window is not.
    produce(&[
        order_json(dated, "EUR", 100),
        order_json(Utc::now(), "EUR", 100),
    ]);
    assert!(
        second.wait_until(Duration::from_secs(30), |e| tracked(e).len() == 2),
        "{}",
        second.report()
    );
    stop_gracefully(&mut second);
    assert_eq!(
        named(&second.events(), "late_order").count(),
        1,
        "{}",
        second.report()
    );
    // Every record matches the schema (checked while reading).
    let (_, records) = published_totals_on(&bootstrap, stats, 3);
    assert!(records.len() >= 3, "{records:?}");
    let values: Vec<serde_json::Value> = records.into_iter().map(|(_, value)| value).collect();
    let closing: Vec<_> = values
        .iter()
        .filter(|v| v["part_end"] == "closed_quiet")
        .collect();
    assert_eq!(closing.len(), 1, "{values:?}");
    assert_eq!(
        (
            closing[0]["orders"].as_u64(),
            closing[0]["first_offset"].as_i64()
        ),
        (Some(0), Some(4)),
        "a record of no order, keyed where reading stopped"
    );
}

/// A partition that goes quiet ends its window parts after the grace period even while
/// another partition keeps a steady flow (one order every 5 ms): the tracker's fetcher finds
/// librdkafka's queue empty between messages, and that, not a whole poll without any message,
/// is what tells the quiet-partition rule that nothing fetched is waiting.
///
/// On librdkafka's mock cluster: tansu answers fetches in bursts about a tenth of a second
/// apart, so on it any rule sees gaps in a flow, and this one could not fail.
#[test]
fn a_quiet_partition_ends_its_parts_while_another_partition_keeps_flowing() {
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let bootstrap = mock.bootstrap_servers();
    let (orders, dead_letters, stats) = ("orders", "orders.dlq", "orders.stats");
    mock.create_topic(orders, 2, 1).expect("topic");
    for topic in [dead_letters, stats] {
        mock.create_topic(topic, 1, 1).expect("topic");
    }
    let mut tracker = Service::builder("order-tracker", &bootstrap)
        .env("ORDERS_TOPIC", orders)
        .env("DEAD_LETTER_TOPIC", dead_letters)
        .env("WINDOW_STATS_TOPIC", stats)
        .env("WINDOW_SECS", 600)
        .env("WINDOW_GRACE_SECS", 1)
        .env("GROUP_ID", "quiet-beside-flow")
        // Fetches answered as soon as anything is there, as a busy Kafka answers them (the
        // mock holds a fetch for this long otherwise, which would make gaps in any flow).
        .env("KAFKA_FETCH_WAIT_MAX_MS", 5)
        .env("HEALTH_PORT", free_port())
        .env("STATS_INTERVAL_SECS", 60)
        .env("KAFKA_SESSION_TIMEOUT_MS", 6000)
        .env("KAFKA_HEARTBEAT_INTERVAL_MS", 500)
        .spawn();
    assert!(
        tracker.wait_for_event("partitions_assigned", Duration::from_secs(60)),
        "{}",
        tracker.report()
    );
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let send = |partition: i32| {
        let value = order_json(Utc::now(), "EUR", 100);
        let record = rdkafka::producer::BaseRecord::<str, [u8]>::to(orders)
            .partition(partition)
            .key("CUST-00042")
            .payload(&value);
        producer
            .send(record)
            .map_err(|(err, _)| err)
            .expect("queued");
        producer.poll(Duration::ZERO);
    };
    for _ in 0..4 {
        send(0);
    }
    // Partition 1 flows for up to 15 s; partition 0 stays quiet from now on. The log is read
    // between bursts of 100 orders, so that reading it leaves no long gap in the flow.
    let quiet_part_of_0 = |events: &[pipeline_tests::Event]| {
        named(events, "window_part").any(|e| {
            e.field("part_end").as_deref() == Some("quiet") && e.int("partition") == Some(0)
        })
    };
    let started = Instant::now();
    let mut ended_while_flowing = false;
    while !ended_while_flowing && started.elapsed() < Duration::from_secs(15) {
        for _ in 0..100 {
            send(1);
            std::thread::sleep(Duration::from_millis(5));
        }
        ended_while_flowing = quiet_part_of_0(&tracker.events());
    }
    let flowed = tracked(&tracker.events()).len();
    stop_gracefully(&mut tracker);
    assert!(
        ended_while_flowing,
        "partition 0's part did not end as quiet within 15 s while partition 1 flowed \
         ({flowed} orders tracked)\n{}",
        tracker.report()
    );
    assert!(flowed > 100, "partition 1 flowed: {flowed} orders tracked");
}
