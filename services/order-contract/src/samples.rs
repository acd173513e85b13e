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
//!
//! The producer takes its orders as JSON ([`OrderGenerator::next_json`]): written from pieces
//! that the contract's own writer wrote once (each dish, street, city and restaurant), with the
//! order's numbers, id and moment between them. Building each order's strings and item list
//! only to write them out again cost the producer's sending thread about 0.4 us per order, a
//! sixth of its CPU (perf, 1,000,000-order runs). A test compares the two paths byte for byte
//! on the same draws.

use crate::{DeliveryAddress, Order, OrderItem, SCHEMA_VERSION, json_writer};
use chrono::{DateTime, Utc};
use compact_str::CompactString;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::sync::LazyLock;

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

/// Makes orders: one per call to [`next_order`](OrderGenerator::next_order), or written
/// straight to JSON by [`next_json`](OrderGenerator::next_json), the producer's path.
#[derive(Debug)]
pub struct OrderGenerator {
    rng: StdRng,
    customer_count: u32,
}

/// What [`OrderGenerator::next_json`] tells of the order it wrote: what the producer keys,
/// logs and counts it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedOrder {
    pub order_id: uuid::Uuid,
    pub customer_id: CompactString,
    /// The sum of the lines' quantities.
    pub item_count: i64,
    pub total_cents: i64,
}

/// The most lines an order has.
const MAX_LINES: usize = 4;

/// One order's random choices, drawn without allocating: [`Draw::order`] builds the [`Order`]
/// from them, and [`Draw::write_json`] writes that order's JSON without building it.
#[derive(Debug)]
struct Draw {
    order_id: uuid::Uuid,
    customer: u32,
    restaurant: usize,
    /// (index into [`MENU`], quantity); the first `line_count` are the order's.
    lines: [(usize, i64); MAX_LINES],
    line_count: usize,
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
        self.draw().order(Utc::now())
    }

    /// Writes the next order's JSON into `out` (cleared first): the bytes
    /// `next_order().write_json(out)` would write for the same draw, without building the
    /// [`Order`] (its strings, its item list) only to read it back. The producer's generator
    /// makes every order this way.
    pub fn next_json(&mut self, out: &mut Vec<u8>) -> GeneratedOrder {
        let draw = self.draw();
        out.clear();
        draw.write_json(&Utc::now(), out);
        draw.summary()
    }

    fn draw(&mut self) -> Draw {
        // Squaring a uniform draw skews towards low numbers: customer-1 orders far more often
        // than customer-300, as real regulars do.
        let draw: f64 = self.rng.random();
        let customer = 1 + (draw * draw * f64::from(self.customer_count)) as u32;
        let customer = customer.min(self.customer_count);
        let line_count = self.rng.random_range(1..=MAX_LINES);
        // Distinct dishes, in random order: the first steps of a Fisher-Yates shuffle.
        let mut menu: [usize; MENU.len()] = std::array::from_fn(|index| index);
        let mut lines = [(0, 0); MAX_LINES];
        for (at, line) in lines.iter_mut().enumerate().take(line_count) {
            menu.swap(at, self.rng.random_range(at..MENU.len()));
            let quantity = if self.rng.random_bool(0.1) {
                self.rng.random_range(4..=10)
            } else {
                self.rng.random_range(1..=3)
            };
            *line = (menu[at], quantity);
        }
        Draw {
            // A version-4 id from the generator's own generator (ChaCha, seeded from the OS
            // unless a test fixes the seed) rather than `Uuid::new_v4`, which asks the kernel
            // for 16 random bytes with a system call per order.
            order_id: uuid::Builder::from_random_bytes(self.rng.random()).into_uuid(),
            customer,
            restaurant: self.rng.random_range(0..RESTAURANTS.len()),
            lines,
            line_count,
        }
    }
}

impl Draw {
    fn lines(&self) -> &[(usize, i64)] {
        &self.lines[..self.line_count]
    }

    fn total_cents(&self) -> i64 {
        self.lines()
            .iter()
            .map(|&(dish, quantity)| quantity * MENU[dish].2)
            .sum()
    }

    fn customer_id(&self) -> CompactString {
        numbered("customer-", self.customer as usize, "")
    }

    fn order(&self, created_at: DateTime<Utc>) -> Order {
        Order {
            schema_version: SCHEMA_VERSION,
            order_id: self.order_id,
            customer_id: self.customer_id(),
            created_at,
            restaurant: Some(RESTAURANTS[self.restaurant].into()),
            delivery_address: Some(address_of(self.customer)),
            items: self
                .lines()
                .iter()
                .map(|&(dish, quantity)| {
                    let (sku, name, price) = MENU[dish];
                    OrderItem {
                        sku: sku.into(),
                        name: name.into(),
                        quantity,
                        unit_price_cents: price,
                    }
                })
                .collect(),
            total_cents: self.total_cents(),
            currency: CURRENCY.into(),
        }
    }

    fn summary(&self) -> GeneratedOrder {
        GeneratedOrder {
            order_id: self.order_id,
            customer_id: self.customer_id(),
            item_count: self.lines().iter().map(|&(_, quantity)| quantity).sum(),
            total_cents: self.total_cents(),
        }
    }

    /// [`Draw::order`]'s JSON, from pieces written once ([`Fragments`]) and the numbers and
    /// moment of this order: the fields in the contract's order, as [`Order::write_json`]
    /// writes them (`generated_json_is_what_the_contract_writer_writes` compares the two).
    fn write_json(&self, created_at: &DateTime<Utc>, out: &mut Vec<u8>) {
        let fragments = &*FRAGMENTS;
        out.extend_from_slice(&fragments.opening);
        let mut id = uuid::Uuid::encode_buffer();
        out.extend_from_slice(self.order_id.hyphenated().encode_lower(&mut id).as_bytes());
        out.extend_from_slice(b"\",\"customer_id\":\"customer-");
        out.extend_from_slice(itoa::Buffer::new().format(self.customer).as_bytes());
        out.extend_from_slice(b"\",\"created_at\":");
        json_writer::timestamp(out, created_at);
        out.extend_from_slice(&fragments.restaurants[self.restaurant]);
        let place = Place::of(self.customer);
        out.extend_from_slice(b",\"delivery_address\":{\"street\":\"");
        out.extend_from_slice(itoa::Buffer::new().format(place.street_number).as_bytes());
        out.extend_from_slice(&fragments.streets[place.street]);
        out.extend_from_slice(&fragments.cities[place.city]);
        for (at, &(dish, quantity)) in self.lines().iter().enumerate() {
            let (opening, closing) = &fragments.dishes[dish];
            out.extend_from_slice(&opening[usize::from(at == 0)..]);
            out.extend_from_slice(itoa::Buffer::new().format(quantity).as_bytes());
            out.extend_from_slice(closing);
        }
        out.extend_from_slice(b"],\"total_cents\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.total_cents()).as_bytes());
        out.extend_from_slice(&fragments.closing);
    }
}

/// The currency of every generated order.
pub const CURRENCY: &str = "EUR";

/// The parts of a generated order's JSON that come from the tables above, each written once by
/// the contract's own writer, so that any escaping is the writer's.
struct Fragments {
    /// `{"schema_version":1,"order_id":"`
    opening: Vec<u8>,
    /// `,"restaurant":"Chez Luigi"`, by [`RESTAURANTS`] index.
    restaurants: Vec<Vec<u8>>,
    /// ` rue de la Paix"` (after the street number), by [`STREETS`] index.
    streets: Vec<Vec<u8>>,
    /// `,"postal_code":"75011","city":"Paris"},"items":[`, by [`CITIES`] index.
    cities: Vec<Vec<u8>>,
    /// `,{"sku":"PIZ-MAR","name":"Pizza Margherita","quantity":` (the comma left out for the
    /// first line) and `,"unit_price_cents":950}`, by [`MENU`] index.
    dishes: Vec<(Vec<u8>, Vec<u8>)>,
    /// `,"currency":"EUR"}`
    closing: Vec<u8>,
}

static FRAGMENTS: LazyLock<Fragments> = LazyLock::new(|| {
    let string = |text: &str| {
        let mut out = Vec::new();
        json_writer::string(&mut out, text);
        out
    };
    let mut opening = b"{\"schema_version\":".to_vec();
    opening.extend_from_slice(itoa::Buffer::new().format(SCHEMA_VERSION).as_bytes());
    opening.extend_from_slice(b",\"order_id\":\"");
    Fragments {
        opening,
        restaurants: RESTAURANTS
            .iter()
            .map(|name| [b",\"restaurant\":".as_slice(), &string(name)].concat())
            .collect(),
        // JSON escapes character by character, so a string's escaped tail follows its
        // number as it is: the opening quote comes before the number.
        streets: STREETS
            .iter()
            .map(|street| {
                let quoted = string(&format!(" {street}"));
                quoted[1..].to_vec()
            })
            .collect(),
        cities: CITIES
            .iter()
            .map(|(postal_code, city)| {
                [
                    b",\"postal_code\":".as_slice(),
                    &string(postal_code),
                    b",\"city\":",
                    &string(city),
                    b"},\"items\":[",
                ]
                .concat()
            })
            .collect(),
        dishes: MENU
            .iter()
            .map(|(sku, name, price)| {
                let opening = [
                    b",{\"sku\":".as_slice(),
                    &string(sku),
                    b",\"name\":",
                    &string(name),
                    b",\"quantity\":",
                ]
                .concat();
                let closing = [
                    b",\"unit_price_cents\":".as_slice(),
                    itoa::Buffer::new().format(*price).as_bytes(),
                    b"}",
                ]
                .concat();
                (opening, closing)
            })
            .collect(),
        closing: [b",\"currency\":".as_slice(), &string(CURRENCY), b"}"].concat(),
    }
});

/// A customer lives at one address, so their orders agree with each other.
fn address_of(customer: u32) -> DeliveryAddress {
    let place = Place::of(customer);
    let (postal_code, city) = CITIES[place.city];
    DeliveryAddress {
        street: numbered("", place.street_number, STREETS[place.street]),
        postal_code: (*postal_code).into(),
        city: (*city).into(),
    }
}

/// Where a customer lives, as indices into [`STREETS`] and [`CITIES`]: the one rule that both
/// [`address_of`] and the JSON path ([`Draw::write_json`]) follow.
struct Place {
    street_number: usize,
    street: usize,
    city: usize,
}

impl Place {
    fn of(customer: u32) -> Place {
        let index = customer as usize;
        Place {
            street_number: 1 + index % 97,
            street: index % STREETS.len(),
            city: index % CITIES.len(),
        }
    }
}

/// `{before}{number} {after}` (no space without `after`), written without `format!`'s
/// machinery: [`OrderGenerator::next_order`] makes two such strings per order.
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

    /// The producer's path writes, byte for byte, what the contract's writer writes for the
    /// order the same draw builds: over every dish, street, city and restaurant, customer
    /// numbers from 1 to millions, and moments with no, milli, micro and nano fractions.
    #[test]
    fn generated_json_is_what_the_contract_writer_writes() {
        let moments = [
            Utc::now(),
            DateTime::from_timestamp(1_700_000_000, 0).expect("a moment"),
            DateTime::from_timestamp(1_700_000_000, 120_000_000).expect("a moment"),
            DateTime::from_timestamp(1_700_000_000, 123_456_000).expect("a moment"),
            DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("a moment"),
        ];
        let (mut expected, mut written) = (Vec::new(), Vec::new());
        for (seed, customers) in [(1, 1), (2, 300), (3, 100_000), (4, u32::MAX)] {
            let mut generator = OrderGenerator::seeded(customers, seed);
            for at in 0..2000 {
                let draw = generator.draw();
                let created_at = moments[at % moments.len()];
                let order = draw.order(created_at);
                order.write_json(&mut expected);
                written.clear();
                draw.write_json(&created_at, &mut written);
                assert_eq!(
                    String::from_utf8_lossy(&written),
                    String::from_utf8_lossy(&expected)
                );
                let summary = draw.summary();
                assert_eq!(summary.order_id, order.order_id);
                assert_eq!(summary.customer_id, order.customer_id);
                assert_eq!(summary.total_cents, order.total_cents);
                assert_eq!(
                    summary.item_count,
                    order.items.iter().map(|item| item.quantity).sum::<i64>()
                );
            }
        }
    }

    /// `next_json` clears what the buffer held and writes one order the contract accepts.
    #[test]
    fn next_json_writes_one_valid_order_into_a_cleared_buffer() {
        let mut generator = OrderGenerator::seeded(300, 9);
        let mut buffer = b"left over".to_vec();
        for _ in 0..100 {
            let generated = generator.next_json(&mut buffer);
            let order = Order::decode(Some(&buffer), 64 * 1024).expect("valid");
            assert_eq!(order.order_id, generated.order_id);
            assert_eq!(order.customer_id, generated.customer_id);
            assert_eq!(order.total_cents, generated.total_cents);
        }
    }

    /// Every dish can be drawn, on any line, and no order repeats a dish.
    #[test]
    fn lines_are_distinct_dishes_and_every_dish_is_drawn() {
        let mut generator = OrderGenerator::seeded(300, 10);
        let mut drawn = HashSet::new();
        for _ in 0..2000 {
            let order = generator.next_order();
            let skus: HashSet<&str> = order.items.iter().map(|item| item.sku.as_str()).collect();
            assert_eq!(skus.len(), order.items.len(), "{:?}", order.items);
            assert!((1..=MAX_LINES).contains(&order.items.len()));
            drawn.extend(order.items.iter().map(|item| item.sku.to_string()));
        }
        assert_eq!(drawn.len(), MENU.len());
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
