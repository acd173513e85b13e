//! The producer's HTTP intake (`POST /orders`), on the real binary against a real broker: what a
//! client is told, and what reaches the topic and the tracker.

use order_contract::Order;
use pipeline_tests::events::{duplicates, tracked};
use pipeline_tests::{
    Event, Pipeline, Record, Service, ServiceBuilder, free_port, read_topic, stop_gracefully,
    unique_name,
};
use serde_json::{Value, json};
use std::io::Read;
use std::net::{Ipv4Addr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// The default `MAX_ORDER_BYTES`, which the tracker uses too.
const MAX_ORDER_BYTES: usize = 65536;

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    allow: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("answer is not JSON ({err}): {}", self.body))
    }

    /// The `reason` of a problem answer, checking that it is `application/problem+json`.
    fn reason(&self) -> String {
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        let body = self.json();
        assert_eq!(body["status"], self.status, "{self:?}");
        body["reason"].as_str().expect("reason").to_string()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.expect("an HTTP answer");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Answer {
        status: response.status().as_u16(),
        content_type: header("content-type").unwrap_or_default(),
        retry_after: header("retry-after"),
        allow: header("allow"),
        body: response
            .body_mut()
            .read_to_string()
            .expect("the answer's body"),
    }
}

/// `POST /orders` with this content type and body.
fn post(port: u16, content_type: &str, body: impl AsRef<[u8]>) -> Answer {
    answer(
        agent()
            .post(format!("http://127.0.0.1:{port}/orders"))
            .header("content-type", content_type)
            .send(body.as_ref()),
    )
}

fn post_order(port: u16, order: &Value) -> Answer {
    post(port, "application/json", order.to_string())
}

/// A valid order without the fields the intake fills in (`order_id`, `created_at`,
/// `schema_version`).
fn minimal_order(customer: &str) -> Value {
    json!({
        "customer_id": customer,
        "restaurant": "Chez Luigi",
        "delivery_address": {"street": "1 rue de la Paix", "postal_code": "75002", "city": "Paris"},
        "items": [
            {"sku": "PIZ-MAR", "name": "Pizza Margherita", "quantity": 2, "unit_price_cents": 950},
            {"sku": "DES-TIR", "name": "Tiramisu", "quantity": 1, "unit_price_cents": 550}
        ],
        "total_cents": 2450,
        "currency": "EUR"
    })
}

/// A producer that only takes HTTP orders, on a free intake port.
fn intake_only(producer: ServiceBuilder) -> (ServiceBuilder, u16) {
    let port = free_port();
    (
        producer
            .env("INTAKE_PORT", port)
            .env("GENERATE_ORDERS", "false"),
        port,
    )
}

fn wait_listening(service: &Service) {
    assert!(
        service.wait_for_event("intake_listening", Duration::from_secs(30)),
        "the intake did not start\n{}",
        service.report()
    );
}

fn record_at(records: &[Record], partition: i64, offset: i64) -> &Record {
    records
        .iter()
        .find(|r| i64::from(r.partition) == partition && r.offset == offset)
        .unwrap_or_else(|| {
            let places: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
            panic!("no message at {partition}@{offset}; the topic has {places:?}")
        })
}

#[test]
fn a_posted_order_is_acknowledged_with_the_place_the_broker_gave_it() {
    let pipeline = Pipeline::new(3);
    let (producer, port) = intake_only(pipeline.producer());
    let mut producer = producer.spawn();
    wait_listening(&producer);
    // With the generator on, 5 orders a second would be in the topic by now.
    std::thread::sleep(Duration::from_secs(2));

    let minimal = post_order(port, &minimal_order("customer-http-1"));
    assert_eq!(minimal.status, 201, "{minimal:?}\n{}", producer.report());
    assert_eq!(minimal.content_type, "application/json");
    let placed = minimal.json();
    assert_eq!(placed["topic"], pipeline.orders.as_str());

    let mut full = minimal_order("customer-http-2");
    full["order_id"] = json!("0b6f3d52-8a57-4c55-9a4b-8d0f3c1f2e10");
    full["created_at"] = json!("2026-11-21T12:30:00Z");
    full["schema_version"] = json!(1);
    let given = post_order(port, &full);
    assert_eq!(given.status, 201, "{given:?}");
    assert_eq!(
        given.json()["order_id"],
        "0b6f3d52-8a57-4c55-9a4b-8d0f3c1f2e10",
        "a client's own order_id is kept"
    );

    let records = read_topic(&pipeline.bootstrap(), &pipeline.orders, 2);
    assert_eq!(
        records.len(),
        2,
        "only the posted orders are in the topic (the generator is off)"
    );

    let record = record_at(
        &records,
        placed["partition"].as_i64().expect("partition"),
        placed["offset"].as_i64().expect("offset"),
    );
    let value = record.value.as_deref().expect("a value");
    let order =
        Order::decode(Some(value), MAX_ORDER_BYTES).expect("the tracker's decoder takes it");
    assert_eq!(
        order.order_id.to_string(),
        placed["order_id"].as_str().expect("id")
    );
    assert_eq!(order.schema_version, 1, "schema_version filled in");
    let age = chrono::Utc::now() - order.created_at;
    assert!(
        age >= chrono::Duration::zero() && age < chrono::Duration::seconds(60),
        "created_at filled in with the time of the request: {}",
        order.created_at
    );
    assert_eq!(record.key.as_deref(), Some(&b"customer-http-1"[..]));
    assert_eq!(
        record.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(record.header("schema-version").as_deref(), Some("1"));

    let given_placed = given.json();
    let record = record_at(
        &records,
        given_placed["partition"].as_i64().expect("partition"),
        given_placed["offset"].as_i64().expect("offset"),
    );
    let written: Value =
        serde_json::from_slice(record.value.as_deref().expect("value")).expect("json");
    assert_eq!(written, full, "a complete order is written as sent");

    stop_gracefully(&mut producer);
}

#[test]
fn bad_requests_get_the_4xx_that_says_why_and_nothing_is_written() {
    let pipeline = Pipeline::new(1);
    let max = 2048;
    let (producer, port) = intake_only(pipeline.producer().env("MAX_ORDER_BYTES", max));
    let mut producer = producer.spawn();
    wait_listening(&producer);
    let valid = minimal_order("customer-bad");
    let refused = |answer: Answer, status: u16, reason: &str| {
        assert_eq!(answer.status, status, "{answer:?}");
        assert_eq!(answer.reason(), reason, "{answer:?}");
        answer
    };

    refused(
        post(port, "text/plain", valid.to_string()),
        415,
        "unsupported-media-type",
    );
    // What `curl -d @order.json` sends without -H 'Content-Type: application/json'.
    let form = refused(
        post(port, "application/x-www-form-urlencoded", valid.to_string()),
        415,
        "unsupported-media-type",
    );
    assert!(
        form.json()["detail"]
            .as_str()
            .expect("detail")
            .contains("application/json")
    );
    refused(
        post(port, "application/json", "{\"customer_id\": "),
        400,
        "not-json",
    );
    refused(
        post(port, "application/json", b"{\"a\": \"\xff\"}"),
        400,
        "invalid-utf8",
    );
    refused(post(port, "application/json", ""), 400, "empty");

    let mut big = valid.clone();
    big["note"] = json!("x".repeat(max));
    refused(post_order(port, &big), 413, "too-large");
    // Fits as sent, but not once order_id, created_at and schema_version are filled in.
    let mut nearly = valid.clone();
    let room = max - nearly.to_string().len() - "\"note\":\"\",".len() - 10;
    nearly["note"] = json!("x".repeat(room));
    assert!(nearly.to_string().len() <= max);
    let filled = refused(post_order(port, &nearly), 413, "too-large");
    assert!(filled.body.contains("filled in"), "{filled:?}");

    let with = |change: &dyn Fn(&mut Value)| {
        let mut order = valid.clone();
        change(&mut order);
        order
    };
    for (order, reason) in [
        (with(&|o| o["total_cents"] = json!(2449)), "total-mismatch"),
        (
            with(&|o| {
                o["items"] = json!([]);
                o["total_cents"] = json!(0);
            }),
            "no-items",
        ),
        (
            with(&|o| {
                o["items"][1]["quantity"] = json!(0);
                o["total_cents"] = json!(1900);
            }),
            "non-positive-quantity",
        ),
        (
            with(&|o| {
                o["items"][1]["unit_price_cents"] = json!(-550);
                o["total_cents"] = json!(1350);
            }),
            "negative-price",
        ),
        (
            with(&|o| {
                o.as_object_mut().expect("object").remove("customer_id");
            }),
            "invalid-field",
        ),
        (with(&|o| o["currency"] = json!("euro")), "invalid-field"),
        (
            with(&|o| o["schema_version"] = json!(2)),
            "unknown-schema-version",
        ),
        (json!(["not", "an", "order"]), "invalid-field"),
    ] {
        refused(post_order(port, &order), 422, reason);
    }

    let get = answer(
        agent()
            .get(format!("http://127.0.0.1:{port}/orders"))
            .call(),
    );
    refused(get, 405, "method-not-allowed");
    let put = answer(
        agent()
            .put(format!("http://127.0.0.1:{port}/orders"))
            .header("content-type", "application/json")
            .send(valid.to_string()),
    );
    assert_eq!(put.allow.as_deref(), Some("POST"), "{put:?}");
    refused(put, 405, "method-not-allowed");
    let elsewhere = answer(agent().get(format!("http://127.0.0.1:{port}/order")).call());
    refused(elsewhere, 404, "not-found");

    let document = answer(
        agent()
            .get(format!("http://127.0.0.1:{port}/openapi.json"))
            .call(),
    );
    assert_eq!(document.status, 200);
    assert_eq!(document.content_type, "application/json");
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../order-producer/openapi/orders.v1.json"
    ))
    .expect("the committed OpenAPI document");
    assert_eq!(
        document.body, committed,
        "the served document is the committed one"
    );

    let records = read_topic(&pipeline.bootstrap(), &pipeline.orders, 0);
    assert!(
        records.is_empty(),
        "a refused order is never written: {} messages in the topic",
        records.len()
    );
    // Still serving: none of that crashed it.
    assert_eq!(
        post_order(port, &valid).status,
        201,
        "{}",
        producer.report()
    );
    stop_gracefully(&mut producer);
}

#[test]
fn a_broker_that_does_not_acknowledge_gets_503_with_retry_after() {
    // Nothing listens at this address: the order waits in librdkafka's queue, unacknowledged.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let (producer, port) = intake_only(
        Service::builder("order-producer", &nowhere)
            .env("HEALTH_PORT", free_port())
            .env("INTAKE_ACK_TIMEOUT_MS", 1000)
            .env("FLUSH_TIMEOUT_SECS", 1)
            // Room for one message, so that the next one finds the queue full.
            .env("KAFKA_QUEUE_BUFFERING_MAX_MESSAGES", 1),
    );
    let mut producer = producer.spawn();
    wait_listening(&producer);

    let started = std::time::Instant::now();
    let timed_out = post_order(port, &minimal_order("customer-wait"));
    assert_eq!(timed_out.status, 503, "{timed_out:?}");
    assert_eq!(timed_out.reason(), "broker-timeout");
    assert_eq!(timed_out.retry_after.as_deref(), Some("1"));
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it waited for the acknowledgement first"
    );

    let full = post_order(port, &minimal_order("customer-wait"));
    assert_eq!(full.status, 503, "{full:?}");
    assert_eq!(full.reason(), "queue-full");
    assert_eq!(full.retry_after.as_deref(), Some("1"));

    stop_gracefully(&mut producer);
}

/// A request body that sends its first half, then waits to be told to send the rest.
struct HeldBody {
    halves: [Vec<u8>; 2],
    sent: usize,
    release: mpsc::Receiver<()>,
}

impl Read for HeldBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent == 2 {
            return Ok(0);
        }
        if self.sent == 1 {
            let _ = self.release.recv();
        }
        let half = &self.halves[self.sent];
        assert!(buf.len() >= half.len(), "a small test body");
        buf[..half.len()].copy_from_slice(half);
        self.sent += 1;
        Ok(half.len())
    }
}

#[test]
fn sigterm_stops_taking_requests_answers_the_one_in_hand_then_flushes() {
    let pipeline = Pipeline::new(1);
    let (producer, port) = intake_only(pipeline.producer());
    let mut producer = producer.spawn();
    wait_listening(&producer);

    let body = minimal_order("customer-in-hand").to_string().into_bytes();
    let (first, second) = body.split_at(body.len() / 2);
    let (release, held) = mpsc::channel();
    let mut held = HeldBody {
        halves: [first.to_vec(), second.to_vec()],
        sent: 0,
        release: held,
    };
    let in_hand = std::thread::spawn(move || {
        answer(
            agent()
                .post(format!("http://127.0.0.1:{port}/orders"))
                .header("content-type", "application/json")
                .send(ureq::SendBody::from_reader(&mut held)),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    producer.terminate();
    assert!(
        producer.wait_until(Duration::from_secs(10), |events| events
            .iter()
            .any(|e| e.json["event"] == "intake_stopping" && e.json["in_hand"] == 1)),
        "the intake saw the signal with one request in hand\n{}",
        producer.report()
    );
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "no new connection is taken after the signal"
    );
    assert!(
        producer.wait_exit(Duration::from_millis(500)).is_none(),
        "it waits for the request in hand"
    );

    release.send(()).expect("release the body");
    let answered = in_hand.join().expect("the client thread");
    assert_eq!(answered.status, 201, "{answered:?}\n{}", producer.report());
    let status = producer
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("did not stop\n{}", producer.report()));
    assert!(status.success(), "{status:?}\n{}", producer.report());

    let events = producer.events();
    let position = |what: &dyn Fn(&Event) -> bool| {
        events
            .iter()
            .position(what)
            .unwrap_or_else(|| panic!("missing event\n{}", producer.report()))
    };
    let stopped = position(&|e| e.json["event"] == "intake_stopped");
    let flushed = position(&|e| e.is("producer_flushed"));
    assert!(stopped < flushed, "the intake finished before the flush");
    assert_eq!(events[flushed].json["delivered"], 1);

    let placed = answered.json();
    let records = read_topic(&pipeline.bootstrap(), &pipeline.orders, 1);
    let record = record_at(
        &records,
        placed["partition"].as_i64().expect("partition"),
        placed["offset"].as_i64().expect("offset"),
    );
    let order = Order::decode(record.value.as_deref(), MAX_ORDER_BYTES).expect("valid");
    assert_eq!(order.customer_id, "customer-in-hand");
}

#[test]
fn an_order_posted_over_http_is_tracked_once_even_when_the_client_retries() {
    let pipeline = Pipeline::new(3);
    let mut tracker = pipeline.tracker(&unique_name("http")).spawn();
    let (producer, port) = intake_only(pipeline.producer());
    let mut producer = producer.spawn();
    wait_listening(&producer);

    let mut order = minimal_order("customer-retry");
    order["order_id"] = json!("5d1e4a9c-2b1f-4c3e-8f6a-7b9c0d1e2f3a");
    let first = post_order(port, &order);
    assert_eq!(first.status, 201, "{first:?}");
    // The client did not hear the answer and retries with the same order_id.
    let again = post_order(port, &order);
    assert_eq!(again.status, 201, "{again:?}");
    assert_ne!(
        first.json()["offset"],
        again.json()["offset"],
        "two copies in the topic"
    );
    // Contract 1.1: a pickup order with no restaurant and no address.
    let mut pickup = minimal_order("customer-pickup");
    pickup.as_object_mut().expect("object").remove("restaurant");
    pickup
        .as_object_mut()
        .expect("object")
        .remove("delivery_address");
    let other = post_order(port, &pickup);
    assert_eq!(other.status, 201, "{other:?}");
    let other_id = other.json()["order_id"].as_str().expect("id").to_string();

    assert!(
        tracker.wait_until(Duration::from_secs(60), |events| {
            tracked(events).len() >= 2 && !duplicates(events).is_empty()
        }),
        "{}",
        tracker.report()
    );
    let events = tracker.events();
    let ids: Vec<String> = tracked(&events).into_iter().map(|t| t.order_id).collect();
    assert_eq!(ids.iter().filter(|id| **id == order["order_id"]).count(), 1);
    // What this checks is the line a person reads, so its text is the fact here.
    let pickup_line = events
        .iter()
        .find(|e| {
            e.is("order_tracked") && e.field("order_id").as_deref() == Some(other_id.as_str())
        })
        .unwrap_or_else(|| panic!("the pickup order was not tracked: {ids:?}"));
    assert!(
        pickup_line.message.contains("(pickup)"),
        "{}",
        pickup_line.message
    );
    assert_eq!(
        duplicates(&events),
        vec![order["order_id"].as_str().expect("id").to_string()]
    );

    stop_gracefully(&mut producer);
    stop_gracefully(&mut tracker);
}

#[test]
fn a_client_that_never_finishes_its_body_cannot_hold_the_shutdown_back() {
    let pipeline = Pipeline::new(1);
    let (producer, port) = intake_only(pipeline.producer().env("INTAKE_ACK_TIMEOUT_MS", 500));
    let mut producer = producer.spawn();
    wait_listening(&producer);

    let body = minimal_order("customer-stuck").to_string().into_bytes();
    let (first, second) = body.split_at(body.len() / 2);
    let (never, held) = mpsc::channel();
    let mut held = HeldBody {
        halves: [first.to_vec(), second.to_vec()],
        sent: 0,
        release: held,
    };
    let stuck = std::thread::spawn(move || {
        agent()
            .post(format!("http://127.0.0.1:{port}/orders"))
            .header("content-type", "application/json")
            .send(ureq::SendBody::from_reader(&mut held))
            .map(|response| response.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(500));
    producer.terminate();
    // The drain waits the ack timeout plus two seconds, then gives up on the request.
    let status = producer
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("a stuck client held the shutdown\n{}", producer.report()));
    assert!(status.success(), "{status:?}\n{}", producer.report());
    let events = producer.events();
    let timed_out = events
        .iter()
        .find(|e| e.json["event"] == "intake_drain_timed_out")
        .unwrap_or_else(|| panic!("no drain timeout logged\n{}", producer.report()));
    assert_eq!(timed_out.level, "WARN");
    assert_eq!(timed_out.json["abandoned"], 1);
    assert!(
        events.iter().any(|e| e.is("producer_flushed")),
        "the flush still ran\n{}",
        producer.report()
    );
    drop(never);
    let _ = stuck.join();
}

#[test]
fn an_intake_port_in_use_stops_the_producer_at_start_saying_so() {
    let taken = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("a port");
    let port = taken.local_addr().expect("address").port();
    let pipeline = Pipeline::new(1);
    let mut producer = pipeline.producer().env("INTAKE_PORT", port).spawn();
    let status = producer
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("it did not stop\n{}", producer.report()));
    assert!(!status.success());
    assert!(
        producer.events().iter().any(
            |e| e.level == "ERROR" && e.message.contains(&format!("port {port} (INTAKE_PORT)"))
        ),
        "{}",
        producer.report()
    );
}
