//! Reading and writing topics directly, with a plain librdkafka client, and creating them with
//! the real `topic-init`.

use crate::process::Service;
use crate::wait::eventually;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// A unique topic or group name, so tests never see each other's data.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Creates the orders, dead-letter and window stats topics by running the real `topic-init`.
pub fn create_topics(
    bootstrap: &str,
    orders: &str,
    dead_letters: &str,
    stats: &str,
    partitions: i32,
) {
    let mut init = Service::builder("topic-init", bootstrap)
        .env("ORDERS_TOPIC", orders)
        .env("DEAD_LETTER_TOPIC", dead_letters)
        .env("WINDOW_STATS_TOPIC", stats)
        .env("TOPIC_PARTITIONS", partitions)
        .spawn();
    let status = init
        .wait_exit(Duration::from_secs(60))
        .expect("topic-init finishes");
    assert!(status.success(), "topic-init failed\n{}", init.report());
}

/// One message as read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_ref())
            .map(|value| String::from_utf8_lossy(value).into_owned())
    }
}

/// Reads `topic` from the beginning of every partition until at least `expected` messages
/// arrived, then one more idle second so that any extra message (a duplicate) is seen too.
///
/// Watermarks are not used to decide when to stop: tansu reports them differently from Kafka,
/// and counting what actually arrives is what the tests want to prove anyway.
pub fn read_topic(bootstrap: &str, topic: &str, expected: usize) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.auto.commit", "false")
        .set("group.id", unique_name("reader"))
        .create()
        .expect("reader consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let mut idle_since = Instant::now();
    eventually(Duration::from_secs(60), || {
        // Everything that has arrived, not one message per check.
        let mut wait = Duration::from_millis(100);
        while let Some(polled) = consumer.poll(wait) {
            wait = Duration::ZERO;
            match polled {
                Ok(message) => {
                    idle_since = Instant::now();
                    records.push(Record {
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec),
                        headers: message
                            .headers()
                            .map(|headers| {
                                headers
                                    .iter()
                                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                }
                Err(err) => panic!("reading {topic}: {err}"),
            }
        }
        records.len() >= expected && idle_since.elapsed() > Duration::from_secs(1)
    });
    records
}

/// A raw message to write: (key, value); `None` is absent (a `None` value is a tombstone).
pub type RawMessage<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Writes raw messages to `topic` and waits until all are acknowledged.
pub fn produce_raw(bootstrap: &str, topic: &str, messages: &[RawMessage<'_>]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "2000000")
        .create()
        .expect("raw producer");
    for (key, value) in messages {
        let mut record =
            BaseRecord::<[u8], [u8]>::to(topic).headers(OwnedHeaders::new().insert(Header {
                key: "origin",
                value: Some("test"),
            }));
        if let Some(key) = key {
            record = record.key(*key);
        }
        if let Some(value) = value {
            record = record.payload(*value);
        }
        producer
            .send(record)
            .map_err(|(err, _)| err)
            .expect("queue a raw message");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("raw messages delivered");
}
