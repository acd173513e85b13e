//! The dead-letter topic: where a message that is not a valid order goes, with why and where
//! it came from, so that nothing is dropped and the stream goes on.
//!
//! A poison message must never block the partition nor be lost, so the tracker writes it here
//! and stores its offset only after the broker acknowledged the write (`acks=all`, idempotent).
//! A failed write is transient by nature (broker away, leader moving) and is retried with
//! backoff until it succeeds, the tracker is asked to stop, or [`RETRY_WINDOW`] has passed; in
//! the last two cases the offset stays unstored and the message is read again next time. Giving
//! up stops the tracker with exit 1 (compose restarts it): it holds the message while retrying
//! and does not poll, and a member that does not poll for `max.poll.interval.ms` is put out of
//! the group. So the consumer's `max.poll.interval.ms` (which is also its rebalance timeout) must
//! stay above [`LONGEST_WRITE`], the longest one write can hold the run loop; a test in
//! `config.rs` checks the default against it. An attempt that timed out may still be delivered
//! later, so the worst case is a second dead-letter copy, never a lost one. The one permanent failure, a value too
//! large for the dead-letter topic, is written again without its value and says so in a header.
//!
//! Headers (all UTF-8): `dlq.reason` (a stable code such as `total-mismatch`), `dlq.detail`
//! (the human explanation), `dlq.source.topic`, `dlq.source.partition`, `dlq.source.offset`,
//! `dlq.group`, `dlq.failed-at` (RFC 3339). The original key, value and headers are kept.

use order_contract::RejectReason;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use service_runtime::delivery::{Reply, ReplyContext, ServedProducer};
use service_runtime::shutdown::Shutdown;
use std::time::Duration;
use tracing::{error, info, warn};

/// Header names, for readers of the dead-letter topic.
pub mod header {
    pub const REASON: &str = "dlq.reason";
    pub const DETAIL: &str = "dlq.detail";
    pub const SOURCE_TOPIC: &str = "dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "dlq.source.offset";
    pub const GROUP: &str = "dlq.group";
    pub const FAILED_AT: &str = "dlq.failed-at";
    pub const VALUE_OMITTED: &str = "dlq.value-omitted";
}

/// Writes rejected messages to the dead-letter topic.
pub struct DeadLetterWriter {
    producer: ServedProducer<ReplyContext>,
    topic: String,
    group_id: String,
}

impl std::fmt::Debug for DeadLetterWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterWriter")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// How long one attempt waits for the broker's acknowledgement.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// No new attempt starts once this long has passed since the first.
pub const RETRY_WINDOW: Duration = Duration::from_secs(60);
/// The longest pause between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest one write can hold the run loop: the window, then one last attempt. The
/// consumer's `max.poll.interval.ms` must be above it.
pub const LONGEST_WRITE: Duration =
    Duration::from_secs(RETRY_WINDOW.as_secs() + MAX_BACKOFF.as_secs() + ATTEMPT_TIMEOUT.as_secs());

/// What became of a dead-letter write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterOutcome {
    /// Acknowledged: the source offset may be stored.
    Written { partition: i32, offset: i64 },
    /// Shutdown came first: the source offset must not be stored.
    Abandoned,
    /// Every attempt within [`RETRY_WINDOW`] failed: the source offset must not be stored, and
    /// the tracker stops with a failure.
    GaveUp,
}

impl DeadLetterWriter {
    pub fn new(producer: ServedProducer<ReplyContext>, topic: String, group_id: String) -> Self {
        DeadLetterWriter {
            producer,
            topic,
            group_id,
        }
    }

    /// The dead-letter topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `message` with `reason`, retrying until acknowledged, shutdown, or the end of
    /// [`RETRY_WINDOW`].
    pub async fn write(
        &self,
        message: &impl Message,
        reason: &RejectReason,
        shutdown: &mut Shutdown,
    ) -> DeadLetterOutcome {
        let mut backoff = Duration::from_millis(100);
        let mut omit_value = false;
        let started = tokio::time::Instant::now();
        loop {
            if started.elapsed() >= RETRY_WINDOW {
                error!(
                    event = "dead_letter_gave_up",
                    window_secs = RETRY_WINDOW.as_secs(),
                    source = %format!("{}/{}@{}", message.topic(), message.partition(), message.offset()),
                    "dead-letter writes failed for {} s; stopping (the source offset stays unstored)",
                    RETRY_WINDOW.as_secs()
                );
                return DeadLetterOutcome::GaveUp;
            }
            let headers = self.headers(message, reason, omit_value);
            let (reply, answer) = tokio::sync::oneshot::channel();
            let mut record =
                BaseRecord::<[u8], [u8], Box<Reply>>::with_opaque_to(&self.topic, Box::new(reply))
                    .headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if !omit_value && let Some(value) = message.payload() {
                record = record.payload(value);
            }
            // Refused at once (the client's queue full, say), or answered by the delivery report;
            // an attempt with no answer within ATTEMPT_TIMEOUT counts as failed.
            let sent = match self.producer.kafka().send(record) {
                Err((err, _)) => Err(err),
                Ok(()) => {
                    let answered = tokio::select! {
                        _ = shutdown.requested() => return DeadLetterOutcome::Abandoned,
                        answered = tokio::time::timeout(ATTEMPT_TIMEOUT, answer) => answered,
                    };
                    match answered {
                        Ok(Ok(report)) => report,
                        // The report is sent exactly once; a dropped sender means the producer
                        // is gone, which only happens at shutdown.
                        Ok(Err(_)) => Err(KafkaError::Canceled),
                        Err(_elapsed) => Err(KafkaError::MessageProduction(
                            RDKafkaErrorCode::MessageTimedOut,
                        )),
                    }
                }
            };
            match sent {
                Ok((partition, offset)) => {
                    return DeadLetterOutcome::Written { partition, offset };
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))
                    if !omit_value =>
                {
                    info!(
                        source_offset = message.offset(),
                        "message too large for the dead-letter topic; writing it without its value"
                    );
                    omit_value = true;
                }
                Err(err) => {
                    warn!(
                        event = "dead_letter_retry",
                        error = %err,
                        retry_in_ms = backoff.as_millis() as u64,
                        source = %format!("{}/{}@{}", message.topic(), message.partition(), message.offset()),
                        "dead-letter write failed; retrying (the source offset stays unstored)"
                    );
                    tokio::select! {
                        _ = shutdown.requested() => return DeadLetterOutcome::Abandoned,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn headers(
        &self,
        message: &impl Message,
        reason: &RejectReason,
        omit_value: bool,
    ) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let detail = reason.to_string();
        let failed_at = chrono::Utc::now().to_rfc3339();
        let omitted = message.payload().map_or(0, <[u8]>::len).to_string();
        let mut ours = vec![
            (header::REASON, reason.code()),
            (header::DETAIL, detail.as_str()),
            (header::SOURCE_TOPIC, message.topic()),
            (header::SOURCE_PARTITION, partition.as_str()),
            (header::SOURCE_OFFSET, offset.as_str()),
            (header::GROUP, self.group_id.as_str()),
            (header::FAILED_AT, failed_at.as_str()),
        ];
        if omit_value {
            ours.push((header::VALUE_OMITTED, omitted.as_str()));
        }
        for (key, value) in ours {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        headers
    }

    /// Waits for outstanding dead-letter writes. Each write is awaited, so the only one that
    /// can be outstanding is a write abandoned at shutdown: it is still delivered if it can be
    /// (its source offset stays unstored, so the worst case is a second dead-letter copy).
    /// Returns whether everything was flushed.
    pub fn flush(&self, timeout: Duration) -> bool {
        match service_runtime::kafka::flush_promptly(self.producer.kafka(), timeout) {
            Ok(()) => true,
            Err(err) => {
                warn!(
                    event = "dead_letter_flush_incomplete",
                    error = %err,
                    timeout_ms = timeout.as_millis() as u64,
                    "dead-letter producer flush incomplete"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{OwnedMessage, Timestamp};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    const DLQ: &str = "orders.dlq";

    fn writer(mock: &MockCluster<'_, DefaultProducerContext>) -> DeadLetterWriter {
        let kafka = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .create_with_context(ReplyContext::default())
            .expect("producer");
        let producer = ServedProducer::start(kafka, "dlq-test").expect("report thread");
        DeadLetterWriter::new(producer, DLQ.into(), "trackers".into())
    }

    fn poison() -> OwnedMessage {
        OwnedMessage::new(
            Some(b"not json".to_vec()),
            Some(b"customer-1".to_vec()),
            "orders".into(),
            Timestamp::NotAvailable,
            2,
            41,
            None,
        )
    }

    /// The dead-letter topic's messages, from the start.
    fn read_back(
        mock: &MockCluster<'_, DefaultProducerContext>,
        count: usize,
    ) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "reader")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(DLQ, 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&assignment).expect("assign");
        let mut read = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while read.len() < count && std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                read.push(message.detach());
            }
        }
        read
    }

    /// Dead-letters a poison message while the broker refuses the first produce request with
    /// `refusal`: what the writer answered, and the copy read back from the dead-letter topic.
    async fn write_after(refusal: RDKafkaRespErr) -> (DeadLetterOutcome, OwnedMessage) {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic(DLQ, 1, 1).expect("topic");
        let writer = writer(&mock);
        mock.request_errors(RDKafkaApiKey::Produce, &[refusal]);
        let (_trigger, mut shutdown) = service_runtime::shutdown::channel();
        let reason = RejectReason::NotJson {
            detail: "expected value".into(),
        };
        let outcome = writer.write(&poison(), &reason, &mut shutdown).await;
        let copy = read_back(&mock, 1).into_iter().next().expect("a copy");
        (outcome, copy)
    }

    /// The broker refuses the first write for good (not an error librdkafka retries itself):
    /// the writer hears it from the delivery report, waits, writes again, and reports where the
    /// copy landed, with the reason and the source in its headers.
    #[tokio::test]
    async fn a_write_the_broker_refuses_is_written_again_and_acknowledged() {
        let (outcome, copy) =
            write_after(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED).await;
        assert_eq!(
            outcome,
            DeadLetterOutcome::Written {
                partition: 0,
                offset: 0
            }
        );
        assert_eq!(copy.payload(), Some(&b"not json"[..]));
        let headers = copy.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|header| header.key == name)
                .and_then(|header| header.value)
                .map(|value| String::from_utf8_lossy(value).into_owned())
        };
        assert_eq!(header(header::SOURCE_OFFSET).as_deref(), Some("41"));
        assert_eq!(header(header::REASON).as_deref(), Some("not-json"));
    }

    /// The one permanent failure: a message too large for the dead-letter topic is written again
    /// without its value, and says so.
    #[tokio::test]
    async fn a_message_too_large_for_the_dead_letter_topic_is_written_without_its_value() {
        let (outcome, copy) =
            write_after(RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE).await;
        assert!(
            matches!(outcome, DeadLetterOutcome::Written { .. }),
            "{outcome:?}"
        );
        assert_eq!(copy.payload(), None);
        assert!(
            copy.headers()
                .expect("headers")
                .iter()
                .any(|header| header.key == header::VALUE_OMITTED)
        );
    }
}
