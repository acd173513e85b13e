//! Realistic food-delivery orders: a menu, a handful of restaurants, a few hundred customers of
//! whom some order far more often than others, one to four lines of one to three items.
//!
//! Realism matters for the tracker's statistics and alerts to show anything: a skewed customer
//! mix makes "top customers" and burst alerts meaningful, and occasional large orders cross the
//! high-value alert threshold.
//!
//! It lives beside the contract, behind the `samples` feature, because two parties need it and
//! neither may depend on the other: the producer sends these orders, and the tracker's
//! benchmarks feed them to the real per-message handling. Every generated order passes
//! [`Order::decode`] (tested below), so the generator cannot drift from the contract either.

use crate::{DeliveryAddress, Order, OrderItem, SCHEMA_VERSION};
use chrono::Utc;
use compact_str::CompactString;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

/// (sku, name, unit price in cents)
const MENU: &[(&str, &str, i64)] = &[
    ("PIZ-MAR", "Pizza Margherita", 950),
    ("PIZ-PEP", "Pizza Pepperoni", 1150),
    ("PIZ-4FR", "Pizza Quatre Fromages", 1290),
    ("BUR-CLA", "Burger Classique", 1090),
    ("BUR-VEG", "Burger Végétarien", 1050),
    ("SUS-SAU", "Sushi Saumon (8)", 1390),
    ("RAM-TON", "Ramen Tonkotsu", 1250),
    ("SAL-CES", "Salade César", 890),
    ("TAC-BOE", "Tacos Bœuf", 850),
    ("CRE-JAM", "Crêpe Jambon Fromage", 750),
    ("FRI-MAI", "Frites Maison", 390),
    ("BOI-COL", "Cola 33 cl", 250),
    ("BOI-EAU", "Eau Pétillante 50 cl", 200),
    ("DES-TIR", "Tiramisu", 550),
    ("DES-FON", "Fondant au Chocolat", 590),
];

const RESTAURANTS: &[&str] = &[
    "Chez Luigi",
    "Le Burger du Coin",
    "Sakura Sushi",
    "Ramen Ya",
    "La Crêperie Bretonne",
    "Taco Loco",
    "Green Bowl",
    "Bistro Parisien",
];

const STREETS: &[&str] = &[
    "rue de la Paix",
    "avenue Jean Jaurès",
    "boulevard Voltaire",
    "rue Victor Hugo",
    "place de la République",
    "rue du Faubourg Saint-Antoine",
    "quai des Chartrons",
    "rue de la République",
];

/// (postal code, city)
const CITIES: &[(&str, &str)] = &[
    ("75011", "Paris"),
    ("69002", "Lyon"),
    ("13001", "Marseille"),
    ("33000", "Bordeaux"),
    ("31000", "Toulouse"),
    ("59000", "Lille"),
    ("44000", "Nantes"),
];

/// Makes orders; one per call to [`next_order`](OrderGenerator::next_order).
#[derive(Debug)]
pub struct OrderGenerator {
    rng: StdRng,
    customer_count: u32,
}

impl OrderGenerator {
    /// A generator over `customer_count` customers, seeded from the OS.
    pub fn new(customer_count: u32) -> Self {
        Self::with_rng(customer_count, rand::make_rng())
    }

    /// A generator with a fixed seed, for reproducible tests.
    pub fn seeded(customer_count: u32, seed: u64) -> Self {
        Self::with_rng(customer_count, StdRng::seed_from_u64(seed))
    }

    fn with_rng(customer_count: u32, rng: StdRng) -> Self {
        OrderGenerator {
            rng,
            customer_count: customer_count.max(1),
        }
    }

    /// The next order, valid by construction (the test suite checks it against the contract).
    pub fn next_order(&mut self) -> Order {
        // Squaring a uniform draw skews towards low numbers: customer-1 orders far more often
        // than customer-300, as real regulars do.
        let draw: f64 = self.rng.random();
        let customer = 1 + (draw * draw * f64::from(self.customer_count)) as u32;
        let customer = customer.min(self.customer_count);
        let lines = self.rng.random_range(1..=4usize);
        let items: Vec<OrderItem> = MENU
            .sample(&mut self.rng, lines)
            .map(|(sku, name, price)| OrderItem {
                sku: (*sku).into(),
                name: (*name).into(),
                quantity: if self.rng.random_bool(0.1) {
                    self.rng.random_range(4..=10)
                } else {
                    self.rng.random_range(1..=3)
                },
                unit_price_cents: *price,
            })
            .collect();
        let total_cents = items
            .iter()
            .map(|item| item.quantity * item.unit_price_cents)
            .sum();
        Order {
            schema_version: SCHEMA_VERSION,
            // A version-4 id from the generator's own generator (ChaCha, seeded from the OS
            // unless a test fixes the seed) rather than `Uuid::new_v4`, which asks the kernel
            // for 16 random bytes with a system call per order.
            order_id: uuid::Builder::from_random_bytes(self.rng.random()).into_uuid(),
            customer_id: numbered("customer-", customer as usize, ""),
            created_at: Utc::now(),
            restaurant: Some(
                RESTAURANTS
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("Chez Luigi")
                    .into(),
            ),
            delivery_address: Some(address_of(customer)),
            items,
            total_cents,
            currency: "EUR".into(),
        }
    }
}

/// A customer lives at one address, so their orders agree with each other.
fn address_of(customer: u32) -> DeliveryAddress {
    let index = customer as usize;
    let (postal_code, city) = CITIES[index % CITIES.len()];
    DeliveryAddress {
        street: numbered("", 1 + index % 97, STREETS[index % STREETS.len()]),
        postal_code: (*postal_code).into(),
        city: (*city).into(),
    }
}

/// `{before}{number} {after}` (no space without `after`), written without `format!`'s
/// machinery: the generator makes two such strings per order.
fn numbered(before: &str, number: usize, after: &str) -> CompactString {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(number);
    let mut text = CompactString::with_capacity(before.len() + digits.len() + 1 + after.len());
    text.push_str(before);
    text.push_str(digits);
    if !after.is_empty() {
        text.push(' ');
        text.push_str(after);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn generated_orders_pass_the_contract_after_a_round_trip() {
        let mut generator = OrderGenerator::seeded(300, 7);
        for _ in 0..1000 {
            let order = generator.next_order();
            let decoded = Order::decode(Some(&order.to_json()), 64 * 1024).expect("valid");
            assert_eq!(decoded, order);
        }
    }

    /// What the producer writes takes the decoder's fast path: the plain-form scanner.
    #[test]
    fn generated_orders_are_in_the_plain_form() {
        let mut generator = OrderGenerator::seeded(300, 8);
        for _ in 0..1000 {
            let order = generator.next_order();
            let json = String::from_utf8(order.to_json()).expect("JSON is UTF-8");
            assert_eq!(
                crate::plain_form::scan(&json, Vec::new()).as_ref(),
                Some(&order),
                "{json}"
            );
        }
    }

    #[test]
    fn customers_are_skewed_and_stay_within_the_configured_count() {
        let mut generator = OrderGenerator::seeded(300, 11);
        let mut per_customer: HashMap<String, usize> = HashMap::new();
        for _ in 0..6000 {
            *per_customer
                .entry(generator.next_order().customer_id.to_string())
                .or_default() += 1;
        }
        let numbers: HashSet<u32> = per_customer
            .keys()
            .map(|id| id.trim_start_matches("customer-").parse().expect("number"))
            .collect();
        assert!(numbers.iter().all(|n| (1..=300).contains(n)));
        assert!(
            numbers.len() > 150,
            "a few hundred customers: {}",
            numbers.len()
        );
        let low = per_customer.get("customer-1").copied().unwrap_or(0);
        let high = per_customer.get("customer-290").copied().unwrap_or(0);
        assert!(low > high, "regulars order more: {low} vs {high}");
    }

    #[test]
    fn customer_ids_and_streets_read_as_before_the_generator_stopped_using_format() {
        assert_eq!(numbered("customer-", 42, ""), "customer-42");
        assert_eq!(numbered("", 7, "rue de la Paix"), "7 rue de la Paix");
        let order = OrderGenerator::seeded(300, 5).next_order();
        let number = order.customer_id.strip_prefix("customer-").expect("prefix");
        let customer: usize = number.parse().expect("a number");
        let address = order.delivery_address.expect("an address");
        assert_eq!(
            address.street,
            format!(
                "{} {}",
                1 + customer % 97,
                STREETS[customer % STREETS.len()]
            )
        );
    }

    #[test]
    fn order_ids_are_unique() {
        let mut generator = OrderGenerator::seeded(10, 3);
        let ids: HashSet<uuid::Uuid> = (0..1000).map(|_| generator.next_order().order_id).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids {
            assert_eq!(id.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }
}
