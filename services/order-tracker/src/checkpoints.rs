//! The partitions this tracker owns, their open windows, and where each may be committed: the
//! book the run loop writes after every message and the rebalance callback reads when
//! partitions come and go. [`crate::group`]'s header states the commit model; this is its
//! arithmetic, with no Kafka calls in it.
//!
//! A commit carries the partition's watermark in the offset's metadata
//! ([`encode_metadata`]), so that whoever resumes there judges late orders exactly as this
//! tracker did ([`crate::windows`], "Exact across crashes"), and the latest window not closed
//! yet, so that it can close it if the partition stays quiet.

use crate::windows::{Checkpoint, Part, PartEnd, PartitionWindows, Placement, WindowSettings};
use chrono::{DateTime, Utc};
use order_contract::Order;
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The book, shared by the run loop and the rebalance callback.
pub type SharedBook = Arc<Mutex<Book>>;

/// Prefix of the offset metadata this tracker writes: `order-tracker/2 watermark=<time|none>
/// unclosed=<time|none>`. Version 1 (no `unclosed`) is still read; anything else reads as
/// nothing carried.
const METADATA_PREFIX: &str = "order-tracker/2 watermark=";
const METADATA_PREFIX_V1: &str = "order-tracker/1 watermark=";
const UNCLOSED: &str = " unclosed=";

/// What a commit carries for whoever resumes at it (see [`Checkpoint`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    pub watermark: Option<DateTime<Utc>>,
    pub unclosed: Option<DateTime<Utc>>,
}

/// The commit metadata for `checkpoint`.
pub fn encode_metadata(checkpoint: &Checkpoint) -> String {
    let time = |at: Option<DateTime<Utc>>| match at {
        Some(at) => at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => "none".into(),
    };
    format!(
        "{METADATA_PREFIX}{}{UNCLOSED}{}",
        time(checkpoint.watermark),
        time(checkpoint.unclosed)
    )
}

/// What a commit carried; nothing for metadata not written by us.
pub fn decode_metadata(metadata: &str) -> Carried {
    let time = |text: &str| {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|at| at.with_timezone(&Utc))
    };
    if let Some(rest) = metadata.strip_prefix(METADATA_PREFIX) {
        let (watermark, unclosed) = rest.split_once(UNCLOSED).unwrap_or((rest, "none"));
        return Carried {
            watermark: time(watermark),
            unclosed: time(unclosed),
        };
    }
    Carried {
        watermark: metadata.strip_prefix(METADATA_PREFIX_V1).and_then(time),
        unclosed: None,
    }
}

/// One owned partition.
#[derive(Debug)]
struct Owned {
    windows: PartitionWindows,
    /// The offset after the last message fully handled, if any since it was assigned.
    next_offset: Option<i64>,
    /// The last checkpoint sent as a commit.
    committed: Option<Checkpoint>,
}

/// What one handled message did to the windows.
#[derive(Debug)]
pub struct Counted {
    /// Where the order was counted (`None` for a message that is not an order, or of a
    /// partition not owned any more).
    pub placement: Option<Placement>,
    /// Parts that ended with it and must be published.
    pub ended: Vec<(Part, PartEnd)>,
}

/// See the module header.
#[derive(Debug)]
pub struct Book {
    topic: String,
    settings: WindowSettings,
    partitions: BTreeMap<i32, Owned>,
}

impl Book {
    pub fn new(topic: String, settings: WindowSettings) -> Self {
        Book {
            topic,
            settings,
            partitions: BTreeMap::new(),
        }
    }

    pub fn shared(self) -> SharedBook {
        Arc::new(Mutex::new(self))
    }

    /// Starts owning `partition` at wall time `now`, resumed at `committed` (an offset and
    /// what its commit carried), or from `START_FROM`'s beginning or end for `None`.
    pub fn take_over(
        &mut self,
        partition: i32,
        committed: Option<(i64, Carried)>,
        now: DateTime<Utc>,
    ) {
        let carried = committed.map(|(_, carried)| carried).unwrap_or_default();
        let mut windows = PartitionWindows::resume(
            self.settings,
            partition,
            carried.watermark,
            carried.unclosed,
        );
        windows.listening_since(now);
        self.partitions.insert(
            partition,
            Owned {
                windows,
                next_offset: committed.map(|(offset, _)| offset),
                committed: None,
            },
        );
    }

    /// The partitions owned now.
    pub fn owned(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }

    /// Counts the fully handled message at `offset` (`order` if it is a valid order, redelivery
    /// or not), stamped `message_time` by Kafka and read at wall time `now`.
    pub fn handled(
        &mut self,
        partition: i32,
        offset: i64,
        order: Option<&Order>,
        message_time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Counted {
        let Some(owned) = self.partitions.get_mut(&partition) else {
            return Counted {
                placement: None,
                ended: Vec::new(),
            };
        };
        owned.windows.read(offset, now);
        let placement = order.map(|order| owned.windows.add(offset, order, message_time));
        owned.next_offset = Some(offset + 1);
        Counted {
            placement,
            ended: owned.windows.take_closed(),
        }
    }

    /// The open parts of quiet partitions, ended, and the records that close their windows
    /// (see [`PartitionWindows::quiet`] and [`PartitionWindows::close_quiet`]): to publish, and
    /// to commit past synchronously before another message is handled. `caught_up`: no message
    /// fetched is waiting to be handled (else nothing is quiet: the messages waiting only look
    /// like silence when the loop was held up).
    pub fn tick(&mut self, now: DateTime<Utc>, caught_up: bool) -> Vec<(Part, PartEnd)> {
        let mut records = Vec::new();
        for owned in self.partitions.values_mut() {
            let Some(next_offset) = owned.next_offset else {
                continue;
            };
            records.extend(
                owned
                    .windows
                    .quiet(now, caught_up)
                    .into_iter()
                    .map(|part| (part, PartEnd::Quiet)),
            );
            records.extend(
                owned
                    .windows
                    .close_quiet(now, caught_up, next_offset)
                    .map(|marker| (marker, PartEnd::ClosedQuiet)),
            );
        }
        records
    }

    /// The commits to make now that every part ended so far is acknowledged: for each partition
    /// whose checkpoint moved since the last one sent, its offset and watermark. They count as
    /// sent from here on (a failed commit only means a longer replay).
    pub fn checkpoints(&mut self) -> KafkaResult<TopicPartitionList> {
        let mut commits = Vec::new();
        for (partition, owned) in &mut self.partitions {
            let Some(next_offset) = owned.next_offset else {
                continue;
            };
            let checkpoint = owned.windows.checkpoint(next_offset);
            if owned.committed != Some(checkpoint) {
                owned.committed = Some(checkpoint);
                commits.push((*partition, checkpoint));
            }
        }
        self.commit_list(&commits)
    }

    /// Ends every part of `partitions` (all owned ones for `None`) and stops owning them:
    /// the parts to publish, and the commits to make once they are acknowledged (right after
    /// each partition's last handled message, or at the offset it was resumed at; a partition
    /// started from `START_FROM` that handled nothing has nothing to commit).
    pub fn hand_over(
        &mut self,
        partitions: Option<&[i32]>,
    ) -> KafkaResult<(Vec<(Part, PartEnd)>, TopicPartitionList)> {
        let chosen: Vec<i32> = match partitions {
            Some(list) => list.to_vec(),
            None => self.owned(),
        };
        let mut parts = Vec::new();
        let mut commits = Vec::new();
        for partition in chosen {
            let Some(mut owned) = self.partitions.remove(&partition) else {
                continue;
            };
            let Some(next_offset) = owned.next_offset else {
                continue;
            };
            let (ended, checkpoint) = owned.windows.hand_over(next_offset);
            parts.extend(ended);
            commits.push((partition, checkpoint));
        }
        Ok((parts, self.commit_list(&commits)?))
    }

    /// A commit of `partitions` failed: their checkpoints are sent again at the next tick, even
    /// if they have not moved (an idle partition would otherwise keep its old commit).
    pub fn commit_failed(&mut self, partitions: &[i32]) {
        for partition in partitions {
            if let Some(owned) = self.partitions.get_mut(partition) {
                owned.committed = None;
            }
        }
    }

    /// Stops owning `partitions` without a commit (they were lost: another member may own them).
    pub fn forget(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.partitions.remove(partition);
        }
    }

    fn commit_list(&self, commits: &[(i32, Checkpoint)]) -> KafkaResult<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (partition, checkpoint) in commits {
            list.add_partition_offset(&self.topic, *partition, Offset::Offset(checkpoint.offset))?;
            if let Some(mut element) = list.find_partition(&self.topic, *partition) {
                element.set_metadata(encode_metadata(checkpoint));
            }
        }
        Ok(list)
    }
}

/// `orders/0@12 orders/3@40`
pub fn describe_commits(list: &TopicPartitionList) -> String {
    if list.count() == 0 {
        return "none".into();
    }
    list.elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => {
                format!("{}/{}@{offset}", element.topic(), element.partition())
            }
            other => format!("{}/{}@{other:?}", element.topic(), element.partition()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as TimeDelta;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("time")
    }

    fn book() -> Book {
        Book::new(
            "orders".into(),
            WindowSettings {
                length: TimeDelta::seconds(60),
                grace: TimeDelta::seconds(10),
                future_tolerance: TimeDelta::seconds(10),
                part_span: 1_000_000,
            },
        )
    }

    fn order(seconds: i64) -> Order {
        crate::test_orders::order("c", at(seconds), "EUR", &[("A", 1, 100)])
    }

    fn offsets(list: &TopicPartitionList) -> Vec<(i32, i64, String)> {
        list.elements()
            .iter()
            .map(|e| {
                let Offset::Offset(offset) = e.offset() else {
                    panic!("not an offset")
                };
                (e.partition(), offset, e.metadata().to_string())
            })
            .collect()
    }

    /// The metadata of a commit carrying `watermark` and `unclosed`.
    fn carrying(watermark: Option<DateTime<Utc>>, unclosed: Option<DateTime<Utc>>) -> String {
        encode_metadata(&Checkpoint {
            offset: 0,
            watermark,
            unclosed,
        })
    }

    #[test]
    fn the_watermark_and_the_unclosed_window_travel_in_the_commit_metadata() {
        let millis = at(5) + TimeDelta::milliseconds(250);
        for (watermark, unclosed) in [
            (Some(at(5)), Some(at(60))),
            (Some(millis), None),
            (None, Some(at(60))),
            (None, None),
        ] {
            assert_eq!(
                decode_metadata(&carrying(watermark, unclosed)),
                Carried {
                    watermark,
                    unclosed
                }
            );
        }
        assert_eq!(
            carrying(Some(at(5)), None),
            "order-tracker/2 watermark=2027-01-15T08:00:05Z unclosed=none"
        );
        assert_eq!(
            decode_metadata("order-tracker/1 watermark=2027-01-15T08:00:05Z"),
            Carried {
                watermark: Some(at(5)),
                unclosed: None
            },
            "a commit of the previous version"
        );
        assert_eq!(
            decode_metadata(""),
            Carried::default(),
            "a commit written by someone else"
        );
        assert_eq!(
            decode_metadata("watermark=2027-01-15T08:00:05Z"),
            Carried::default()
        );
    }

    #[test]
    fn a_checkpoint_commits_before_the_open_window_and_only_when_it_moved() {
        let mut book = book();
        book.take_over(2, None, at(0));
        book.handled(2, 10, Some(&order(5)), at(5), at(5));
        book.handled(2, 11, None, at(6), at(6));
        let first = book.checkpoints().expect("list");
        assert_eq!(
            offsets(&first),
            [(2, 10, carrying(None, None))],
            "the open window starts at 10; whoever resumes there learns [0, 60) again"
        );
        assert_eq!(book.checkpoints().expect("list").count(), 0, "unchanged");
        book.commit_failed(&[2, 9]);
        assert_eq!(
            offsets(&book.checkpoints().expect("list")),
            [(2, 10, carrying(None, None))],
            "a failed commit is sent again, unchanged"
        );
        // The window closes: everything up to the last message may be committed.
        let counted = book.handled(2, 12, Some(&order(75)), at(75), at(75));
        assert_eq!(counted.ended.len(), 1);
        assert_eq!(
            offsets(&book.checkpoints().expect("list")),
            [(2, 12, carrying(Some(at(5)), None))],
            "[60,120) is open from 12, with the watermark 5 before it"
        );
    }

    #[test]
    fn a_quiet_partition_ends_its_parts_and_its_checkpoint_catches_up() {
        let mut book = book();
        book.take_over(0, None, at(0));
        book.take_over(1, None, at(0));
        book.handled(0, 7, Some(&order(5)), at(5), at(5));
        book.handled(1, 3, Some(&order(5)), at(5), at(12));
        let window_end = Some(at(60));
        assert_eq!(
            offsets(&book.checkpoints().expect("list")),
            [(0, 7, carrying(None, None)), (1, 3, carrying(None, None))],
            "both held back by their open window"
        );
        let caught_up = true;
        assert!(
            book.tick(at(15), false).is_empty(),
            "messages are waiting to be handled: nothing is quiet"
        );
        // Partition 0 has been quiet for the grace period, partition 1 not yet.
        let ended = book.tick(at(15), caught_up);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].0.key.partition, ended[0].1), (0, PartEnd::Quiet));
        assert_eq!(
            offsets(&book.checkpoints().expect("list")),
            [(0, 8, carrying(Some(at(5)), window_end))],
            "partition 0 commits right after its last message, its window still open"
        );
        assert!(
            book.tick(at(16), caught_up).is_empty(),
            "nothing open on 0, 1 not quiet yet"
        );
    }

    #[test]
    fn a_quiet_partition_closes_its_window_and_a_new_owner_closes_a_window_it_never_saw() {
        let mut first = book();
        first.take_over(0, None, at(0));
        first.handled(0, 7, Some(&order(5)), at(5), at(5));
        let caught_up = true;
        assert_eq!(first.tick(at(15), caught_up).len(), 1, "the quiet part");
        // The window [0, 60) closes by the wall clock at its end plus twice the grace (10 s).
        assert!(first.tick(at(79), caught_up).is_empty(), "not yet");
        let closed = first.tick(at(80), caught_up);
        assert_eq!(closed.len(), 1);
        let (marker, end) = &closed[0];
        assert_eq!(*end, PartEnd::ClosedQuiet);
        assert_eq!(
            (
                marker.key.window_start,
                marker.key.first_offset,
                marker.orders
            ),
            (at(0), 8, 0),
            "a record of no order, keyed where reading stopped"
        );
        assert_eq!(marker.closed_through, Some(at(60)));
        assert_eq!(
            offsets(&first.checkpoints().expect("list")),
            [(0, 8, carrying(Some(at(70)), None))],
            "the watermark moved to the window's end plus grace, no further"
        );
        assert!(first.tick(at(200), caught_up).is_empty(), "closed once");
        let late = first.handled(0, 8, Some(&order(59)), at(59), at(201));
        assert!(
            matches!(late.placement, Some(Placement::Late { .. })),
            "{late:?}"
        );
        let in_time = first.handled(0, 9, Some(&order(60)), at(60), at(201));
        assert!(
            matches!(in_time.placement, Some(Placement::Counted(_))),
            "the next window is still open: {in_time:?}"
        );

        // A partition handed over while quiet: its new owner never reads a message, and closes
        // the window from what the commit carried.
        let mut other = book();
        other.take_over(
            3,
            Some((
                8,
                Carried {
                    watermark: Some(at(5)),
                    unclosed: Some(at(60)),
                },
            )),
            at(20),
        );
        assert!(other.tick(at(79), caught_up).is_empty());
        let closed = other.tick(at(80), caught_up);
        assert_eq!(closed.len(), 1);
        assert_eq!(
            (closed[0].0.key.first_offset, closed[0].0.closed_through),
            (8, Some(at(60)))
        );
        assert_eq!(
            offsets(&other.checkpoints().expect("list")),
            [(3, 8, carrying(Some(at(70)), None))]
        );
    }

    #[test]
    fn handing_over_commits_after_the_last_message_and_forgets_the_partition() {
        let mut book = book();
        let resumed = Carried {
            watermark: Some(at(1)),
            unclosed: None,
        };
        book.take_over(0, Some((3, resumed)), at(0));
        book.take_over(1, None, at(0));
        book.handled(0, 3, Some(&order(5)), at(5), at(5));
        let (parts, commits) = book.hand_over(None).expect("list");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1, PartEnd::HandedOver);
        assert_eq!(
            offsets(&commits),
            [(0, 4, carrying(Some(at(5)), Some(at(60))))],
            "partition 1 read nothing: nothing to commit"
        );
        assert!(book.owned().is_empty());
        let late = book.handled(0, 4, Some(&order(6)), at(6), at(6));
        assert!(late.placement.is_none(), "no longer owned");
    }
}
