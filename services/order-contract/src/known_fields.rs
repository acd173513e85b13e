//! The decoder's second path: one serde_json parse straight into the order's types, for an
//! order carrying exactly the contract's fields that the plain-form scanner
//! ([`crate::plain_form`]) did not take (escaped text, for one).
//!
//! [`Order::decode`](crate::Order::decode) used to parse every message twice, into a
//! `serde_json::Value` (to judge syntax and version first) and then into [`Order`]. Parsing
//! once into [`Order`] itself would change answers at the edges: serde_json *skips* unknown
//! fields with a laxer scanner than it *parses* with (a skipped value may hold a lone UTF-16
//! surrogate, a number out of range, or nest deeper than the parser's limit of 128, all of which
//! a full parse refuses as not JSON). So the fast path parses into these mirrors, which refuse
//! unknown fields: when it succeeds, every byte of the message went through the same visitors
//! as the careful path's, and the result is the same order. When it fails for any reason
//! (unknown or duplicate field, wrong version, any error), the careful path decides, exactly as
//! before. The mirrors must follow [`Order`]'s fields; a test decodes generated orders and
//! every poison case both ways and compares.

use crate::{DeliveryAddress, Order, OrderItem};
use chrono::{DateTime, Utc};
use compact_str::CompactString;
use serde::Deserialize;
use uuid::Uuid;

/// [`Order`], refusing fields it does not know.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KnownOrder {
    pub(crate) schema_version: u32,
    #[serde(deserialize_with = "crate::wire_forms::hyphenated_uuid")]
    order_id: Uuid,
    customer_id: CompactString,
    #[serde(deserialize_with = "crate::wire_forms::rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(default)]
    restaurant: Option<CompactString>,
    #[serde(default)]
    delivery_address: Option<KnownAddress>,
    items: Vec<KnownItem>,
    total_cents: i64,
    currency: CompactString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownAddress {
    street: CompactString,
    postal_code: CompactString,
    city: CompactString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownItem {
    sku: CompactString,
    name: CompactString,
    quantity: i64,
    unit_price_cents: i64,
}

impl From<KnownOrder> for Order {
    fn from(known: KnownOrder) -> Order {
        Order {
            schema_version: known.schema_version,
            order_id: known.order_id,
            customer_id: known.customer_id,
            created_at: known.created_at,
            restaurant: known.restaurant,
            delivery_address: known.delivery_address.map(|address| DeliveryAddress {
                street: address.street,
                postal_code: address.postal_code,
                city: address.city,
            }),
            items: known
                .items
                .into_iter()
                .map(|item| OrderItem {
                    sku: item.sku,
                    name: item.name,
                    quantity: item.quantity,
                    unit_price_cents: item.unit_price_cents,
                })
                .collect(),
            total_cents: known.total_cents,
            currency: known.currency,
        }
    }
}
