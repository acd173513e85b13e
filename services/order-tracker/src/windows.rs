//! Tumbling windows by order time, one partition at a time: the arithmetic of the windowed
//! statistics, kept free of Kafka so that every rule is a plain function with tests. The Kafka
//! side (publishing parts, committing checkpoints) is [`crate::window_stats`] and
//! [`crate::group`].
//!
//! For each order of one partition this decides which window part counts it, or whether it is
//! late, when a part is complete, and where a commit may land.
//!
//! Why it is shaped so:
//! - **Exact across crashes.** A part counts every valid message of one window in one
//!   contiguous offset range of one partition, and is keyed by (window, partition, offset of its
//!   first order) ([`PartKey`]). Every decision (which window, in time or late, when a part
//!   ends) depends only on the messages read and the watermark before them, so reading again
//!   from an offset with the watermark as it was before that offset repeats every decision and
//!   rebuilds every part under the same key; readers keep the last record per key. A commit
//!   must therefore land on an offset no part straddles, and carry the watermark of that point:
//!   [`PartitionWindows::checkpoint`] finds both. The per-process duplicate memory plays no
//!   part: a crash empties it, the offsets do not change.
//! - **Bounded replay.** Windows of one partition overlap in offsets (an order within grace
//!   arrives after the next window's first), so "no part straddles" alone could hold commits
//!   back for ever. A part therefore also ends where its span of
//!   [`WindowSettings::part_span`] offsets ends (spans are aligned, `offset / part_span`), which
//!   depends on the offsets alone: a commit lags at most one span, or one window and its grace
//!   at low rates.
//! - **Handover.** When this process gives a partition up (revocation, shutdown) it stops
//!   reading it, so it may end every open part where it stopped ([`PartitionWindows::hand_over`])
//!   and commit right after its last message: if that commit lands, nobody reads before it
//!   again; if it does not, the next owner replays from an earlier checkpoint and rewrites those
//!   parts under the same keys.
//! - **Lateness by event time, not wall time.** Each partition has a watermark: the latest
//!   `created_at` seen (or a quiet close's, below), so a replay at full speed judges its orders exactly as the first run did,
//!   given the watermark the commit carried ([`PartitionWindows::watermark`], restored with
//!   [`PartitionWindows::resume`]).
//! - **A future-dated order cannot close windows early.** An order dated further ahead of its
//!   message's Kafka timestamp than [`WindowSettings::future_tolerance`] is counted in its own
//!   window, but does not move the watermark. The message timestamp, not the wall clock: a
//!   replay reads the same timestamp again and so judges the same way.
//! - **A quiet partition still publishes its windows, and its commit catches up.** Once
//!   nothing has *arrived* from a partition for a grace period (wall time, so a replay reading
//!   old messages at full speed never counts as quiet) and it is caught up (nothing fetched
//!   beyond what was handled, so a tracker that was only busy elsewhere is not fooled), its open
//!   parts end there ([`PartitionWindows::quiet`], `part_end` `quiet`), so that they are
//!   published and the commit can pass them: an idle tracker's lag drains to zero. The windows
//!   stay open for now: a pause in reading (a broker hiccup) looks just like a quiet partition
//!   from here, and orders produced meanwhile must not be called late for it. An order that
//!   arrives later for such a window starts a new part.
//! - **A quiet partition still closes its windows, in bounded time.** If it stays quiet until
//!   the end of the latest window with a part here plus twice the grace period (wall time), the
//!   watermark moves to that end plus the grace period, which closes it and every earlier
//!   window here, and a record of no order says so ([`PartitionWindows::close_quiet`],
//!   `part_end` `closed_quiet`). Only an order delayed by more than twice the grace period,
//!   with its whole partition silent meanwhile, is then late. Which window that is travels in
//!   the commit ([`Checkpoint::unclosed`]), so that a new owner of a partition that went quiet
//!   under its old owner closes it too.
//! - **The wall-clock decisions are committed before anything else happens.** Ending a quiet
//!   part and closing a quiet window are the two decisions made by the wall clock, which a
//!   replay cannot repeat: so the caller publishes their records, awaits the acknowledgements
//!   and commits right after them *synchronously*, with the new watermark, before it handles
//!   another message of the partition (as at a handover). Then no replay starts before them.
//!   If that commit cannot be made (a rebalance refuses commits for seconds), the tracker goes
//!   on and later checkpoints send it again; a crash before any of them lands may count that
//!   window's later orders twice (README, "Not covered").
//! - **Money is never summed across currencies**: every total is per currency.

use crate::stats::FastHash;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use order_contract::Order;
use std::collections::BTreeMap;

/// Window length, grace period for late orders, how far ahead of its message's timestamp an
/// order may be dated and still move the watermark, and the offsets per part span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSettings {
    pub length: TimeDelta,
    pub grace: TimeDelta,
    pub future_tolerance: TimeDelta,
    /// A part ends where its aligned span of this many offsets ends (at least 1).
    pub part_span: i64,
}

/// Why a part ended (a part published while its window is open is not the window's last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartEnd {
    /// The window closed: the watermark passed its end plus grace.
    WindowClosed,
    /// The part's span of offsets ended; the window may have more parts.
    SpanEnded,
    /// This process gave the partition up; the next owner counts the rest in its own parts.
    HandedOver,
    /// Nothing arrived from the partition for a grace period: the part ended there, and the
    /// commit passes it; more orders for its window go in a later part.
    Quiet,
    /// Not a part of orders: the partition stayed quiet until the window's end plus twice the
    /// grace period, so the window closed on it by the wall clock. The record counts nothing;
    /// it carries the `closed_through` that says so.
    ClosedQuiet,
}

impl PartEnd {
    /// The stable name used in records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PartEnd::WindowClosed => "window_closed",
            PartEnd::SpanEnded => "span_ended",
            PartEnd::HandedOver => "handed_over",
            PartEnd::Quiet => "quiet",
            PartEnd::ClosedQuiet => "closed_quiet",
        }
    }
}

/// What identifies a part, reproducible from the offsets alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartKey {
    pub window_start: DateTime<Utc>,
    pub partition: i32,
    /// The offset of the part's first order.
    pub first_offset: i64,
}

/// One item's totals in a part (and, as they are, in a stats record).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemTotals {
    pub quantity: i64,
    /// Revenue per currency, in cents.
    pub revenue_cents: BTreeMap<String, i64>,
}

/// The totals of one window over one contiguous offset range of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub key: PartKey,
    pub window_end: DateTime<Utc>,
    /// The offset of the part's last order so far.
    pub last_offset: i64,
    /// The partition's watermark just before the part's first order: what a commit at
    /// `key.first_offset` must carry.
    pub watermark_before: Option<DateTime<Utc>>,
    pub orders: u64,
    /// Revenue per currency, in cents.
    pub revenue_cents: BTreeMap<String, i64>,
    /// Per SKU. Hashed, not ordered: every order looks up each of its items here, and
    /// comparing SKUs along a tree's path took about a tenth of the run loop catching up. The
    /// stats record sorts them once, when the part is published.
    pub items: hashbrown::HashMap<String, ItemTotals, FastHash>,
    /// Set when the part ends: every window ending at or before this time was closed on this
    /// partition then (the watermark minus the grace period), so that a reader can tell a
    /// closed window from an open one whatever ended its last part here.
    pub closed_through: Option<DateTime<Utc>>,
}

impl Part {
    fn new(
        key: PartKey,
        window_end: DateTime<Utc>,
        watermark_before: Option<DateTime<Utc>>,
    ) -> Part {
        Part {
            key,
            window_end,
            last_offset: key.first_offset,
            watermark_before,
            orders: 0,
            revenue_cents: BTreeMap::new(),
            items: hashbrown::HashMap::default(),
            closed_through: None,
        }
    }

    fn add(&mut self, offset: i64, order: &Order) {
        self.last_offset = offset;
        self.orders += 1;
        add_cents(&mut self.revenue_cents, &order.currency, order.total_cents);
        for item in &order.items {
            // The SKU is copied only the first time this part sees it.
            let totals = self.items.entry_ref(item.sku.as_str()).or_default();
            totals.quantity = totals.quantity.saturating_add(item.quantity);
            add_cents(
                &mut totals.revenue_cents,
                &order.currency,
                item.line_total_cents().unwrap_or(i64::MAX),
            );
        }
    }
}

/// Adds `cents` to `currency`'s total, copying the currency code only the first time it is
/// seen (this runs for every order and every item).
fn add_cents(totals: &mut BTreeMap<String, i64>, currency: &str, cents: i64) {
    match totals.get_mut(currency) {
        Some(total) => *total = total.saturating_add(cents),
        None => {
            totals.insert(currency.to_string(), cents);
        }
    }
}

/// Where one order was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the open part with this key.
    Counted(PartKey),
    /// Its window had closed: counted as late, in no part.
    Late {
        window_start: DateTime<Utc>,
        /// How far the watermark was past the window's end plus grace.
        behind: TimeDelta,
    },
}

/// The open windows of one partition and its watermark.
#[derive(Debug, Clone)]
pub struct PartitionWindows {
    settings: WindowSettings,
    partition: i32,
    watermark: Option<DateTime<Utc>>,
    /// When a message of this partition last arrived (wall time).
    last_arrival: Option<DateTime<Utc>>,
    open: BTreeMap<DateTime<Utc>, Part>,
    /// Parts whose span ended, until [`PartitionWindows::take_closed`] takes them.
    span_ended: Vec<Part>,
    /// Closed parts a commit has not passed yet: (first offset, last offset, watermark before).
    closed: Vec<(i64, i64, Option<DateTime<Utc>>)>,
    /// The end of the latest window with a part here that no record published from here has
    /// closed yet (`closed_through` before it): what [`PartitionWindows::close_quiet`] closes.
    unclosed: Option<DateTime<Utc>>,
    late: u64,
}

/// Where to commit for one partition, and what that commit must carry for whoever resumes
/// there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub offset: i64,
    pub watermark: Option<DateTime<Utc>>,
    /// The end of the latest window with a part here that no record has closed yet: the window
    /// [`PartitionWindows::close_quiet`] closes if the partition goes quiet.
    pub unclosed: Option<DateTime<Utc>>,
}

impl PartitionWindows {
    /// A partition read from its start, or from a commit that carried no watermark.
    pub fn new(settings: WindowSettings, partition: i32) -> Self {
        PartitionWindows::resume(settings, partition, None, None)
    }

    /// A partition resumed at a committed offset whose commit carried `watermark` and
    /// `unclosed` (see [`Checkpoint`]).
    pub fn resume(
        settings: WindowSettings,
        partition: i32,
        watermark: Option<DateTime<Utc>>,
        unclosed: Option<DateTime<Utc>>,
    ) -> Self {
        PartitionWindows {
            settings,
            partition,
            watermark,
            last_arrival: None,
            open: BTreeMap::new(),
            span_ended: Vec::new(),
            closed: Vec::new(),
            unclosed,
            late: 0,
        }
    }

    /// Starts the quiet clock at `now` (when the partition was assigned), so that a partition
    /// that never receives anything is quiet too.
    pub fn listening_since(&mut self, now: DateTime<Utc>) {
        self.last_arrival.get_or_insert(now);
    }

    /// The start of the window that holds `at`.
    pub fn window_start(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let length = self.settings.length.num_milliseconds().max(1);
        let millis = at.timestamp_millis();
        let start = millis - millis.rem_euclid(length);
        DateTime::from_timestamp_millis(start).unwrap_or(at)
    }

    /// Notes that the message at `offset` (an order or not) arrived at wall time `arrived`,
    /// and ends the open parts of earlier spans. Call it for every message, before [`add`].
    ///
    /// [`add`]: PartitionWindows::add
    pub fn read(&mut self, offset: i64, arrived: DateTime<Utc>) {
        self.last_arrival = Some(arrived);
        let span = self.span_of(offset);
        if self
            .open
            .values()
            .any(|part| self.span_of(part.key.first_offset) < span)
        {
            let (ended, open): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.open)
                .into_iter()
                .partition(|(_, part)| self.span_of(part.key.first_offset) < span);
            self.open = open;
            self.span_ended.extend(ended.into_values());
        }
    }

    fn span_of(&self, offset: i64) -> i64 {
        offset.div_euclid(self.settings.part_span.max(1))
    }

    /// Counts the order read at `offset`, whose message carries the Kafka timestamp
    /// `message_time` (for the future-dated rule).
    pub fn add(&mut self, offset: i64, order: &Order, message_time: DateTime<Utc>) -> Placement {
        let at = order.created_at;
        let window_start = self.window_start(at);
        let window_end = window_start + self.settings.length;
        if let Some(watermark) = self.watermark {
            let closes_at = window_end + self.settings.grace;
            if closes_at <= watermark {
                self.late += 1;
                return Placement::Late {
                    window_start,
                    behind: watermark - closes_at,
                };
            }
        }
        let key = PartKey {
            window_start,
            partition: self.partition,
            first_offset: offset,
        };
        let watermark_before = self.watermark;
        let part = self
            .open
            .entry(window_start)
            .or_insert_with(|| Part::new(key, window_end, watermark_before));
        part.add(offset, order);
        let counted = part.key;
        // A future-dated order neither moves the watermark nor decides which window a quiet
        // close waits for (that would put off closing every earlier window here).
        if at <= message_time + self.settings.future_tolerance {
            if self.unclosed.is_none_or(|end| end < window_end) {
                self.unclosed = Some(window_end);
            }
            if self.watermark.is_none_or(|w| at > w) {
                self.watermark = Some(at);
            }
        }
        Placement::Counted(counted)
    }

    /// Once nothing has arrived for a grace period before `now` and the partition is
    /// `caught_up` (nothing fetched or waiting beyond what was handled), ends every open part
    /// where it stands and returns them, to publish; they count as closed for [`checkpoint`].
    /// The caller must commit past them synchronously before handling another message of this
    /// partition (see the module header). Call it now and then.
    ///
    /// [`checkpoint`]: PartitionWindows::checkpoint
    pub fn quiet(&mut self, now: DateTime<Utc>, caught_up: bool) -> Vec<Part> {
        if self.open.is_empty() || !caught_up || !self.silent_at(now) {
            return Vec::new();
        }
        let mut ended: Vec<Part> = std::mem::take(&mut self.open).into_values().collect();
        self.remember_closed(&ended);
        self.stamp(&mut ended);
        ended
    }

    /// Closes, by the wall clock, the windows of a partition that went quiet: once it is
    /// `caught_up`, has had nothing arrive for a grace period, has no open part (see
    /// [`quiet`]), and `now` is past the end of the latest window with a part here plus twice
    /// the grace period, the watermark moves to that end plus the grace period (no further, so
    /// that only orders for windows already ended then are late) and this returns the record
    /// that says so: a part of no order keyed at `next_offset`, where reading stopped, so that
    /// no part of orders can share its key. The caller commits `next_offset` with the new
    /// watermark synchronously, as after [`quiet`].
    ///
    /// [`quiet`]: PartitionWindows::quiet
    pub fn close_quiet(
        &mut self,
        now: DateTime<Utc>,
        caught_up: bool,
        next_offset: i64,
    ) -> Option<Part> {
        let end = self.unclosed?;
        let grace = self.settings.grace;
        if !self.open.is_empty()
            || !self.span_ended.is_empty()
            || !caught_up
            || !self.silent_at(now)
            || now < end + grace + grace
        {
            return None;
        }
        let closes = end + grace;
        let watermark = self.watermark.map_or(closes, |known| known.max(closes));
        self.watermark = Some(watermark);
        let key = PartKey {
            window_start: end - self.settings.length,
            partition: self.partition,
            first_offset: next_offset,
        };
        let mut marker = Part::new(key, end, Some(watermark));
        marker.last_offset = next_offset - 1;
        self.stamp(std::slice::from_mut(&mut marker));
        Some(marker)
    }

    /// Nothing has arrived for a grace period before `now` (and something did, or the clock
    /// was started by [`listening_since`]).
    ///
    /// [`listening_since`]: PartitionWindows::listening_since
    fn silent_at(&self, now: DateTime<Utc>) -> bool {
        self.last_arrival
            .is_some_and(|last| now - last >= self.settings.grace)
    }

    /// Keeps the offsets of parts that just ended until a checkpoint passes them.
    fn remember_closed(&mut self, ended: &[Part]) {
        self.closed.extend(ended.iter().map(|part| {
            (
                part.key.first_offset,
                part.last_offset,
                part.watermark_before,
            )
        }));
    }

    /// Sets `closed_through` on parts about to be published; once it reaches the end of the
    /// latest window with a part here, no window here is left unclosed.
    fn stamp(&mut self, parts: &mut [Part]) {
        let closed_through = self.closed_through();
        for part in parts.iter_mut() {
            part.closed_through = closed_through;
        }
        if !parts.is_empty()
            && let (Some(through), Some(end)) = (closed_through, self.unclosed)
            && end <= through
        {
            self.unclosed = None;
        }
    }

    /// Removes and returns the parts that are complete: those whose span ended, then those
    /// whose window has closed (its end plus grace is at or before the watermark), oldest
    /// window first. Each must be published before a checkpoint passes it.
    pub fn take_closed(&mut self) -> Vec<(Part, PartEnd)> {
        let mut parts: Vec<(Part, PartEnd)> = self
            .span_ended
            .drain(..)
            .map(|part| (part, PartEnd::SpanEnded))
            .collect();
        if let Some(watermark) = self.watermark {
            let grace = self.settings.grace;
            let closed: Vec<DateTime<Utc>> = self
                .open
                .values()
                .filter(|part| part.window_end + grace <= watermark)
                .map(|part| part.key.window_start)
                .collect();
            parts.extend(
                closed
                    .into_iter()
                    .filter_map(|start| self.open.remove(&start))
                    .map(|part| (part, PartEnd::WindowClosed)),
            );
        }
        let (mut ended, ends): (Vec<Part>, Vec<PartEnd>) = parts.into_iter().unzip();
        self.remember_closed(&ended);
        self.stamp(&mut ended);
        ended.into_iter().zip(ends).collect()
    }

    /// Windows ending at or before this time are closed here: the watermark minus the grace.
    fn closed_through(&self) -> Option<DateTime<Utc>> {
        self.watermark
            .map(|watermark| watermark - self.settings.grace)
    }

    /// Gives the partition up after the message before `next_offset`: ends every part (the
    /// complete ones first, as [`take_closed`] would, then the open ones as handed over) and
    /// returns them with the checkpoint right after the last message, carrying the current
    /// watermark. Only for a partition this process stops reading; see the module header.
    ///
    /// [`take_closed`]: PartitionWindows::take_closed
    pub fn hand_over(&mut self, next_offset: i64) -> (Vec<(Part, PartEnd)>, Checkpoint) {
        let mut parts = self.take_closed();
        let mut open: Vec<Part> = std::mem::take(&mut self.open).into_values().collect();
        self.stamp(&mut open);
        parts.extend(open.into_iter().map(|part| (part, PartEnd::HandedOver)));
        self.closed.clear();
        let checkpoint = Checkpoint {
            offset: next_offset,
            watermark: self.watermark,
            unclosed: self.unclosed,
        };
        (parts, checkpoint)
    }

    /// The parts still open, oldest window first.
    pub fn open_parts(&self) -> impl Iterator<Item = &Part> {
        self.open.values()
    }

    /// Where this partition may be committed once every part closed so far is acknowledged,
    /// `next_offset` being the offset after the last message handled: the highest offset at
    /// or below it that no part (open, or closed since the last checkpoint) straddles, with the
    /// watermark as it was just before that offset. A reader that resumes there rebuilds every
    /// part it reads under the key it had. Closed parts wholly before that offset are
    /// forgotten: a commit there passes them for good.
    pub fn checkpoint(&mut self, next_offset: i64) -> Checkpoint {
        // (first offset, last offset, watermark before, still open)
        let parts: Vec<(i64, i64, Option<DateTime<Utc>>, bool)> = self
            .open
            .values()
            .map(|part| {
                (
                    part.key.first_offset,
                    part.last_offset,
                    part.watermark_before,
                    true,
                )
            })
            .chain(self.span_ended.iter().map(|part| {
                (
                    part.key.first_offset,
                    part.last_offset,
                    part.watermark_before,
                    true,
                )
            }))
            .chain(
                self.closed
                    .iter()
                    .map(|(first, last, before)| (*first, *last, *before, false)),
            )
            .collect();
        let mut at = Checkpoint {
            offset: next_offset,
            watermark: self.watermark,
            unclosed: self.unclosed,
        };
        // A part straddles `at` when it starts before it and is still open or ends at or after
        // it. Moving back to the earliest such start may make another part straddle: repeat
        // (the offset only decreases).
        while let Some((first, _, before, _)) = parts
            .iter()
            .filter(|(first, last, _, open)| *first < at.offset && (*open || *last >= at.offset))
            .min_by_key(|(first, ..)| *first)
        {
            at = Checkpoint {
                offset: *first,
                watermark: *before,
                unclosed: self.unclosed,
            };
        }
        self.closed.retain(|(_, last, _)| *last >= at.offset);
        if at.offset != next_offset {
            // Whoever resumes there reads again the parts this window's `unclosed` came from,
            // and learns it from them; carried, it could let a new owner close the window
            // before it has read them (a quiet close right after the takeover).
            at.unclosed = None;
        }
        at
    }

    /// The watermark, to carry with a commit.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.watermark
    }

    /// Orders counted as late so far.
    pub fn late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WindowSettings {
        settings_with_span(1_000_000)
    }

    fn settings_with_span(part_span: i64) -> WindowSettings {
        WindowSettings {
            length: TimeDelta::seconds(60),
            grace: TimeDelta::seconds(10),
            future_tolerance: TimeDelta::seconds(5),
            part_span,
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("time")
    }

    fn order(seconds: i64, currency: &str, items: &[(&str, i64, i64)]) -> Order {
        crate::test_orders::order("c", at(seconds), currency, items)
    }

    #[test]
    fn windows_are_aligned_tumbling_intervals_of_the_order_time() {
        let windows = PartitionWindows::new(settings(), 0);
        // 1_800_000_000 is a multiple of 60.
        assert_eq!(windows.window_start(at(0)), at(0));
        assert_eq!(windows.window_start(at(59)), at(0));
        assert_eq!(windows.window_start(at(60)), at(60));
        assert_eq!(windows.window_start(at(-1)), at(-60));
    }

    #[test]
    fn a_part_counts_orders_revenue_per_currency_and_items_and_is_keyed_by_its_first_offset() {
        let mut windows = PartitionWindows::new(settings(), 3);
        let first = windows.add(7, &order(1, "EUR", &[("PIZ", 2, 1000)]), at(1));
        windows.add(
            8,
            &order(2, "USD", &[("PIZ", 1, 1200), ("COL", 1, 300)]),
            at(2),
        );
        windows.add(9, &order(3, "EUR", &[("COL", 3, 250)]), at(3));
        let key = PartKey {
            window_start: at(0),
            partition: 3,
            first_offset: 7,
        };
        assert_eq!(first, Placement::Counted(key));
        let part = windows.open_parts().next().expect("one part");
        assert_eq!((part.key, part.last_offset, part.orders), (key, 9, 3));
        assert_eq!(
            part.revenue_cents,
            BTreeMap::from([("EUR".into(), 2750), ("USD".into(), 1500)])
        );
        let pizza = &part.items["PIZ"];
        assert_eq!(pizza.quantity, 3);
        assert_eq!(
            pizza.revenue_cents,
            BTreeMap::from([("EUR".into(), 2000), ("USD".into(), 1200)])
        );
        assert_eq!(part.items["COL"].quantity, 4);
    }

    #[test]
    fn a_window_closes_once_the_watermark_passes_its_end_plus_grace() {
        let mut windows = PartitionWindows::new(settings(), 0);
        windows.add(0, &order(30, "EUR", &[("A", 1, 100)]), at(30));
        windows.add(1, &order(69, "EUR", &[("A", 1, 100)]), at(69));
        assert!(windows.take_closed().is_empty(), "end 60 + grace 10 > 69");
        windows.add(2, &order(70, "EUR", &[("A", 1, 100)]), at(70));
        let closed = windows.take_closed();
        assert_eq!(closed.len(), 1);
        let (part, end) = &closed[0];
        assert_eq!((part.key.window_start, part.orders), (at(0), 1));
        assert_eq!(*end, PartEnd::WindowClosed);
        assert_eq!(
            windows.open_parts().count(),
            1,
            "the next window stays open"
        );
    }

    #[test]
    fn an_order_for_a_window_within_grace_still_counts_and_one_past_it_is_late() {
        let mut windows = PartitionWindows::new(settings(), 0);
        windows.add(0, &order(65, "EUR", &[("A", 1, 100)]), at(65));
        // Window [0, 60) closes at 70: an order dated 59 arriving at watermark 65 is in time.
        assert!(matches!(
            windows.add(1, &order(59, "EUR", &[("A", 1, 100)]), at(66)),
            Placement::Counted(_)
        ));
        windows.add(2, &order(75, "EUR", &[("A", 1, 100)]), at(75));
        let late = windows.add(3, &order(10, "EUR", &[("A", 1, 100)]), at(76));
        assert_eq!(
            late,
            Placement::Late {
                window_start: at(0),
                behind: TimeDelta::seconds(5)
            }
        );
        assert_eq!(windows.late(), 1);
    }

    #[test]
    fn a_future_dated_order_is_counted_but_does_not_move_the_watermark() {
        let mut windows = PartitionWindows::new(settings(), 0);
        windows.add(0, &order(10, "EUR", &[("A", 1, 100)]), at(10));
        // Dated an hour ahead of its message's timestamp.
        let future = windows.add(1, &order(3_600, "EUR", &[("A", 1, 100)]), at(11));
        assert!(matches!(future, Placement::Counted(_)));
        assert_eq!(windows.watermark(), Some(at(10)));
        // So an order of the current window is not late.
        assert!(matches!(
            windows.add(2, &order(20, "EUR", &[("A", 1, 100)]), at(20)),
            Placement::Counted(_)
        ));
        // Within the tolerance, it does move it.
        windows.add(3, &order(24, "EUR", &[("A", 1, 100)]), at(20));
        assert_eq!(windows.watermark(), Some(at(24)));
    }

    #[test]
    fn a_quiet_partition_ends_its_open_parts_so_that_the_commit_passes_them() {
        let mut windows = PartitionWindows::new(settings(), 0);
        assert!(windows.quiet(at(100), true).is_empty(), "nothing read yet");
        for offset in 0..2 {
            windows.read(offset, at(50));
            windows.add(offset, &order(50, "EUR", &[("A", 1, 100)]), at(50));
        }
        assert!(
            windows.quiet(at(59), true).is_empty(),
            "not quiet for a grace period yet"
        );
        assert_eq!(
            windows.checkpoint(2).offset,
            0,
            "the open part holds it back"
        );
        assert!(
            windows.quiet(at(60), false).is_empty(),
            "messages are waiting: not quiet"
        );
        let ended = windows.quiet(at(60), true);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].key.first_offset, ended[0].orders), (0, 2));
        assert_eq!(
            ended[0].closed_through,
            Some(at(40)),
            "the watermark minus the grace: its window is not closed"
        );
        assert!(windows.quiet(at(70), true).is_empty(), "ended: not again");
        assert_eq!(windows.watermark(), Some(at(50)), "order time only");
        assert_eq!(
            windows.checkpoint(2),
            Checkpoint {
                offset: 2,
                watermark: Some(at(50)),
                unclosed: Some(at(60))
            },
            "the commit passes the ended part"
        );
        // A pause in reading, then orders produced meanwhile: none is late, and the window
        // goes on in a new part.
        windows.read(2, at(90));
        let placed = windows.add(2, &order(55, "EUR", &[("A", 1, 100)]), at(55));
        assert!(matches!(placed, Placement::Counted(key) if key.first_offset == 2));
        assert!(windows.quiet(at(95), true).is_empty(), "arrived 5 s ago");
        let again = windows.quiet(at(100), true);
        assert_eq!((again[0].key.first_offset, again[0].orders), (2, 1));
    }

    #[test]
    fn a_checkpoint_lands_where_no_part_straddles_and_carries_the_watermark_from_there() {
        let mut windows = PartitionWindows::new(settings(), 2);
        for (offset, seconds) in [(100, 5), (101, 20), (102, 61)] {
            windows.add(
                offset,
                &order(seconds, "EUR", &[("A", 1, 100)]),
                at(seconds),
            );
        }
        // [0,60) holds 100-101 and [60,120) holds 102, both open: commit before 100.
        assert_eq!(
            windows.checkpoint(103),
            Checkpoint {
                offset: 100,
                watermark: None,
                unclosed: None
            }
        );
        // An order of [0,60) within grace, then one that closes it.
        windows.add(103, &order(40, "EUR", &[("A", 1, 100)]), at(62));
        windows.add(104, &order(70, "EUR", &[("A", 1, 100)]), at(70));
        let closed = windows.take_closed();
        assert_eq!(
            (closed[0].0.key.first_offset, closed[0].0.last_offset),
            (100, 103)
        );
        // [0,60) is closed but spans 100-103, and [60,120) is open from 102: still 100.
        assert_eq!(windows.checkpoint(105).offset, 100);
        // Once [60,120) closes too, nothing straddles: commit after the last message, with
        // the current watermark.
        windows.add(105, &order(130, "EUR", &[("A", 1, 100)]), at(130));
        assert_eq!(windows.take_closed().len(), 1);
        assert_eq!(
            windows.checkpoint(106),
            Checkpoint {
                offset: 105,
                watermark: Some(at(70)),
                unclosed: None
            },
            "[120,180) is open from 105, with the watermark 70 before it"
        );
    }

    /// The property the design rests on: from any checkpoint, a reader that resumes with the
    /// checkpoint's watermark builds exactly the parts the first reader built from there on,
    /// under the same keys, so that keeping the last record per key counts every order once.
    /// With parts of every span length, so that span ends are part of the property.
    #[test]
    fn resuming_at_any_checkpoint_rebuilds_the_same_parts_under_the_same_keys() {
        // Out-of-order times within and beyond grace, one future-dated order (1000, with
        // messages stamped 25 s apart), two currencies.
        let times = [
            5, 20, 61, 40, 70, 3, 75, 130, 65, 200, 119, 1000, 260, 250, 330,
        ];
        let messages: Vec<(i64, Order, DateTime<Utc>)> = times
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let currency = if i % 2 == 0 { "EUR" } else { "USD" };
                let stamped = at(25 * i as i64);
                (
                    500 + i as i64,
                    order(*s, currency, &[("A", 1, 100)]),
                    stamped,
                )
            })
            .collect();
        let read = |windows: &mut PartitionWindows, message: &(i64, Order, DateTime<Utc>)| {
            let (offset, order, stamped) = message;
            windows.read(*offset, *stamped);
            windows.add(*offset, order, *stamped);
        };
        for span in [1_000_000, 2, 3, 4, 7] {
            let settings = settings_with_span(span);
            let run = |windows: &mut PartitionWindows, from: i64| -> BTreeMap<PartKey, Part> {
                let mut parts = BTreeMap::new();
                for message in messages.iter().filter(|(o, ..)| *o >= from) {
                    read(windows, message);
                    for (part, _) in windows.take_closed() {
                        parts.insert(part.key, part);
                    }
                }
                for part in windows.open_parts() {
                    parts.insert(part.key, part.clone());
                }
                parts
            };
            let all_parts = run(&mut PartitionWindows::new(settings, 0), 0);
            let counted: u64 = all_parts.values().map(|part| part.orders).sum();
            let mut whole = PartitionWindows::new(settings, 0);
            run(&mut whole, 0);
            assert_eq!(
                counted + whole.late(),
                messages.len() as u64,
                "span {span}: every order counted once or late"
            );
            // Checkpoint after each message, and resume from each checkpoint.
            for stop in 1..messages.len() {
                let mut first = PartitionWindows::new(settings, 0);
                for message in &messages[..stop] {
                    read(&mut first, message);
                    first.take_closed();
                }
                let checkpoint = first.checkpoint(messages[stop].0);
                assert!(
                    messages[stop].0 - checkpoint.offset <= span.min(messages.len() as i64),
                    "span {span}, stop {stop}: the commit lags more than a span"
                );
                let mut resumed = PartitionWindows::resume(
                    settings,
                    0,
                    checkpoint.watermark,
                    checkpoint.unclosed,
                );
                let rebuilt = run(&mut resumed, checkpoint.offset);
                for (key, part) in &rebuilt {
                    assert_eq!(
                        all_parts.get(key),
                        Some(part),
                        "span {span}, resumed at {} (stop {stop}): part {key:?} differs",
                        checkpoint.offset
                    );
                }
                // And every part that holds a message at or after the checkpoint was rebuilt.
                for (key, part) in &all_parts {
                    if part.last_offset >= checkpoint.offset {
                        assert!(
                            rebuilt.contains_key(key),
                            "span {span}, stop {stop}: {key:?} not rebuilt"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_part_ends_where_its_span_of_offsets_ends_and_the_window_goes_on_in_a_new_part() {
        let mut windows = PartitionWindows::new(settings_with_span(10), 1);
        for offset in [7, 8, 9, 10, 11] {
            windows.read(offset, at(offset));
            windows.add(offset, &order(offset, "EUR", &[("A", 1, 100)]), at(offset));
        }
        let closed = windows.take_closed();
        assert_eq!(closed.len(), 1, "the part of span 0 ended at offset 10");
        let (part, end) = &closed[0];
        assert_eq!(
            (part.key.first_offset, part.last_offset, part.orders, *end),
            (7, 9, 3, PartEnd::SpanEnded)
        );
        let open: Vec<_> = windows.open_parts().collect();
        assert_eq!(
            (
                open[0].key.window_start,
                open[0].key.first_offset,
                open[0].orders
            ),
            (at(0), 10, 2)
        );
        // A span end seen by a non-order message too, before anything is taken.
        windows.read(20, at(20));
        assert_eq!(
            windows.checkpoint(21).offset,
            10,
            "the ended part is not published yet"
        );
        assert_eq!(windows.take_closed().len(), 1);
        assert_eq!(windows.checkpoint(21).offset, 21);
    }

    #[test]
    fn handing_over_ends_every_part_and_commits_after_the_last_message() {
        let mut windows = PartitionWindows::new(settings(), 0);
        windows.read(0, at(30));
        windows.add(0, &order(30, "EUR", &[("A", 1, 100)]), at(30));
        windows.read(1, at(75));
        windows.add(1, &order(75, "EUR", &[("A", 1, 100)]), at(75));
        let (parts, checkpoint) = windows.hand_over(2);
        let ends: Vec<(i64, PartEnd)> = parts
            .iter()
            .map(|(part, end)| (part.key.first_offset, *end))
            .collect();
        assert_eq!(
            ends,
            [(0, PartEnd::WindowClosed), (1, PartEnd::HandedOver)],
            "the closed window first, then the open one"
        );
        assert_eq!(
            checkpoint,
            Checkpoint {
                offset: 2,
                watermark: Some(at(75)),
                unclosed: Some(at(120))
            },
            "[60, 120) is for the next owner to close"
        );
        assert_eq!(windows.open_parts().count(), 0);
    }

    #[test]
    fn a_future_dated_order_does_not_put_off_a_quiet_close() {
        let mut windows = PartitionWindows::new(settings(), 0);
        windows.read(0, at(5));
        windows.add(0, &order(5, "EUR", &[("A", 1, 100)]), at(5));
        windows.read(1, at(6));
        windows.add(1, &order(100_000, "EUR", &[("A", 1, 100)]), at(6));
        assert_eq!(windows.quiet(at(16), true).len(), 2);
        let marker = windows.close_quiet(at(80), true, 2).expect("closed");
        assert_eq!((marker.window_end, marker.orders), (at(60), 0));
        assert_eq!(windows.watermark(), Some(at(70)));
    }

    #[test]
    fn a_replay_of_old_messages_at_full_speed_is_not_quiet() {
        let mut windows = PartitionWindows::new(settings(), 0);
        // Orders an hour old, arriving now one after the other.
        for offset in 0..5 {
            windows.read(offset, at(3_600 + offset));
            assert!(windows.quiet(at(3_600 + offset), true).is_empty());
            let placed = windows.add(offset, &order(offset * 10, "EUR", &[("A", 1, 100)]), at(0));
            assert!(matches!(placed, Placement::Counted(_)), "offset {offset}");
        }
        assert_eq!(windows.late(), 0);
    }
}
