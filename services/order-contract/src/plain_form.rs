//! The decoder's first path: a scanner for orders written plainly, straight from the bytes into
//! an [`Order`], for the tracker's hot loop.
//!
//! Why it exists: parsing with serde_json (validating UTF-8 first, then visiting every field)
//! was about three quarters of the tracker's per-message work and a third of its CPU, and the
//! tracker is the service that must keep up with the Kafka client. An order is a small, fixed
//! shape; reading it by hand where its form is plain costs less: decoding (with validation)
//! took 0.68 us per order against 0.80 in the `decode` benchmark of `order-tracker`, and the
//! tracker about 7% less CPU catching up 1,000,000 orders.
//!
//! Why it cannot change an answer: the scanner may refuse anything, and when it does
//! ([`scan`] answers `None`) the serde paths decide exactly as before. It accepts only a form
//! whose reading is unambiguous and that serde_json reads the same way:
//! - the contract's fields, each at most once, in any order, and no other key (an unknown or
//!   repeated key is the serde paths' to judge);
//! - strings without any backslash (no escapes) or control character (serde_json refuses those
//!   raw); the text is valid UTF-8 already ([`Order::decode`] checks that first);
//! - numbers as non-negative integers of at most 18 digits without a leading zero (no sign,
//!   fraction or exponent: each has edge cases, such as `-0`, that serde_json reads otherwise);
//! - `null` only for the two optional fields;
//! - JSON's four whitespace characters between tokens, and nothing after the closing brace.
//!
//! `order_id` and `created_at` go through the same checks as on the serde paths
//! ([`crate::wire_forms`]). What our producer and most JSON libraries write is in this form;
//! escaped text (Python's `json.dumps` escapes non-ASCII by default) goes the serde way.
//! `plain_form_and_serde_agree_on_every_mutation` (in `lib.rs`) feeds 100,000 mutated orders
//! to [`Order::decode`] and to the serde paths alone and compares every answer, and checks
//! every order the scanner returns against serde_json's parse of the same text.

use crate::wire_forms::{parse_hyphenated_uuid, parse_rfc3339};
use crate::{DeliveryAddress, Order, OrderItem, SCHEMA_VERSION};
use compact_str::CompactString;

/// The order in `text`, if it is written in the plain form; `None` otherwise (which says
/// nothing about whether it is valid). Its items go into `items` (empty).
pub(crate) fn scan(text: &str, items: Vec<OrderItem>) -> Option<Order> {
    let bytes = text.as_bytes();
    let mut scanner = Scanner {
        text,
        bytes,
        at: 0,
        items: Some(items),
    };
    let order = scanner.order()?;
    scanner.skip_whitespace();
    (scanner.at == bytes.len()).then_some(order)
}

/// A field read once: `None` (give up) if it was already read.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// The keys an order, its address and its items may have, in the order `Order`'s serialization
/// writes them, each with the field it names: the scanner matches a key's bytes once and then
/// dispatches on the field, not on the text again.
const ORDER_KEYS: &[(&str, OrderField)] = &[
    ("schema_version", OrderField::SchemaVersion),
    ("order_id", OrderField::OrderId),
    ("customer_id", OrderField::CustomerId),
    ("created_at", OrderField::CreatedAt),
    ("restaurant", OrderField::Restaurant),
    ("delivery_address", OrderField::DeliveryAddress),
    ("items", OrderField::Items),
    ("total_cents", OrderField::TotalCents),
    ("currency", OrderField::Currency),
];
const ADDRESS_KEYS: &[(&str, AddressField)] = &[
    ("street", AddressField::Street),
    ("postal_code", AddressField::PostalCode),
    ("city", AddressField::City),
];
const ITEM_KEYS: &[(&str, ItemField)] = &[
    ("sku", ItemField::Sku),
    ("name", ItemField::Name),
    ("quantity", ItemField::Quantity),
    ("unit_price_cents", ItemField::UnitPriceCents),
];

#[derive(Clone, Copy)]
enum OrderField {
    SchemaVersion,
    OrderId,
    CustomerId,
    CreatedAt,
    Restaurant,
    DeliveryAddress,
    Items,
    TotalCents,
    Currency,
}

#[derive(Clone, Copy)]
enum AddressField {
    Street,
    PostalCode,
    City,
}

#[derive(Clone, Copy)]
enum ItemField {
    Sku,
    Name,
    Quantity,
    UnitPriceCents,
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// The list the order's items go into (taken by the first `items` array read).
    items: Option<Vec<OrderItem>>,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The bytes of `word` below `limit` (at most 128), as the high bit of each: the "has less"
/// test of Bit Twiddling Hacks. Exact for the lowest byte flagged (a borrow can only flag bytes
/// above a true one), which is all [`string_end`] needs; a byte of 128 or more is never flagged.
const fn bytes_below(word: u64, limit: u8) -> u64 {
    word.wrapping_sub(ONES * limit as u64) & !word & HIGH_BITS
}

/// The bytes of `word` equal to `byte`, flagged as [`bytes_below`] flags them.
const fn bytes_equal(word: u64, byte: u8) -> u64 {
    bytes_below(word ^ (ONES * byte as u64), 1)
}

/// Where in the eight bytes of `word` (little-endian) the first quote, backslash or control
/// character is, if any: each of the three masks is exact for its lowest byte, so their union
/// is exact for its lowest byte too.
const fn string_end(word: u64) -> Option<u32> {
    let flagged = bytes_equal(word, b'"') | bytes_equal(word, b'\\') | bytes_below(word, 0x20);
    if flagged == 0 {
        None
    } else {
        Some(flagged.trailing_zeros() / 8)
    }
}

/// A byte a plain string cannot hold: a quote (its end), a backslash (an escape) or a control
/// character (JSON escapes those).
const fn ends_plain_text(byte: u8) -> bool {
    matches!(byte, b'"' | b'\\' | 0x00..=0x1f)
}

/// Whether `text` holds no quote, backslash or control character: the plain form of a string,
/// which JSON writes as it is ([`crate::json_writer`]) and the scanner reads as it is. Eight
/// bytes at a time, the last word overlapping the one before it; byte by byte below eight.
pub(crate) fn needs_no_escape(text: &[u8]) -> bool {
    let plain = |at: usize| {
        text.get(at..at + 8)
            .and_then(|word| word.try_into().ok())
            .is_some_and(|word| string_end(u64::from_le_bytes(word)).is_none())
    };
    if text.len() < 8 {
        return !text.iter().any(|&byte| ends_plain_text(byte));
    }
    (0..text.len() / 8).all(|word| plain(word * 8)) && plain(text.len() - 8)
}

/// `a == b` for the short keys of an order, compared a word at a time (the last word overlaps
/// the one before) rather than through a call to `memcmp` for each key tried.
fn same_short_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |bytes: &[u8], at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|word| word.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let half = |bytes: &[u8], at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|word| word.try_into().ok())
            .map(u32::from_le_bytes)
    };
    match n {
        0..4 => a == b,
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if word(a, at) != word(b, at) {
                    return false;
                }
                at += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        }
    }
}

impl<'a> Scanner<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    /// Consumes `byte`, the next one that is not whitespace.
    fn eat(&mut self, byte: u8) -> Option<()> {
        if self.peek()? != byte {
            return None;
        }
        self.at += 1;
        Some(())
    }

    /// After a member of an object or array: `true` on a comma, `false` on `closing`.
    fn more(&mut self, closing: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            byte if byte == closing => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A string without escapes or control characters.
    fn text(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        // Eight bytes at a time up to the first that can end the string; byte by byte only in
        // the last seven bytes of the value.
        loop {
            match self.bytes.get(self.at..self.at + 8) {
                Some(word) => match string_end(u64::from_le_bytes(word.try_into().ok()?)) {
                    None => self.at += 8,
                    Some(index) => {
                        self.at += index as usize;
                        break;
                    }
                },
                None => {
                    while !ends_plain_text(*self.bytes.get(self.at)?) {
                        self.at += 1;
                    }
                    break;
                }
            }
        }
        // A backslash or a control character: not the plain form.
        if self.bytes.get(self.at)? != &b'"' {
            return None;
        }
        // Between two ASCII quotes of valid UTF-8: always a whole string.
        let text = self.text.get(start..self.at)?;
        self.at += 1;
        Some(text)
    }

    /// The field named by the next member's key, after its colon; `None` for a key not in
    /// `keys` (the serde paths judge those). Keys written compactly and in their order in
    /// `keys` (as our producer writes them) are recognised without scanning for their end:
    /// `next` is where in `keys` to look first, after the last key recognised so (optional
    /// fields may be absent). Any other key is scanned as a string and looked up.
    fn key<F: Copy>(&mut self, keys: &[(&'static str, F)], next: &mut usize) -> Option<F> {
        let rest = &self.bytes[self.at..];
        let written_compactly = |key: &str| {
            let end = key.len() + 1;
            rest.get(end..=end + 1) == Some(b"\":")
                && rest.first() == Some(&b'"')
                && same_short_bytes(&rest[1..end], key.as_bytes())
        };
        if let Some(index) = (*next..keys.len()).find(|&index| written_compactly(keys[index].0)) {
            *next = index + 1;
            self.at += keys[index].0.len() + 3;
            return Some(keys[index].1);
        }
        let key = self.text()?;
        self.eat(b':')?;
        keys.iter()
            .find(|(name, _)| *name == key)
            .map(|&(_, field)| field)
    }

    /// A non-negative integer of at most 18 digits (so it fits an `i64`), no leading zero.
    fn natural(&mut self) -> Option<i64> {
        self.skip_whitespace();
        let start = self.at;
        while let Some(b'0'..=b'9') = self.bytes.get(self.at) {
            self.at += 1;
        }
        let digits = &self.bytes[start..self.at];
        if digits.is_empty() || digits.len() > 18 || (digits[0] == b'0' && digits.len() > 1) {
            return None;
        }
        // Whatever follows must be a delimiter, which the caller checks: a `.` or an `e` is not.
        Some(
            digits
                .iter()
                .fold(0, |value, digit| value * 10 + i64::from(digit - b'0')),
        )
    }

    /// `null` (`Some(None)`), or what `read` reads.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            if self.bytes.get(self.at..self.at + 4)? != b"null" {
                return None;
            }
            self.at += 4;
            return Some(None);
        }
        read(self).map(Some)
    }

    /// An object whose keys are among `keys`: `member` reads each member's value, given the
    /// field its key names.
    fn object<F: Copy>(
        &mut self,
        keys: &[(&'static str, F)],
        mut member: impl FnMut(&mut Self, F) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        let mut next = 0;
        loop {
            let key = self.key(keys, &mut next)?;
            member(self, key)?;
            if !self.more(b'}')? {
                return Some(());
            }
        }
    }

    fn order(&mut self) -> Option<Order> {
        let mut version = None;
        let mut order_id = None;
        let mut customer_id = None;
        let mut created_at = None;
        let mut restaurant = None;
        let mut delivery_address = None;
        let mut items = None;
        let mut total_cents = None;
        let mut currency = None;
        self.object(ORDER_KEYS, |scanner, key| {
            match key {
                OrderField::SchemaVersion => once(&mut version, scanner.natural()?)?,
                OrderField::OrderId => {
                    once(&mut order_id, parse_hyphenated_uuid(scanner.text()?)?)?
                }
                OrderField::CustomerId => once(&mut customer_id, scanner.text()?)?,
                OrderField::CreatedAt => once(&mut created_at, parse_rfc3339(scanner.text()?)?)?,
                OrderField::Restaurant => once(&mut restaurant, scanner.nullable(Self::text)?)?,
                OrderField::DeliveryAddress => {
                    once(&mut delivery_address, scanner.nullable(Self::address)?)?
                }
                OrderField::Items => once(&mut items, scanner.items()?)?,
                OrderField::TotalCents => once(&mut total_cents, scanner.natural()?)?,
                OrderField::Currency => once(&mut currency, scanner.text()?)?,
            }
            Some(())
        })?;
        if version? != i64::from(SCHEMA_VERSION) {
            return None;
        }
        Some(Order {
            schema_version: SCHEMA_VERSION,
            order_id: order_id?,
            customer_id: CompactString::new(customer_id?),
            created_at: created_at?,
            restaurant: restaurant.flatten().map(CompactString::new),
            delivery_address: delivery_address.flatten(),
            items: items?,
            total_cents: total_cents?,
            currency: CompactString::new(currency?),
        })
    }

    fn address(&mut self) -> Option<DeliveryAddress> {
        let mut street = None;
        let mut postal_code = None;
        let mut city = None;
        self.object(ADDRESS_KEYS, |scanner, key| {
            match key {
                AddressField::Street => once(&mut street, scanner.text()?)?,
                AddressField::PostalCode => once(&mut postal_code, scanner.text()?)?,
                AddressField::City => once(&mut city, scanner.text()?)?,
            }
            Some(())
        })?;
        Some(DeliveryAddress {
            street: CompactString::new(street?),
            postal_code: CompactString::new(postal_code?),
            city: CompactString::new(city?),
        })
    }

    fn items(&mut self) -> Option<Vec<OrderItem>> {
        let mut items = self.items.take().unwrap_or_default();
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Some(items);
        }
        loop {
            items.push(self.item()?);
            if !self.more(b']')? {
                return Some(items);
            }
        }
    }

    fn item(&mut self) -> Option<OrderItem> {
        let mut sku = None;
        let mut name = None;
        let mut quantity = None;
        let mut unit_price_cents = None;
        self.object(ITEM_KEYS, |scanner, key| {
            match key {
                ItemField::Sku => once(&mut sku, scanner.text()?)?,
                ItemField::Name => once(&mut name, scanner.text()?)?,
                ItemField::Quantity => once(&mut quantity, scanner.natural()?)?,
                ItemField::UnitPriceCents => once(&mut unit_price_cents, scanner.natural()?)?,
            }
            Some(())
        })?;
        Some(OrderItem {
            sku: CompactString::new(sku?),
            name: CompactString::new(name?),
            quantity: quantity?,
            unit_price_cents: unit_price_cents?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`string_end`] must answer, one byte at a time.
    fn first_string_end(bytes: [u8; 8]) -> Option<u32> {
        bytes
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .map(|at| at as u32)
    }

    #[test]
    fn same_short_bytes_is_equality_for_every_length_and_every_differing_byte() {
        let text = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for n in 0..=24 {
            let a = &text[..n];
            assert!(same_short_bytes(a, a));
            assert!(!same_short_bytes(a, &text[..n + 1]), "lengths differ");
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_short_bytes(a, &b), "{n} bytes, byte {at} differs");
            }
        }
    }

    /// Every byte value at every position of texts up to 17 bytes long (two whole words and
    /// every remainder), among plain bytes: `needs_no_escape` is the byte-by-byte rule.
    #[test]
    fn needs_no_escape_is_the_byte_by_byte_rule_for_every_byte_at_every_position() {
        for length in 1..=17 {
            for at in 0..length {
                for byte in 0..=255u8 {
                    let mut text = vec![b'a'; length];
                    text[at] = byte;
                    // The rule as JSON states it, not the function the scanner uses.
                    let by_byte = !(byte == b'"' || byte == b'\\' || byte < 0x20);
                    assert_eq!(
                        needs_no_escape(&text),
                        by_byte,
                        "byte {byte:#04x} at {at} of {length}"
                    );
                }
            }
        }
        assert!(needs_no_escape(b""));
    }

    #[test]
    fn string_end_finds_the_first_quote_backslash_or_control_character_in_a_word() {
        // Every byte value at every position, among plain ASCII, UTF-8 continuation bytes and
        // other special bytes after it (where a borrow could flag the wrong byte).
        let fillers = [
            b'a', 0xc3, 0xa9, 0x80, 0xff, b'"', 0x00, 0x1f, b'\\', 0x20, b'!',
        ];
        for byte in 0..=u8::MAX {
            for at in 0..8 {
                for filler in fillers {
                    let mut bytes = [b'x'; 8];
                    bytes[at] = byte;
                    for later in bytes.iter_mut().skip(at + 1) {
                        *later = filler;
                    }
                    for earlier in bytes.iter_mut().take(at) {
                        *earlier = if filler >= 0x80 { filler } else { b'y' };
                    }
                    assert_eq!(
                        string_end(u64::from_le_bytes(bytes)),
                        first_string_end(bytes),
                        "{bytes:02x?}"
                    );
                }
            }
        }
    }
}
