//! Running statistics, alerts and duplicate recognition: the tracker's pure logic, with no
//! Kafka in it, so that it is tested directly.
//!
//! Memory is bounded everywhere a hostile or simply long-lived stream could grow it: recent
//! order ids live in a ring allocated once, per-customer burst windows in an LRU cache;
//! per-item totals are bounded by the menu; per-customer totals are capped and the least
//! active customer is forgotten first.

use chrono::{DateTime, Utc};
use hashbrown::{HashMap, HashTable};
use lru::LruCache;
use order_contract::{Money, Order};
use std::collections::VecDeque;
use std::fmt;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The hasher of the per-item and per-customer maps: foldhash, seeded at random per process.
///
/// Their keys come from messages (SKUs and customer ids anyone who can write to the topic
/// chooses), so the hasher must not be predictable from outside: SipHash (std's default) is
/// that, but it stood out in the tracker's CPU profile. foldhash's random per-process
/// seed keeps collisions unforeseeable to a producer (the DoS resistance hashbrown relies on by
/// default, and what the `lru` caches below already use); it is not a cryptographic MAC, which
/// nothing here needs. The maps are bounded besides (see the module header).
pub(crate) type FastHash = foldhash::fast::RandomState;

/// Remembers the most recent order ids to recognise redeliveries: the last `capacity` ids seen
/// for the first time, oldest forgotten first. Both parts are allocated once, at start, so
/// nothing is allocated per order (an LRU list allocates a node per entry, and its pointer
/// chasing cost about 8% of the tracker's CPU when catching up):
/// - a ring of the ids, in the order first seen, overwritten oldest first;
/// - a hash table of positions in that ring (4 bytes each rather than a 16-byte id), found by
///   the id's hash; forgetting the oldest id looks for its position, not the id. It has room
///   for twice `capacity`: forgetting leaves tombstones, and a table at most half full clears
///   them in place instead of growing (a set of ids sized for `capacity` grew once it had).
///
/// About 29 bytes per id at the default 100,000 (2.9 MB) and 33 at the 10,000,000 allowed, by
/// the sizes of its parts. It is no faster than a set of ids: a lookup in a table of this size
/// misses the CPU's cache either way, about 9% of the tracker's CPU when catching up. What
/// helps is [`SeenOrders::warm_up`]: the run loop looks up a whole batch's ids before it
/// handles them, so that their misses overlap (in `perf` on an AMD EPYC, Zen 5,
/// `first_sighting` fell from 9% of the tracker's CPU to 1.5%, and the warm-up takes about 3%).
#[derive(Debug)]
pub struct SeenOrders {
    /// Ids by position; `ring.len() < capacity` until the ring is full.
    ring: Vec<Uuid>,
    /// The position the next new id takes once the ring is full (its oldest id).
    oldest: usize,
    capacity: usize,
    positions: HashTable<u32>,
    hasher: FastHash,
}

impl SeenOrders {
    /// At most `capacity` ids (up to `u32::MAX`; the configuration allows 10,000,000).
    pub fn new(capacity: NonZeroUsize) -> Self {
        let capacity = capacity.get().min(u32::MAX as usize);
        SeenOrders {
            ring: Vec::with_capacity(capacity),
            oldest: 0,
            capacity,
            positions: HashTable::with_capacity(capacity.saturating_mul(2)),
            hasher: FastHash::default(),
        }
    }

    /// Records `id`; true the first time it is seen (within the remembered window).
    pub fn first_sighting(&mut self, id: Uuid) -> bool {
        let hash = self.hasher.hash_one(id);
        let ring = &self.ring;
        if self
            .positions
            .find(hash, |&at| ring[at as usize] == id)
            .is_some()
        {
            return false;
        }
        let at = if self.ring.len() < self.capacity {
            self.ring.push(id);
            self.ring.len() - 1
        } else {
            let at = self.oldest;
            let forgotten = std::mem::replace(&mut self.ring[at], id);
            if let Ok(entry) = self
                .positions
                .find_entry(self.hasher.hash_one(forgotten), |&p| p as usize == at)
            {
                entry.remove();
            }
            self.oldest = (at + 1) % self.capacity;
            at
        };
        let (ring, hasher) = (&self.ring, &self.hasher);
        self.positions
            .insert_unique(hash, at as u32, |&p| hasher.hash_one(ring[p as usize]));
        true
    }

    /// Looks up, without changing anything, what [`SeenOrders::first_sighting`] will look up
    /// for `upcoming` ids (the next orders, in order): each id, and the slot of the id the
    /// ring forgets when that one is new. So that the cache misses of a whole batch overlap:
    /// the lookups are independent of each other, where each `first_sighting` waits for its
    /// own misses one after the other (four, in a table this size: the id's group, its
    /// candidates in the ring, and the forgotten id's group and slot).
    pub fn warm_up(&self, upcoming: impl Iterator<Item = Uuid>) {
        let ring = &self.ring;
        let full = ring.len() == self.capacity;
        for (ahead, id) in upcoming.enumerate() {
            let found = self
                .positions
                .find(self.hasher.hash_one(id), |&at| ring[at as usize] == id);
            std::hint::black_box(found);
            if full {
                let at = (self.oldest + ahead) % self.capacity;
                let slot = self
                    .positions
                    .find(self.hasher.hash_one(ring[at]), |&p| p as usize == at);
                std::hint::black_box(slot);
            }
        }
    }
}

/// Totals for one menu item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemTotals {
    pub name: String,
    pub quantity: i64,
    pub revenue_cents: i64,
}

/// Totals for one customer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CustomerTotals {
    pub orders: u64,
    pub revenue_cents: i64,
}

/// At most this many customers keep running totals; past it the least active are dropped.
const MAX_TRACKED_CUSTOMERS: usize = 100_000;

/// Orders and revenue in total, per item and per customer.
#[derive(Debug)]
pub struct Statistics {
    pub orders: u64,
    pub revenue_cents: i64,
    pub currency: String,
    pub duplicates: u64,
    pub dead_lettered: u64,
    items: HashMap<String, ItemTotals, FastHash>,
    customers: HashMap<String, CustomerTotals, FastHash>,
    window_started: Instant,
    orders_at_window_start: u64,
}

impl Default for Statistics {
    fn default() -> Self {
        Statistics {
            orders: 0,
            revenue_cents: 0,
            currency: "EUR".into(),
            duplicates: 0,
            dead_lettered: 0,
            items: HashMap::default(),
            customers: HashMap::default(),
            window_started: Instant::now(),
            orders_at_window_start: 0,
        }
    }
}

impl Statistics {
    /// Adds one order (already known not to be a duplicate).
    pub fn record(&mut self, order: &Order) {
        self.orders += 1;
        self.revenue_cents = self.revenue_cents.saturating_add(order.total_cents);
        if self.currency != order.currency {
            self.currency.replace_range(.., &order.currency);
        }
        for item in &order.items {
            // Looked up by `&str`, once: a key is copied only the first time it is seen.
            let totals = self.items.entry_ref(item.sku.as_str()).or_default();
            if totals.name.is_empty() {
                totals.name.push_str(&item.name);
            }
            totals.quantity = totals.quantity.saturating_add(item.quantity);
            totals.revenue_cents = totals
                .revenue_cents
                .saturating_add(item.line_total_cents().unwrap_or(i64::MAX));
        }
        if self.customers.len() >= MAX_TRACKED_CUSTOMERS
            && !self.customers.contains_key(order.customer_id.as_str())
        {
            self.forget_least_active_customer();
        }
        let customer = self
            .customers
            .entry_ref(order.customer_id.as_str())
            .or_default();
        customer.orders += 1;
        customer.revenue_cents = customer.revenue_cents.saturating_add(order.total_cents);
    }

    fn forget_least_active_customer(&mut self) {
        if let Some(least) = self
            .customers
            .iter()
            .min_by_key(|(_, totals)| totals.orders)
            .map(|(id, _)| id.clone())
        {
            self.customers.remove(&least);
        }
    }

    /// Totals for one item.
    pub fn item(&self, sku: &str) -> Option<&ItemTotals> {
        self.items.get(sku)
    }

    /// Totals for one customer.
    pub fn customer(&self, customer_id: &str) -> Option<CustomerTotals> {
        self.customers.get(customer_id).copied()
    }

    /// The `n` items sold most (by quantity, then revenue).
    pub fn top_items(&self, n: usize) -> Vec<(&str, &ItemTotals)> {
        let mut items: Vec<_> = self.items.iter().map(|(k, v)| (k.as_str(), v)).collect();
        items.sort_by(|a, b| {
            (b.1.quantity, b.1.revenue_cents, a.0).cmp(&(a.1.quantity, a.1.revenue_cents, b.0))
        });
        items.truncate(n);
        items
    }

    /// The `n` customers with the most revenue (then most orders).
    pub fn top_customers(&self, n: usize) -> Vec<(&str, CustomerTotals)> {
        let mut customers: Vec<_> = self
            .customers
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        customers.sort_by(|a, b| {
            (b.1.revenue_cents, b.1.orders, a.0).cmp(&(a.1.revenue_cents, a.1.orders, b.0))
        });
        customers.truncate(n);
        customers
    }

    /// A snapshot for the periodic summary; starts a new rate window.
    pub fn summary(&mut self) -> Summary {
        let elapsed = self.window_started.elapsed();
        let in_window = self.orders - self.orders_at_window_start;
        let per_second = in_window as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
        self.window_started = Instant::now();
        self.orders_at_window_start = self.orders;
        Summary {
            orders: self.orders,
            revenue: Money::new(self.revenue_cents, &self.currency).to_string(),
            per_second,
            top_items: self
                .top_items(3)
                .into_iter()
                .map(|(_, item)| {
                    format!(
                        "{} x{} ({})",
                        item.name,
                        item.quantity,
                        Money::new(item.revenue_cents, &self.currency)
                    )
                })
                .collect(),
            top_customers: self
                .top_customers(3)
                .into_iter()
                .map(|(id, totals)| {
                    format!(
                        "{id} ({} orders, {})",
                        totals.orders,
                        Money::new(totals.revenue_cents, &self.currency)
                    )
                })
                .collect(),
            duplicates: self.duplicates,
            dead_lettered: self.dead_lettered,
        }
    }
}

/// What the periodic summary line says.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub orders: u64,
    pub revenue: String,
    pub per_second: f64,
    pub top_items: Vec<String>,
    pub top_customers: Vec<String>,
    pub duplicates: u64,
    pub dead_lettered: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_none = |list: &[String]| {
            if list.is_empty() {
                "none yet".to_string()
            } else {
                list.join(", ")
            }
        };
        write!(
            f,
            "{} orders, {} revenue, {:.1} orders/s; top items: {}; top customers: {}; {} duplicates recognised; {} dead-lettered",
            self.orders,
            self.revenue,
            self.per_second,
            or_none(&self.top_items),
            or_none(&self.top_customers),
            self.duplicates,
            self.dead_lettered
        )
    }
}

/// An alert raised by an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// The order's total is above the threshold.
    HighValue {
        total_cents: i64,
        threshold_cents: i64,
    },
    /// The customer placed more than `threshold` orders within `window`.
    Burst {
        orders_in_window: usize,
        threshold: u32,
        window: Duration,
    },
}

impl Alert {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::HighValue { .. } => "high-value",
            Alert::Burst { .. } => "burst",
        }
    }
}

/// How many customers' recent order times are kept for burst detection.
const BURST_CUSTOMERS: usize = 50_000;

/// The alert thresholds, and the per-customer windows they need.
#[derive(Debug)]
pub struct AlertRules {
    high_value_cents: i64,
    burst_count: u32,
    burst_window: Duration,
    recent: LruCache<String, VecDeque<DateTime<Utc>>>,
}

impl AlertRules {
    pub fn new(high_value_cents: i64, burst_count: u32, burst_window: Duration) -> Self {
        AlertRules {
            high_value_cents,
            burst_count,
            burst_window,
            recent: LruCache::new(NonZeroUsize::new(BURST_CUSTOMERS).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// The alerts `order` raises. Bursts are judged on the orders' own `created_at`, not on
    /// when the tracker reads them, so a replay or a lagging tracker sees the same bursts.
    /// A burst alerts once, when it crosses the threshold, not on every order after.
    pub fn check(&mut self, order: &Order) -> Vec<Alert> {
        let mut alerts = Vec::new();
        if order.total_cents > self.high_value_cents {
            alerts.push(Alert::HighValue {
                total_cents: order.total_cents,
                threshold_cents: self.high_value_cents,
            });
        }
        let window = chrono::Duration::from_std(self.burst_window).unwrap_or(chrono::Duration::MAX);
        let times = self
            .recent
            .get_or_insert_mut_ref(order.customer_id.as_str(), VecDeque::new);
        // Keep the window sorted even if orders arrive slightly out of time order.
        let at = times.partition_point(|t| *t <= order.created_at);
        times.insert(at, order.created_at);
        let newest = times.back().copied().unwrap_or(order.created_at);
        while times.front().is_some_and(|t| newest - *t >= window) {
            times.pop_front();
        }
        let threshold = self.burst_count as usize;
        if times.len() == threshold + 1 {
            alerts.push(Alert::Burst {
                orders_in_window: times.len(),
                threshold: self.burst_count,
                window: self.burst_window,
            });
        }
        // Bounded even for a customer ordering non-stop.
        while times.len() > threshold + 1 {
            times.pop_front();
        }
        alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn order(customer: &str, items: &[(&str, i64, i64)], at_secs: i64) -> Order {
        let created_at = Utc.timestamp_opt(1_700_000_000 + at_secs, 0).unwrap();
        crate::test_orders::order(customer, created_at, "EUR", items)
    }

    #[test]
    fn totals_add_up_per_order_item_and_customer() {
        let mut stats = Statistics::default();
        stats.record(&order("c1", &[("PIZ", 2, 1000), ("COL", 1, 250)], 0));
        stats.record(&order("c2", &[("PIZ", 1, 1000)], 1));
        stats.record(&order("c1", &[("COL", 3, 250)], 2));
        assert_eq!(stats.orders, 3);
        assert_eq!(stats.revenue_cents, 2250 + 1000 + 750);
        let pizza = stats.item("PIZ").expect("pizza");
        assert_eq!((pizza.quantity, pizza.revenue_cents), (3, 3000));
        let cola = stats.item("COL").expect("cola");
        assert_eq!((cola.quantity, cola.revenue_cents), (4, 1000));
        assert_eq!(
            stats.customer("c1"),
            Some(CustomerTotals {
                orders: 2,
                revenue_cents: 3000
            })
        );
    }

    #[test]
    fn top_lists_are_ordered_by_volume_and_revenue() {
        let mut stats = Statistics::default();
        stats.record(&order("small", &[("A", 1, 100)], 0));
        stats.record(&order("big", &[("B", 5, 2000)], 0));
        stats.record(&order("mid", &[("A", 2, 100), ("C", 1, 900)], 0));
        let items: Vec<&str> = stats.top_items(2).into_iter().map(|(sku, _)| sku).collect();
        assert_eq!(items, vec!["B", "A"]);
        let customers: Vec<&str> = stats.top_customers(3).into_iter().map(|(c, _)| c).collect();
        assert_eq!(customers, vec!["big", "mid", "small"]);
    }

    #[test]
    fn the_summary_reports_totals_and_starts_a_new_rate_window() {
        let mut stats = Statistics::default();
        stats.record(&order("c1", &[("A", 2, 1250)], 0));
        stats.duplicates = 1;
        let summary = stats.summary();
        assert_eq!(summary.orders, 1);
        assert_eq!(summary.revenue, "25.00 EUR");
        assert!(summary.per_second > 0.0);
        let line = summary.to_string();
        assert!(line.contains("1 orders, 25.00 EUR revenue"), "{line}");
        assert!(line.contains("Item A x2 (25.00 EUR)"), "{line}");
        assert!(line.contains("c1 (1 orders, 25.00 EUR)"), "{line}");
        assert!(line.contains("1 duplicates recognised"), "{line}");
        assert_eq!(stats.summary().per_second, 0.0, "nothing new since");
    }

    #[test]
    fn the_revenue_is_shown_in_the_currency_of_the_orders() {
        let mut stats = Statistics::default();
        let mut dollars = order("c1", &[("A", 2, 1250)], 0);
        dollars.currency = "USD".into();
        stats.record(&dollars);
        assert_eq!(stats.summary().revenue, "25.00 USD");
    }

    #[test]
    fn the_rate_is_orders_in_the_window_over_its_length() {
        let outer = Instant::now();
        let mut stats = Statistics::default();
        for i in 0..10 {
            stats.record(&order("c1", &[("A", 1, 100)], i));
        }
        std::thread::sleep(Duration::from_millis(20));
        let per_second = stats.summary().per_second;
        let window = outer.elapsed().as_secs_f64();
        // The window is at most the time since before the statistics existed, and at least
        // the 20 ms slept.
        assert!(
            per_second >= 10.0 / window && per_second <= 10.0 / 0.020,
            "{per_second} orders/s over a window of at most {window} s"
        );
    }

    #[test]
    fn a_full_customer_memory_forgets_the_least_active_customer_first() {
        let mut stats = Statistics::default();
        stats.record(&order("quiet", &[("A", 1, 100)], 0));
        for i in 1..MAX_TRACKED_CUSTOMERS {
            let customer = format!("c{i}");
            stats.record(&order(&customer, &[("A", 1, 100)], 0));
            stats.record(&order(&customer, &[("A", 1, 100)], 0));
        }
        assert_eq!(stats.customers.len(), MAX_TRACKED_CUSTOMERS);
        stats.record(&order("newcomer", &[("A", 1, 100)], 0));
        assert_eq!(
            stats.customers.len(),
            MAX_TRACKED_CUSTOMERS,
            "memory is bounded"
        );
        assert_eq!(
            stats.customer("quiet"),
            None,
            "the one-order customer went first"
        );
        assert!(stats.customer("newcomer").is_some());
        assert_eq!(stats.customer("c1").map(|c| c.orders), Some(2));
    }

    #[test]
    fn a_redelivered_order_id_is_recognised_within_the_remembered_window() {
        let mut seen = SeenOrders::new(NonZeroUsize::new(2).expect("2"));
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(seen.first_sighting(a));
        assert!(!seen.first_sighting(a));
        assert!(seen.first_sighting(b));
        assert!(seen.first_sighting(c), "a is now the oldest and forgotten");
        assert!(seen.first_sighting(a), "memory is bounded to two ids");
    }

    /// Against the plainest model (a queue of the ids searched end to end), over a stream
    /// with many repeats, so that hits, evictions and the ring's wrap-around all happen often.
    #[test]
    fn the_memory_agrees_with_a_plain_queue_of_the_last_ids() {
        for capacity in [1, 2, 7, 64] {
            let mut seen = SeenOrders::new(NonZeroUsize::new(capacity).expect("capacity"));
            // The allocation, not `capacity()`: that counts tombstones as used room, so it
            // dips and recovers with the (randomly seeded) hashes even when nothing grows.
            let allocated = seen.positions.allocation_size();
            let mut model: VecDeque<Uuid> = VecDeque::new();
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            // A small pool of ids: about one in three is a repeat of a recent one.
            let pool = 3 * capacity as u128 + 1;
            for step in 0..20_000 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let drawn = u128::from(state >> 33);
                let id = Uuid::from_u128(drawn % pool);
                // Warming up for this id and the next ones of the pool changes nothing. They are
                // more than the ring holds, so once it is full its positions wrap around.
                seen.warm_up(
                    (0..=capacity as u128 + 1).map(|ahead| Uuid::from_u128((drawn + ahead) % pool)),
                );
                let expected = !model.contains(&id);
                if expected {
                    if model.len() == capacity {
                        model.pop_front();
                    }
                    model.push_back(id);
                }
                assert_eq!(
                    seen.first_sighting(id),
                    expected,
                    "capacity {capacity}, step {step}, id {id}"
                );
                assert!(seen.positions.len() <= capacity, "bounded");
                assert_eq!(seen.positions.allocation_size(), allocated, "never grows");
            }
        }
    }

    #[test]
    fn an_order_above_the_threshold_raises_a_high_value_alert() {
        let mut rules = AlertRules::new(10_000, 5, Duration::from_secs(60));
        assert!(rules.check(&order("c", &[("A", 1, 10_000)], 0)).is_empty());
        let alerts = rules.check(&order("d", &[("A", 1, 10_001)], 0));
        assert_eq!(
            alerts,
            vec![Alert::HighValue {
                total_cents: 10_001,
                threshold_cents: 10_000
            }]
        );
    }

    /// The kinds are metric labels (`order_tracker_alerts_total{kind}`) that dashboards query.
    #[test]
    fn alert_kinds_are_the_documented_metric_labels() {
        let high = Alert::HighValue {
            total_cents: 2,
            threshold_cents: 1,
        };
        let burst = Alert::Burst {
            orders_in_window: 6,
            threshold: 5,
            window: Duration::from_secs(60),
        };
        assert_eq!((high.kind(), burst.kind()), ("high-value", "burst"));
    }

    #[test]
    fn a_burst_alerts_once_when_it_crosses_the_threshold() {
        let mut rules = AlertRules::new(i64::MAX, 3, Duration::from_secs(60));
        let kinds: Vec<usize> = (0..6)
            .map(|i| rules.check(&order("c", &[("A", 1, 100)], i * 5)).len())
            .collect();
        assert_eq!(kinds, vec![0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn orders_spread_wider_than_the_window_are_no_burst() {
        let mut rules = AlertRules::new(i64::MAX, 2, Duration::from_secs(60));
        for i in 0..10 {
            assert!(
                rules
                    .check(&order("c", &[("A", 1, 100)], i * 31))
                    .is_empty()
            );
        }
    }

    #[test]
    fn bursts_are_per_customer() {
        let mut rules = AlertRules::new(i64::MAX, 2, Duration::from_secs(60));
        for i in 0..2 {
            assert!(rules.check(&order("a", &[("A", 1, 100)], i)).is_empty());
            assert!(rules.check(&order("b", &[("A", 1, 100)], i)).is_empty());
        }
        assert_eq!(rules.check(&order("a", &[("A", 1, 100)], 3)).len(), 1);
    }
}
