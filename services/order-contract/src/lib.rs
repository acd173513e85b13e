//! The order wire contract: what an order on the `orders` topic looks like, and the single place
//! that decides whether a message is a valid order.
//!
//! Producer and tracker both depend on this crate so they cannot drift apart; other clients use
//! the JSON Schema in `schema/order.v1.schema.json` (exported here as [`ORDER_SCHEMA_JSON`]).
//!
//! Decoding never panics and never guesses: every way a message can fail is one
//! [`RejectReason`] with a stable machine-readable [`code`](RejectReason::code), which the tracker
//! writes into the dead-letter headers. The checks run cheapest first (size, UTF-8, then one
//! scan or parse) so that a hostile or foreign message costs little before it is rejected.

use chrono::{DateTime, Utc};
pub use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

mod json_writer;
mod known_fields;
mod plain_form;
#[cfg(feature = "samples")]
pub mod samples;
mod wire_forms;

/// The only `schema_version` this build understands.
pub const SCHEMA_VERSION: u32 = 1;

/// [`SCHEMA_VERSION`] as text, for the `schema-version` header (a test checks they agree).
pub const SCHEMA_VERSION_TEXT: &str = "1";

/// The headers every order message carries (README, "The order contract"): the value's media
/// type, [`CONTENT_TYPE`], and its schema version, [`SCHEMA_VERSION_TEXT`].
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// See [`CONTENT_TYPE_HEADER`].
pub const SCHEMA_VERSION_HEADER: &str = "schema-version";
/// The value of the [`CONTENT_TYPE_HEADER`] header.
pub const CONTENT_TYPE: &str = "application/json";

/// The JSON Schema of an order, for validation by tests and other clients.
pub const ORDER_SCHEMA_JSON: &str = include_str!("../schema/order.v1.schema.json");

/// One food-delivery order, exactly as serialized on the wire.
///
/// Money is in integer cents (`unit_price_cents`, `total_cents`): floating point cannot hold
/// 0.10 exactly, and sums of prices must match to the cent. Quantities and prices are signed
/// on the wire so that a negative value is reported as what it is rather than as a type error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub schema_version: u32,
    #[serde(deserialize_with = "wire_forms::hyphenated_uuid")]
    pub order_id: Uuid,
    pub customer_id: CompactString,
    #[serde(deserialize_with = "wire_forms::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Optional since contract revision 1.1: an order placed through a system that has no
    /// notion of restaurants carries none. Absent and `null` both mean "none"; when present it
    /// is non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restaurant: Option<CompactString>,
    /// Optional since contract revision 1.1: a pickup order has no address. Absent and `null`
    /// both mean "none".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_address: Option<DeliveryAddress>,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub currency: CompactString,
}

/// Where the order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAddress {
    pub street: CompactString,
    pub postal_code: CompactString,
    pub city: CompactString,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub sku: CompactString,
    pub name: CompactString,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

impl OrderItem {
    /// `quantity * unit_price_cents`, or `None` on overflow.
    pub fn line_total_cents(&self) -> Option<i64> {
        self.quantity.checked_mul(self.unit_price_cents)
    }
}

impl Order {
    /// The Kafka message key: the customer, so one customer's orders keep their order on one
    /// partition.
    pub fn key(&self) -> &str {
        &self.customer_id
    }

    /// The sum of the line totals, or `None` on overflow.
    pub fn items_total_cents(&self) -> Option<i64> {
        self.items
            .iter()
            .try_fold(0i64, |sum, item| sum.checked_add(item.line_total_cents()?))
    }

    /// The wire form: compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(640);
        self.write_json(&mut buffer);
        buffer
    }

    /// A one-line human summary, naming only what the order carries:
    /// `2 x Pizza Pepperoni, 1 x Tiramisu from Chez Luigi for customer-42, 25.00 EUR`, and
    /// ` (pickup)` at the end of an order without a delivery address.
    pub fn summary(&self) -> String {
        self.summarised().to_string()
    }

    /// The [`summary`](Self::summary), written straight into a formatter (a log line) without
    /// building a string first.
    pub fn summarised(&self) -> Summary<'_> {
        Summary(self)
    }

    /// Decodes and validates a message value. See [`RejectReason`] for what is refused.
    ///
    /// An order written plainly (no escapes, no signs or fractions: what our producer writes)
    /// is read by a scanner straight into the order ([`plain_form`] says why that gives the same
    /// answer). Otherwise a message with exactly the contract's fields is parsed once by
    /// serde_json, straight into the order ([`known_fields`] says why that gives the same
    /// answer), and anything else (an unknown field, another version, any error) is judged by
    /// [`decode_carefully`], which gives every [`RejectReason`].
    ///
    /// A consumer decoding many orders can reuse their item lists with a [`Decoder`].
    pub fn decode(payload: Option<&[u8]>, max_bytes: usize) -> Result<Order, RejectReason> {
        Self::decode_with_items(payload, max_bytes, Vec::new())
    }

    /// [`Order::decode`], with `items` (empty) as the order's item list when the scanner reads
    /// it (the serde paths make their own).
    fn decode_with_items(
        payload: Option<&[u8]>,
        max_bytes: usize,
        items: Vec<OrderItem>,
    ) -> Result<Order, RejectReason> {
        let bytes = match payload {
            None => return Err(RejectReason::Tombstone),
            Some([]) => return Err(RejectReason::Empty),
            Some(bytes) => bytes,
        };
        if bytes.len() > max_bytes {
            return Err(RejectReason::TooLarge {
                bytes: bytes.len(),
                max_bytes,
            });
        }
        // simdutf8 validates a valid order about a third faster than std (57 ns against 81
        // for the generator's 512 bytes), and the tracker validates every message; std decides
        // whenever simdutf8 refuses, and says where the text stops being UTF-8.
        let text = match simdutf8::basic::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => std::str::from_utf8(bytes).map_err(|err| RejectReason::InvalidUtf8 {
                valid_up_to: err.valid_up_to(),
            })?,
        };
        let order = match plain_form::scan(text, items) {
            Some(order) => order,
            None => decode_with_serde(text)?,
        };
        order.validate()?;
        Ok(order)
    }
}

/// Decodes orders one after another, as [`Order::decode`] does, reusing the item lists of the
/// orders handed back to it ([`Decoder::recycle`]).
///
/// Why: an item list is the one allocation nearly every order needs (its text fits in place).
/// A consumer that decodes on one thread and handles on another (the tracker's fetcher and run
/// loop) hands each order back once handled; its list, emptied, holds the next order's items,
/// so decoding allocates nothing and freeing happens where the memory was allocated.
#[derive(Debug, Default)]
pub struct Decoder {
    spare_item_lists: Vec<Vec<OrderItem>>,
}

impl Decoder {
    /// Item lists kept for reuse, at most: more than a few batches' worth.
    pub const MAX_SPARE_ITEM_LISTS: usize = 4096;

    /// The largest item list kept for reuse, in items (a kept list keeps its room): one of an
    /// order with hundreds of items is freed instead, so that a burst of large orders cannot
    /// leave thousands of large lists behind. With [`Decoder::MAX_SPARE_ITEM_LISTS`], the spare
    /// lists hold at most 4 MB.
    pub const MAX_SPARE_ITEMS: usize = 16;

    /// [`Order::decode`], into a recycled item list if there is one.
    pub fn decode(
        &mut self,
        payload: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<Order, RejectReason> {
        let items = self.spare_item_lists.pop().unwrap_or_default();
        Order::decode_with_items(payload, max_bytes, items)
    }

    /// Takes back an order its consumer is done with, keeping its item list (emptied) for a
    /// later order unless it is large; the rest of it is freed here.
    pub fn recycle(&mut self, mut order: Order) {
        if self.spare_item_lists.len() < Self::MAX_SPARE_ITEM_LISTS
            && order.items.capacity() <= Self::MAX_SPARE_ITEMS
        {
            order.items.clear();
            self.spare_item_lists.push(std::mem::take(&mut order.items));
        }
    }
}

impl Order {
    /// Writes the wire form into `buffer` (cleared first), so that a producer can reuse one
    /// buffer for every order. The bytes are serde_json's for this `Order`, written without
    /// it ([`json_writer`] says why).
    pub fn write_json(&self, buffer: &mut Vec<u8>) {
        buffer.clear();
        json_writer::write(self, buffer);
    }

    /// The rules JSON types cannot express: positive quantities, non-negative prices, a total
    /// that is the sum of its lines, and the text fields the tracker relies on.
    ///
    /// The text rules are the JSON Schema's, so that an order the schema accepts is an order
    /// the tracker tracks: required text is not blank (schema: `"pattern": "\\S"`), and
    /// `customer_id`, the message key, is at most [`MAX_CUSTOMER_ID_CHARS`] characters.
    pub fn validate(&self) -> Result<(), RejectReason> {
        require_text("customer_id", &self.customer_id)?;
        // Never more characters than bytes: only a long id needs counting.
        if self.customer_id.len() > MAX_CUSTOMER_ID_CHARS
            && self.customer_id.chars().count() > MAX_CUSTOMER_ID_CHARS
        {
            return Err(RejectReason::InvalidField {
                detail: format!("`customer_id` is longer than {MAX_CUSTOMER_ID_CHARS} characters"),
            });
        }
        if let Some(restaurant) = &self.restaurant {
            require_text("restaurant", restaurant)?;
        }
        if let Some(address) = &self.delivery_address {
            require_text("delivery_address.street", &address.street)?;
            require_text("delivery_address.postal_code", &address.postal_code)?;
            require_text("delivery_address.city", &address.city)?;
        }
        if self.items.is_empty() {
            return Err(RejectReason::NoItems);
        }
        for item in &self.items {
            require_text("items[].sku", &item.sku)?;
            require_text("items[].name", &item.name)?;
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(RejectReason::InvalidField {
                detail: format!(
                    "`currency` {:?} is not an ISO 4217 code like EUR",
                    self.currency
                ),
            });
        }
        for item in &self.items {
            if item.quantity <= 0 {
                return Err(RejectReason::NonPositiveQuantity {
                    sku: item.sku.to_string(),
                    quantity: item.quantity,
                });
            }
            if item.unit_price_cents < 0 {
                return Err(RejectReason::NegativePrice {
                    sku: item.sku.to_string(),
                    unit_price_cents: item.unit_price_cents,
                });
            }
        }
        match self.items_total_cents() {
            Some(sum) if sum == self.total_cents => Ok(()),
            items_sum => Err(RejectReason::TotalMismatch {
                total_cents: self.total_cents,
                items_sum_cents: items_sum,
            }),
        }
    }
}

/// The serde paths, for what the plain-form scanner did not take: straight into the order if
/// the message has exactly the contract's fields, else [`decode_carefully`]. Not validated yet.
fn decode_with_serde(text: &str) -> Result<Order, RejectReason> {
    match serde_json::from_str::<known_fields::KnownOrder>(text) {
        Ok(known) if known.schema_version == SCHEMA_VERSION => Ok(Order::from(known)),
        _ => decode_carefully(text),
    }
}

/// The careful path: JSON syntax first, then the version, then the shape, each with its own
/// [`RejectReason`]. "Not JSON" wins over a field error anywhere, and the version is judged before
/// the shape (a future version may have another shape; "unknown version" is what its producer
/// needs to hear). Valid orders with unknown fields (forward compatibility) pass here too.
fn decode_carefully(text: &str) -> Result<Order, RejectReason> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| RejectReason::NotJson {
            detail: err.to_string(),
        })?;
    match value.get("schema_version") {
        None => {
            return Err(RejectReason::InvalidField {
                detail: "missing field `schema_version`".into(),
            });
        }
        Some(version) if version.as_u64() != Some(u64::from(SCHEMA_VERSION)) => {
            return Err(RejectReason::UnknownSchemaVersion {
                found: version.to_string(),
            });
        }
        Some(_) => {}
    }
    serde_json::from_value(value).map_err(|err| RejectReason::InvalidField {
        detail: err.to_string(),
    })
}

/// An order's one-line summary, formatted on demand; see [`Order::summary`].
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a>(&'a Order);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = self.0;
        for (i, item) in order.items.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{} x {}", item.quantity, item.name)?;
        }
        if let Some(name) = &order.restaurant {
            write!(f, " from {name}")?;
        }
        write!(
            f,
            " for {}, {}",
            order.customer_id,
            Money::new(order.total_cents, &order.currency)
        )?;
        if order.delivery_address.is_none() {
            f.write_str(" (pickup)")?;
        }
        Ok(())
    }
}

/// The longest `customer_id` accepted, in characters (the schema's `maxLength`).
pub const MAX_CUSTOMER_ID_CHARS: usize = 128;

/// Refuses blank required text: empty, or only whitespace.
fn require_text(field: &str, value: &str) -> Result<(), RejectReason> {
    // What `value.trim().is_empty()` says (`trim` removes `char::is_whitespace` from both
    // ends), without walking in from the end of a text that starts with a letter.
    if value.chars().all(char::is_whitespace) {
        return Err(RejectReason::InvalidField {
            detail: format!("`{field}` is blank"),
        });
    }
    Ok(())
}

/// Why a message is not a valid order. Each variant is a distinct dead-letter reason.
///
/// [`RejectKind`] is the same list without the details, and can be iterated
/// (`RejectKind::iter()`), so that tests can cover every reason and learn of a new one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(name(RejectKind), derive(strum::EnumIter))]
pub enum RejectReason {
    #[error("message has no value (tombstone)")]
    Tombstone,
    #[error("message value is empty")]
    Empty,
    #[error("message value is {bytes} bytes, over the {max_bytes}-byte limit")]
    TooLarge { bytes: usize, max_bytes: usize },
    #[error("message value is not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("message value is not JSON: {detail}")]
    NotJson { detail: String },
    #[error("unknown schema_version {found} (this build reads version {SCHEMA_VERSION})")]
    UnknownSchemaVersion { found: String },
    #[error("missing or mistyped field: {detail}")]
    InvalidField { detail: String },
    #[error("order has no items")]
    NoItems,
    #[error("item {sku} has quantity {quantity}; quantities must be at least 1")]
    NonPositiveQuantity { sku: String, quantity: i64 },
    #[error("item {sku} has negative unit price {unit_price_cents} cents")]
    NegativePrice { sku: String, unit_price_cents: i64 },
    #[error("total_cents {total_cents} does not equal the sum of the items ({})", .items_sum_cents.map_or("overflow".to_string(), |sum| sum.to_string()))]
    TotalMismatch {
        total_cents: i64,
        items_sum_cents: Option<i64>,
    },
}

impl RejectReason {
    /// A stable, machine-readable code for dashboards and dead-letter headers.
    pub fn code(&self) -> &'static str {
        RejectKind::from(self).code()
    }
}

impl RejectKind {
    /// A stable, machine-readable code for dashboards and dead-letter headers.
    pub fn code(self) -> &'static str {
        match self {
            RejectKind::Tombstone => "tombstone",
            RejectKind::Empty => "empty",
            RejectKind::TooLarge => "too-large",
            RejectKind::InvalidUtf8 => "invalid-utf8",
            RejectKind::NotJson => "not-json",
            RejectKind::UnknownSchemaVersion => "unknown-schema-version",
            RejectKind::InvalidField => "invalid-field",
            RejectKind::NoItems => "no-items",
            RejectKind::NonPositiveQuantity => "non-positive-quantity",
            RejectKind::NegativePrice => "negative-price",
            RejectKind::TotalMismatch => "total-mismatch",
        }
    }
}

/// An amount in cents with its currency, displayed as `25.00 EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money<'a> {
    pub cents: i64,
    pub currency: &'a str,
}

impl<'a> Money<'a> {
    pub fn new(cents: i64, currency: &'a str) -> Self {
        Self { cents, currency }
    }
}

impl fmt::Display for Money<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.cents < 0 { "-" } else { "" };
        let abs = self.cents.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn the_schema_version_text_is_the_schema_version() {
        assert_eq!(SCHEMA_VERSION_TEXT, SCHEMA_VERSION.to_string());
    }

    const MAX: usize = 64 * 1024;

    fn valid_order_json() -> Value {
        json!({
            "schema_version": 1,
            "order_id": "0b6f3d52-8a57-4c55-9a4b-8d0f3c1f2e10",
            "customer_id": "customer-42",
            "created_at": "2026-11-21T12:30:00Z",
            "restaurant": "Chez Luigi",
            "delivery_address": {"street": "12 rue de la Paix", "postal_code": "75002", "city": "Paris"},
            "items": [
                {"sku": "PIZ-PEP", "name": "Pizza Pepperoni", "quantity": 2, "unit_price_cents": 1050},
                {"sku": "DES-TIR", "name": "Tiramisu", "quantity": 1, "unit_price_cents": 400}
            ],
            "total_cents": 2500,
            "currency": "EUR"
        })
    }

    fn decode_value(value: &Value) -> Result<Order, RejectReason> {
        Order::decode(Some(value.to_string().as_bytes()), MAX)
    }

    fn reason_code(value: &Value) -> &'static str {
        decode_value(value).expect_err("must be rejected").code()
    }

    #[test]
    fn a_valid_order_decodes_and_summarises_like_the_seed_demos() {
        let order = decode_value(&valid_order_json()).expect("valid order");
        assert_eq!(order.key(), "customer-42");
        assert_eq!(
            order.summary(),
            "2 x Pizza Pepperoni, 1 x Tiramisu from Chez Luigi for customer-42, 25.00 EUR"
        );
    }

    /// A change made to a valid order, to test one rule.
    type Edit = fn(&mut Value);

    /// Exactly the fields an outside client must send: no restaurant, no address.
    fn minimal_order_json() -> Value {
        let mut value = valid_order_json();
        let object = value.as_object_mut().expect("object");
        object.remove("restaurant");
        object.remove("delivery_address");
        value
    }

    #[test]
    fn an_order_without_restaurant_or_address_is_valid_and_summarised_as_pickup() {
        let order = decode_value(&minimal_order_json()).expect("minimal order is valid");
        assert_eq!(order.restaurant, None);
        assert_eq!(order.delivery_address, None);
        assert_eq!(
            order.summary(),
            "2 x Pizza Pepperoni, 1 x Tiramisu for customer-42, 25.00 EUR (pickup)"
        );
        // Absent optional fields stay absent on the wire (no `null` written for them).
        let wire: Value = serde_json::from_slice(&order.to_json()).expect("json");
        assert!(wire.get("restaurant").is_none() && wire.get("delivery_address").is_none());
    }

    #[test]
    fn null_restaurant_and_address_mean_none() {
        let mut value = valid_order_json();
        value["restaurant"] = Value::Null;
        value["delivery_address"] = Value::Null;
        let order = decode_value(&value).expect("nulls are accepted");
        assert_eq!((order.restaurant, order.delivery_address), (None, None));
    }

    #[test]
    fn blank_required_text_is_rejected_naming_the_field() {
        let cases: [(&str, Edit); 7] = [
            ("customer_id", |v| v["customer_id"] = json!("  ")),
            ("restaurant", |v| v["restaurant"] = json!("")),
            ("delivery_address.street", |v| {
                v["delivery_address"]["street"] = json!(" ")
            }),
            ("delivery_address.postal_code", |v| {
                v["delivery_address"]["postal_code"] = json!("")
            }),
            ("delivery_address.city", |v| {
                v["delivery_address"]["city"] = json!("\t")
            }),
            ("items[].sku", |v| v["items"][1]["sku"] = json!("")),
            ("items[].name", |v| v["items"][0]["name"] = json!(" ")),
        ];
        for (field, blank) in cases {
            let mut value = valid_order_json();
            blank(&mut value);
            let err = decode_value(&value).expect_err(field);
            assert_eq!(err.code(), "invalid-field", "{field}");
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn a_customer_id_is_at_most_128_characters() {
        let mut value = valid_order_json();
        value["customer_id"] = json!("é".repeat(MAX_CUSTOMER_ID_CHARS));
        assert!(decode_value(&value).is_ok());
        value["customer_id"] = json!("é".repeat(MAX_CUSTOMER_ID_CHARS + 1));
        assert_eq!(reason_code(&value), "invalid-field");
    }

    #[test]
    fn the_json_schema_and_the_decoder_agree_on_what_is_an_order() {
        let schema: Value = serde_json::from_str(ORDER_SCHEMA_JSON).expect("schema is JSON");
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("schema compiles");
        let edits: Vec<(&str, Edit)> = vec![
            ("as given", |_| {}),
            ("minimal", |v| *v = minimal_order_json()),
            ("null restaurant", |v| v["restaurant"] = Value::Null),
            ("null address", |v| v["delivery_address"] = Value::Null),
            ("blank restaurant", |v| v["restaurant"] = json!(" ")),
            ("empty restaurant", |v| v["restaurant"] = json!("")),
            ("numeric restaurant", |v| v["restaurant"] = json!(7)),
            ("address without city", |v| {
                v["delivery_address"]
                    .as_object_mut()
                    .expect("object")
                    .remove("city");
            }),
            ("address as text", |v| {
                v["delivery_address"] = json!("Paris")
            }),
            ("blank customer", |v| v["customer_id"] = json!(" ")),
            ("long customer", |v| {
                v["customer_id"] = json!("c".repeat(129))
            }),
            ("128-char customer", |v| {
                v["customer_id"] = json!("c".repeat(128))
            }),
            ("blank sku", |v| v["items"][0]["sku"] = json!(" ")),
            ("no items", |v| {
                v["items"] = json!([]);
                v["total_cents"] = json!(0);
            }),
            ("zero quantity", |v| v["items"][0]["quantity"] = json!(0)),
            ("fractional quantity", |v| {
                v["items"][0]["quantity"] = json!(1.5)
            }),
            ("negative price", |v| {
                v["items"][1]["unit_price_cents"] = json!(-400);
                v["total_cents"] = json!(1700);
            }),
            ("lower-case currency", |v| v["currency"] = json!("eur")),
            ("version 2", |v| v["schema_version"] = json!(2)),
            ("no version", |v| {
                v.as_object_mut().expect("object").remove("schema_version");
            }),
            ("bad uuid", |v| v["order_id"] = json!("not-a-uuid")),
            ("simple-form uuid", |v| {
                v["order_id"] = json!("4f7c1d2e000040008000000000000001")
            }),
            ("braced uuid", |v| {
                v["order_id"] = json!("{4f7c1d2e-0000-4000-8000-000000000001}")
            }),
            ("urn uuid", |v| {
                v["order_id"] = json!("urn:uuid:4f7c1d2e-0000-4000-8000-000000000001")
            }),
            ("upper-case uuid", |v| {
                v["order_id"] = json!("4F7C1D2E-0000-4000-8000-00000000000A")
            }),
            ("bad timestamp", |v| v["created_at"] = json!("yesterday")),
            ("timestamp with a space", |v| {
                v["created_at"] = json!("2026-11-21 17:00:00Z")
            }),
            ("offset without colon", |v| {
                v["created_at"] = json!("2026-11-21T17:00:00+0100")
            }),
            ("timestamp without offset", |v| {
                v["created_at"] = json!("2026-11-21T17:00:00")
            }),
            ("lower-case t and z", |v| {
                v["created_at"] = json!("2026-11-21t17:00:00z")
            }),
            ("fraction and offset", |v| {
                v["created_at"] = json!("2026-11-21T17:00:00.25-09:30")
            }),
            ("February 30", |v| {
                v["created_at"] = json!("2026-02-30T17:00:00Z")
            }),
            ("extra property", |v| v["loyalty_points"] = json!(3)),
            ("missing total", |v| {
                v.as_object_mut().expect("object").remove("total_cents");
            }),
        ];
        for (name, edit) in edits {
            let mut value = valid_order_json();
            edit(&mut value);
            assert_eq!(
                validator.is_valid(&value),
                decode_value(&value).is_ok(),
                "schema and decoder disagree on: {name}"
            );
        }
    }

    #[test]
    fn encoding_then_decoding_gives_the_same_order() {
        let order = decode_value(&valid_order_json()).expect("valid order");
        let again = Order::decode(Some(&order.to_json()), MAX).expect("round trip");
        assert_eq!(order, again);
    }

    #[test]
    fn unknown_extra_fields_are_tolerated_for_forward_compatibility() {
        let mut value = valid_order_json();
        value["loyalty_points"] = json!(12);
        assert!(decode_value(&value).is_ok());
    }

    #[test]
    fn a_tombstone_is_rejected() {
        assert_eq!(Order::decode(None, MAX), Err(RejectReason::Tombstone));
    }

    #[test]
    fn an_empty_value_is_rejected() {
        assert_eq!(Order::decode(Some(b""), MAX), Err(RejectReason::Empty));
    }

    #[test]
    fn a_free_item_is_allowed() {
        let mut value = valid_order_json();
        value["items"][1]["unit_price_cents"] = json!(0);
        value["total_cents"] = json!(2100);
        assert!(decode_value(&value).is_ok());
    }

    #[test]
    fn zero_money_has_no_minus_sign() {
        assert_eq!(Money::new(0, "EUR").to_string(), "0.00 EUR");
    }

    #[test]
    fn a_value_of_exactly_the_size_bound_is_accepted() {
        let bytes = valid_order_json().to_string().into_bytes();
        assert!(Order::decode(Some(&bytes), bytes.len()).is_ok());
        assert_eq!(
            Order::decode(Some(&bytes), bytes.len() - 1).map_err(|err| err.code()),
            Err("too-large")
        );
    }

    #[test]
    fn a_value_over_the_size_bound_is_rejected_before_parsing() {
        let big = vec![b'{'; 2048];
        let err = Order::decode(Some(&big), 1024).expect_err("too large");
        assert_eq!(
            err,
            RejectReason::TooLarge {
                bytes: 2048,
                max_bytes: 1024
            }
        );
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let err = Order::decode(Some(b"{\"a\": \"\xff\xfe\"}"), MAX).expect_err("bad utf8");
        assert_eq!(err.code(), "invalid-utf8");
    }

    #[test]
    fn text_that_is_not_json_is_rejected() {
        let err = Order::decode(Some(b"hello, kafka"), MAX).expect_err("not json");
        assert_eq!(err.code(), "not-json");
    }

    #[test]
    fn a_missing_field_is_rejected_naming_the_field() {
        let mut value = valid_order_json();
        value.as_object_mut().expect("object").remove("customer_id");
        let err = decode_value(&value).expect_err("missing");
        assert_eq!(err.code(), "invalid-field");
        assert!(err.to_string().contains("customer_id"), "{err}");
    }

    #[test]
    fn a_mistyped_field_is_rejected() {
        let mut value = valid_order_json();
        value["total_cents"] = json!("25.00");
        assert_eq!(reason_code(&value), "invalid-field");
        let mut value = valid_order_json();
        value["order_id"] = json!("not-a-uuid");
        assert_eq!(reason_code(&value), "invalid-field");
        let mut value = valid_order_json();
        value["created_at"] = json!("yesterday");
        assert_eq!(reason_code(&value), "invalid-field");
    }

    #[test]
    fn a_missing_schema_version_is_a_missing_field() {
        let mut value = valid_order_json();
        value
            .as_object_mut()
            .expect("object")
            .remove("schema_version");
        assert_eq!(reason_code(&value), "invalid-field");
    }

    /// What `decode` answered before it had a fast path: the careful path, then the rules.
    fn decode_the_careful_way(text: &str) -> Result<Order, RejectReason> {
        let order = decode_carefully(text)?;
        order.validate()?;
        Ok(order)
    }

    #[test]
    fn the_one_parse_fast_path_answers_exactly_as_the_careful_path() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let texts: Vec<String> = vec![
            valid_order_json().to_string(),
            minimal_order_json().to_string(),
            // Field order, whitespace and escapes do not matter.
            r#"{ "currency":"EUR", "total_cents":950, "items":[{"unit_price_cents":950,"quantity":1,"name":"Pizza\u0020Margherita","sku":"PIZ-MAR"}], "created_at":"2026-11-21T12:30:00+01:00", "customer_id":"c\u00e9", "order_id":"0b6f3d52-8a57-4c55-9a4b-8d0f3c1f2e10", "schema_version":1 }"#.to_string(),
            // Duplicate keys: the careful path keeps the last one.
            valid_order_json().to_string().replacen('{', r#"{"customer_id":"first","#, 1),
            // Versions the fast path does not take.
            valid_order_json().to_string().replace(r#""schema_version":1"#, r#""schema_version":1.0"#),
            valid_order_json().to_string().replace(r#""schema_version":1"#, r#""schema_version":2"#),
            valid_order_json().to_string().replace(r#""schema_version":1"#, r#""schema_version":-1"#),
            // Unknown fields: tolerated, and judged as strictly as known ones.
            valid_order_json().to_string().replacen('{', r#"{"tip_cents":100,"#, 1),
            valid_order_json().to_string().replacen('{', r#"{"note":"\ud800","#, 1),
            valid_order_json().to_string().replacen('{', r#"{"weight":1e400,"#, 1),
            valid_order_json().to_string().replacen('{', &format!(r#"{{"nested":{deep},"#), 1),
            // Broken in the middle, after fields that would fail on their own.
            r#"{"schema_version":1,"customer_id":5,"items":[}"#.to_string(),
            r#"{"schema_version":1,"customer_id":"x""#.to_string(),
            "[]".to_string(),
            "1".to_string(),
            "{}".to_string(),
        ];
        for text in &texts {
            assert_eq!(
                Order::decode(Some(text.as_bytes()), MAX),
                decode_the_careful_way(text),
                "{text}"
            );
        }
    }

    /// What `decode` answered before the plain-form scanner: UTF-8, then serde_json straight
    /// into the order, else the careful path; then the rules.
    fn decode_with_serde_only(bytes: &[u8]) -> Result<Order, RejectReason> {
        let text = std::str::from_utf8(bytes).map_err(|err| RejectReason::InvalidUtf8 {
            valid_up_to: err.valid_up_to(),
        })?;
        let order = decode_with_serde(text)?;
        order.validate()?;
        Ok(order)
    }

    /// Pieces of JSON, and of what is not JSON, that a mutation inserts or writes over: every
    /// token the scanner reads, each edge it must leave to serde (escapes, signs, fractions,
    /// exponents, leading zeros, long numbers, control characters, broken and non-shortest
    /// UTF-8, surrogates), and whole members (unknown, repeated, null, empty).
    const PIECES: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b" ",
        b"\t",
        b"\n",
        b"\r",
        b"\x0c",
        b"0",
        b"1",
        b"7",
        b"9",
        b"-",
        b"+",
        b".",
        b"e",
        b"E",
        b"-0",
        b"00",
        b"1.0",
        b"1e2",
        b"123456789012345678",
        b"1234567890123456789",
        b"99999999999999999999",
        b"n",
        b"null",
        b"nul",
        b"true",
        b"\x00",
        b"\x1f",
        b"\x7f",
        b"\xc3\xa9",
        b"\xc3",
        b"\xff",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xef\xbb\xbf",
        b"\\u00e9",
        b"\\ud800",
        b"\\\"",
        b"\"x\":1,",
        b"\"items\":[],",
        b"\"restaurant\":null,",
        b"\"delivery_address\":null,",
        b"\"schema_version\":1,",
        b"\"total_cents\":0,",
        b"\"currency\":\"EUR\",",
        b"{\"sku\":\"A\",\"name\":\"B\",\"quantity\":1,\"unit_price_cents\":0}",
    ];

    /// One random change to `bytes`: a piece inserted or written over, a span deleted, or a
    /// span copied elsewhere (which repeats members).
    fn mutate(bytes: &mut Vec<u8>, rng: &mut rand::rngs::StdRng) {
        use rand::RngExt;
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..4) {
            0 => {
                let piece = PIECES[rng.random_range(0..PIECES.len())];
                bytes.splice(at..at, piece.iter().copied());
            }
            1 => {
                let piece = PIECES[rng.random_range(0..PIECES.len())];
                let end = (at + piece.len()).min(bytes.len());
                bytes.splice(at..end, piece.iter().copied());
            }
            2 => {
                let end = (at + rng.random_range(1..=12)).min(bytes.len());
                bytes.drain(at..end);
            }
            _ => {
                let start = rng.random_range(0..=bytes.len());
                let end = (start + rng.random_range(1..=80)).min(bytes.len());
                let span = bytes[start..end].to_vec();
                bytes.splice(at..at, span);
            }
        }
    }

    /// A decoder answers what `Order::decode` answers, whatever it was handed back before, and
    /// a handed-back order's item list (emptied) holds the next order's items, unless it is a
    /// large one.
    #[test]
    fn a_decoder_reuses_handed_back_item_lists_and_answers_as_decode_does() {
        let plain = decode_value(&valid_order_json()).expect("valid").to_json();
        let pretty = serde_json::to_vec_pretty(&valid_order_json()).expect("JSON");
        let mut decoder = Decoder::default();
        // A list told apart from a fresh one by its capacity.
        let mut handed_back = decode_value(&valid_order_json()).expect("valid");
        handed_back.items.reserve_exact(9);
        let capacity = handed_back.items.capacity();
        assert!(capacity != 4 && capacity <= Decoder::MAX_SPARE_ITEMS);
        decoder.recycle(handed_back);
        let first = decoder.decode(Some(&plain), MAX).expect("valid");
        assert_eq!(
            first.items.capacity(),
            capacity,
            "the handed-back list was reused"
        );
        assert_eq!(Ok(first.clone()), Order::decode(Some(&plain), MAX));
        decoder.recycle(first);
        for payload in [&plain[..], &pretty, b"not json", &plain, b"{}"] {
            assert_eq!(
                decoder.decode(Some(payload), MAX),
                Order::decode(Some(payload), MAX),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
        // At most so many lists are kept.
        let mut hoarder = Decoder::default();
        for _ in 0..Decoder::MAX_SPARE_ITEM_LISTS + 3 {
            hoarder.recycle(decode_value(&valid_order_json()).expect("valid"));
        }
        assert_eq!(
            hoarder.spare_item_lists.len(),
            Decoder::MAX_SPARE_ITEM_LISTS
        );
        // A large list is not kept: the next order gets a list of its own size.
        let mut large = decode_value(&valid_order_json()).expect("valid");
        large.items.reserve_exact(1000);
        decoder.recycle(large);
        let next = decoder.decode(Some(&plain), MAX).expect("valid");
        assert!(next.items.capacity() <= Decoder::MAX_SPARE_ITEMS);
    }

    /// The plain-form scanner may refuse anything, but whatever it accepts, serde_json reads as
    /// the same order: over 100,000 mutations of orders in several forms, `decode` answers
    /// exactly what the serde paths alone answer, and every order the scanner returns is the
    /// one serde_json parses. Both sides are exercised: thousands of mutations stay in the
    /// plain form (about 3%), the rest leave it.
    #[test]
    fn plain_form_and_serde_agree_on_every_mutation() {
        use rand::{RngExt, SeedableRng};
        let mut pickup = decode_value(&minimal_order_json()).expect("valid");
        pickup.customer_id = "client-é-東京".into();
        pickup.items[0].name = "Crêpe \u{1F95E}".into();
        let mut nulls = valid_order_json();
        nulls["restaurant"] = Value::Null;
        nulls["delivery_address"] = Value::Null;
        let seeds: Vec<Vec<u8>> = vec![
            decode_value(&valid_order_json()).expect("valid").to_json(),
            pickup.to_json(),
            valid_order_json().to_string().into_bytes(),
            serde_json::to_vec_pretty(&valid_order_json()).expect("JSON"),
            nulls.to_string().into_bytes(),
        ];
        let seed = 20261122;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut scanned, mut refused) = (0, 0);
        for round in 0..100_000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            for _ in 0..rng.random_range(1..=3) {
                mutate(&mut bytes, &mut rng);
            }
            let shown = String::from_utf8_lossy(&bytes);
            assert_eq!(
                Order::decode(Some(&bytes), MAX),
                decode_with_serde_only(&bytes),
                "seed {seed}, round {round}: {shown}"
            );
            let Ok(text) = std::str::from_utf8(&bytes) else {
                refused += 1;
                continue;
            };
            match plain_form::scan(text, Vec::new()) {
                Some(order) => {
                    let parsed = serde_json::from_str::<known_fields::KnownOrder>(text)
                        .map(Order::from)
                        .unwrap_or_else(|err| {
                            panic!("seed {seed}, round {round}: scanned, serde says {err}: {shown}")
                        });
                    assert_eq!(order, parsed, "seed {seed}, round {round}: {shown}");
                    scanned += 1;
                }
                None => refused += 1,
            }
        }
        assert!(
            scanned > 2_000 && refused > 10_000,
            "{scanned} scanned, {refused} refused"
        );
    }

    #[test]
    fn an_unknown_field_is_tolerated_but_not_below_the_rules_of_json() {
        let lone_surrogate =
            valid_order_json()
                .to_string()
                .replacen('{', r#"{"note":"\ud800","#, 1);
        let out_of_range = valid_order_json()
            .to_string()
            .replacen('{', r#"{"weight":1e400,"#, 1);
        let too_deep = valid_order_json().to_string().replacen(
            '{',
            &format!(r#"{{"nested":{}1{},"#, "[".repeat(200), "]".repeat(200)),
            1,
        );
        for text in [lone_surrogate, out_of_range, too_deep] {
            let err = Order::decode(Some(text.as_bytes()), MAX).expect_err("not JSON");
            assert_eq!(err.code(), "not-json", "{text}: {err}");
        }
    }

    #[test]
    fn an_unknown_schema_version_is_rejected() {
        let mut value = valid_order_json();
        value["schema_version"] = json!(2);
        assert_eq!(reason_code(&value), "unknown-schema-version");
        value["schema_version"] = json!("1");
        assert_eq!(reason_code(&value), "unknown-schema-version");
    }

    #[test]
    fn a_zero_or_negative_quantity_is_rejected() {
        for quantity in [0, -3] {
            let mut value = valid_order_json();
            value["items"][0]["quantity"] = json!(quantity);
            assert_eq!(reason_code(&value), "non-positive-quantity");
        }
    }

    #[test]
    fn a_negative_price_is_rejected() {
        let mut value = valid_order_json();
        value["items"][1]["unit_price_cents"] = json!(-400);
        value["total_cents"] = json!(1700);
        assert_eq!(reason_code(&value), "negative-price");
    }

    #[test]
    fn a_total_that_is_not_the_sum_of_the_items_is_rejected() {
        let mut value = valid_order_json();
        value["total_cents"] = json!(2499);
        assert_eq!(reason_code(&value), "total-mismatch");
    }

    #[test]
    fn a_total_that_overflows_is_a_mismatch_not_a_panic() {
        let mut value = valid_order_json();
        value["items"][0]["quantity"] = json!(i64::MAX);
        assert_eq!(reason_code(&value), "total-mismatch");
    }

    #[test]
    fn an_order_without_items_is_rejected() {
        let mut value = valid_order_json();
        value["items"] = json!([]);
        value["total_cents"] = json!(0);
        assert_eq!(reason_code(&value), "no-items");
    }

    #[test]
    fn a_currency_that_is_not_an_iso_code_is_rejected() {
        let mut value = valid_order_json();
        value["currency"] = json!("euro");
        assert_eq!(reason_code(&value), "invalid-field");
    }

    #[test]
    fn money_is_displayed_with_two_decimals() {
        assert_eq!(Money::new(2500, "EUR").to_string(), "25.00 EUR");
        assert_eq!(Money::new(5, "EUR").to_string(), "0.05 EUR");
        assert_eq!(Money::new(-1999, "USD").to_string(), "-19.99 USD");
    }

    #[test]
    fn the_json_schema_accepts_a_valid_order_and_refuses_what_decode_refuses() {
        let schema: Value = serde_json::from_str(ORDER_SCHEMA_JSON).expect("schema is JSON");
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        assert!(validator.is_valid(&valid_order_json()));
        let mut bad_quantity = valid_order_json();
        bad_quantity["items"][0]["quantity"] = json!(0);
        assert!(!validator.is_valid(&bad_quantity));
        let mut bad_version = valid_order_json();
        bad_version["schema_version"] = json!(2);
        assert!(!validator.is_valid(&bad_version));
        let mut missing = valid_order_json();
        missing.as_object_mut().expect("object").remove("items");
        assert!(!validator.is_valid(&missing));
    }

    #[test]
    fn every_reason_has_its_own_code() {
        let reasons = [
            RejectReason::Tombstone,
            RejectReason::Empty,
            RejectReason::TooLarge {
                bytes: 2,
                max_bytes: 1,
            },
            RejectReason::InvalidUtf8 { valid_up_to: 0 },
            RejectReason::NotJson { detail: "x".into() },
            RejectReason::UnknownSchemaVersion { found: "2".into() },
            RejectReason::InvalidField { detail: "x".into() },
            RejectReason::NoItems,
            RejectReason::NonPositiveQuantity {
                sku: "a".into(),
                quantity: 0,
            },
            RejectReason::NegativePrice {
                sku: "a".into(),
                unit_price_cents: -1,
            },
            RejectReason::TotalMismatch {
                total_cents: 1,
                items_sum_cents: Some(2),
            },
        ];
        let codes: std::collections::HashSet<_> = reasons.iter().map(RejectReason::code).collect();
        assert_eq!(codes.len(), reasons.len());
    }
}
