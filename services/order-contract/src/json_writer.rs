//! [`Order::write_json`]'s writer: an order's compact JSON, written field by field.
//!
//! Why it exists: the producer wrote every order it generated on its one producing thread,
//! and serde_json took about 1.35 us per order there (chrono's RFC 3339 form goes through
//! `fmt`, and strings are escaped a byte at a time): a third of that thread's time, which sets
//! the producer's rate. Writing the same fields straight into the buffer takes a fraction of it.
//! Since 344afb8 the producer's generator goes further (`samples::OrderGenerator::next_json`):
//! it writes its pieces with [`string`] once, and each order's moment with [`timestamp`]; this
//! writer's [`write`] serves [`Order::write_json`] (generated orders in tests and benchmarks,
//! and the generator's own byte-for-byte test).
//!
//! Why it cannot change a byte: it writes exactly what `serde_json::to_writer` writes for
//! [`Order`]'s derived `Serialize` (the fields in declaration order, the absent optional ones
//! left out, the id in its hyphenated lowercase form, `created_at` as chrono writes it: RFC 3339
//! with the shortest of no, 3, 6 or 9 fraction digits that is exact, and `Z`), and it leaves
//! to serde_json every part it does not write plainly: a string holding a character JSON
//! escapes (a quote, a backslash or a control character), and a `created_at` outside the years
//! 0 to 9999 (chrono writes those with a sign). `the_writer_writes_what_serde_json_writes`
//! compares the two on orders with every field pushed to its edges.

use crate::plain_form::needs_no_escape;
use crate::{DeliveryAddress, Order, OrderItem};
use chrono::{DateTime, Datelike, Timelike, Utc};

/// Appends `order`'s compact JSON to `out`. Every struct is taken apart field by field, so
/// that a field added to the contract does not compile until it is written here too.
pub(crate) fn write(order: &Order, out: &mut Vec<u8>) {
    let Order {
        schema_version,
        order_id,
        customer_id,
        created_at,
        restaurant,
        delivery_address,
        items,
        total_cents,
        currency,
    } = order;
    out.extend_from_slice(b"{\"schema_version\":");
    integer(out, *schema_version);
    out.extend_from_slice(b",\"order_id\":\"");
    let mut id = uuid::Uuid::encode_buffer();
    out.extend_from_slice(order_id.hyphenated().encode_lower(&mut id).as_bytes());
    out.extend_from_slice(b"\",\"customer_id\":");
    string(out, customer_id);
    out.extend_from_slice(b",\"created_at\":");
    timestamp(out, created_at);
    if let Some(restaurant) = restaurant {
        out.extend_from_slice(b",\"restaurant\":");
        string(out, restaurant);
    }
    if let Some(address) = delivery_address {
        out.extend_from_slice(b",\"delivery_address\":");
        write_address(out, address);
    }
    out.extend_from_slice(b",\"items\":[");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_item(out, item);
    }
    out.extend_from_slice(b"],\"total_cents\":");
    integer(out, *total_cents);
    out.extend_from_slice(b",\"currency\":");
    string(out, currency);
    out.push(b'}');
}

fn write_address(out: &mut Vec<u8>, address: &DeliveryAddress) {
    let DeliveryAddress {
        street,
        postal_code,
        city,
    } = address;
    out.extend_from_slice(b"{\"street\":");
    string(out, street);
    out.extend_from_slice(b",\"postal_code\":");
    string(out, postal_code);
    out.extend_from_slice(b",\"city\":");
    string(out, city);
    out.push(b'}');
}

fn write_item(out: &mut Vec<u8>, item: &OrderItem) {
    let OrderItem {
        sku,
        name,
        quantity,
        unit_price_cents,
    } = item;
    out.extend_from_slice(b"{\"sku\":");
    string(out, sku);
    out.extend_from_slice(b",\"name\":");
    string(out, name);
    out.extend_from_slice(b",\"quantity\":");
    integer(out, *quantity);
    out.extend_from_slice(b",\"unit_price_cents\":");
    integer(out, *unit_price_cents);
    out.push(b'}');
}

/// An integer as serde_json writes it (through `itoa` too).
fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A quoted string: as it is when JSON needs no escape in it, otherwise escaped by serde_json.
pub(crate) fn string(out: &mut Vec<u8>, text: &str) {
    if needs_no_escape(text.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serialized_by_serde_json(out, text);
    }
}

/// chrono's RFC 3339 form of `at`, quoted (see the module header).
pub(crate) fn timestamp(out: &mut Vec<u8>, at: &DateTime<Utc>) {
    let moment = at.naive_utc();
    let year = moment.year();
    if !(0..=9999).contains(&year) {
        serialized_by_serde_json(out, at);
        return;
    }
    let (mut second, mut nanos) = (moment.second(), moment.nanosecond());
    // A leap second: chrono keeps it as nanoseconds past 59 and writes second 60.
    if nanos >= 1_000_000_000 {
        second += 1;
        nanos -= 1_000_000_000;
    }
    out.push(b'"');
    digits(out, year as u32, 4);
    out.push(b'-');
    digits(out, moment.month(), 2);
    out.push(b'-');
    digits(out, moment.day(), 2);
    out.push(b'T');
    digits(out, moment.hour(), 2);
    out.push(b':');
    digits(out, moment.minute(), 2);
    out.push(b':');
    digits(out, second, 2);
    if nanos != 0 {
        out.push(b'.');
        if nanos % 1_000_000 == 0 {
            digits(out, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            digits(out, nanos / 1_000, 6);
        } else {
            digits(out, nanos, 9);
        }
    }
    out.extend_from_slice(b"Z\"");
}

/// `value`'s last `width` decimal digits, zero-padded.
fn digits(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn serialized_by_serde_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    // A string or a date written into memory cannot fail.
    serde_json::to_writer(out, value)
        .unwrap_or_else(|_| unreachable!("a string or a date always serializes"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// Text of up to 30 characters (around compact_str's 24 inline bytes), mostly plain, with
    /// now and then a character JSON escapes, DEL, or one beyond ASCII.
    fn text(rng: &mut StdRng) -> compact_str::CompactString {
        const PLAIN: &[char] = &[
            'a',
            'Z',
            '7',
            ' ',
            '-',
            '/',
            '\u{7f}',
            'é',
            '東',
            '\u{1F95E}',
        ];
        const ESCAPED: &[char] = &['"', '\\', '\n', '\t', '\u{0}', '\u{1f}', '\u{8}', '\u{c}'];
        let length = rng.random_range(0..=30);
        let escapes = rng.random_bool(0.2);
        (0..length)
            .map(|_| {
                if escapes && rng.random_bool(0.1) {
                    ESCAPED[rng.random_range(0..ESCAPED.len())]
                } else {
                    PLAIN[rng.random_range(0..PLAIN.len())]
                }
            })
            .collect()
    }

    fn integer(rng: &mut StdRng) -> i64 {
        const EDGES: &[i64] = &[0, 1, -1, 9, 10, 99, -100, i64::MIN, i64::MAX, 1 << 53];
        if rng.random_bool(0.3) {
            EDGES[rng.random_range(0..EDGES.len())]
        } else {
            rng.random_range(-1_000_000..=1_000_000_000_000)
        }
    }

    /// A moment in years -300 to 10,300 (so both sides of 0 and 9999), with no fraction, or one
    /// of milli-, micro- or nanosecond precision, or on a leap second.
    fn moment(rng: &mut StdRng) -> DateTime<Utc> {
        let year = match rng.random_range(0..4) {
            0 => [-1, 0, 9999, 10000][rng.random_range(0..4)],
            1 => rng.random_range(-300..=10_300),
            _ => rng.random_range(1970..=2100),
        };
        let date =
            NaiveDate::from_ymd_opt(year, rng.random_range(1..=12), rng.random_range(1..=28))
                .expect("a valid date");
        // Each fraction form, within a second and within a leap second (from its exact start).
        let fraction = match rng.random_range(0..4) {
            0 => 0,
            1 => rng.random_range(1..1000) * 1_000_000,
            2 => rng.random_range(1..1_000_000) * 1_000,
            _ => rng.random_range(1..1_000_000_000),
        };
        let nanos = if rng.random_bool(0.2) {
            1_000_000_000 + fraction
        } else {
            fraction
        };
        let second = if nanos >= 1_000_000_000 {
            59
        } else {
            rng.random_range(0..60)
        };
        let time = date
            .and_hms_nano_opt(
                rng.random_range(0..24),
                rng.random_range(0..60),
                second,
                nanos,
            )
            .expect("a valid time");
        Utc.from_utc_datetime(&time)
    }

    fn order(rng: &mut StdRng) -> Order {
        Order {
            schema_version: if rng.random_bool(0.8) {
                1
            } else {
                rng.random()
            },
            order_id: uuid::Uuid::from_bytes(rng.random()),
            customer_id: text(rng),
            created_at: moment(rng),
            restaurant: rng.random_bool(0.7).then(|| text(rng)),
            delivery_address: rng.random_bool(0.7).then(|| DeliveryAddress {
                street: text(rng),
                postal_code: text(rng),
                city: text(rng),
            }),
            items: (0..rng.random_range(0..=4))
                .map(|_| OrderItem {
                    sku: text(rng),
                    name: text(rng),
                    quantity: integer(rng),
                    unit_price_cents: integer(rng),
                })
                .collect(),
            total_cents: integer(rng),
            currency: text(rng),
        }
    }

    /// Every field at its edges (escapes, characters beyond ASCII, extreme integers, years
    /// outside 0-9999, every fraction form, leap seconds, absent options): the writer's bytes
    /// are serde_json's. Both of its paths are taken many times: the plain one, and serde_json's
    /// for escaped strings and signed years.
    #[test]
    fn the_writer_writes_what_serde_json_writes() {
        let seed = 20261207;
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut escaped, mut signed_years, mut leap_seconds) = (0, 0, 0);
        let mut written = Vec::new();
        for round in 0..20_000 {
            let order = order(&mut rng);
            written.clear();
            write(&order, &mut written);
            let expected = serde_json::to_vec(&order).expect("serializes");
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&expected),
                "seed {seed}, round {round}: {order:?}"
            );
            escaped += usize::from(expected.contains(&b'\\'));
            signed_years += usize::from(!(0..=9999).contains(&order.created_at.year()));
            leap_seconds += usize::from(order.created_at.nanosecond() >= 1_000_000_000);
        }
        assert!(
            escaped > 2_000 && signed_years > 1_000 && leap_seconds > 2_000,
            "{escaped} with escapes, {signed_years} signed years, {leap_seconds} leap seconds"
        );
    }
}
