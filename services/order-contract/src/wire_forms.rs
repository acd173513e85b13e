//! The two text forms the JSON Schema pins down more tightly than the parsers behind [`Uuid`]
//! and [`DateTime`] do, enforced while decoding so that the decoder accepts nothing the schema
//! refuses.
//!
//! - `order_id`: the schema's pattern is the hyphenated form (8-4-4-4-12 hex digits). `uuid`
//!   also parses the simple (32 digits), braced and `urn:uuid:` forms; a consumer validating
//!   with the schema would refuse those, so the tracker does too.
//! - `created_at`: the schema's `date-time` is RFC 3339's `date-time`. chrono's `FromStr`
//!   also takes a space for the `T` and an offset without its colon; RFC 3339 does not.
//!
//! With this the intake (order-producer) needs no second validator: what the decoder accepts
//! is valid under the schema (`the_json_schema_and_the_decoder_agree_on_what_is_an_order`).
//! Both run inside serde's visitors, on the serde paths alike, and in the plain-form scanner
//! ([`crate::plain_form`]), and borrow the text: no allocation per order.

use chrono::{DateTime, Utc};
use serde::Deserializer;
use serde::de::{self, Visitor};
use std::fmt;
use uuid::Uuid;

/// `order_id`: a UUID in its hyphenated form only.
pub(crate) fn hyphenated_uuid<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Uuid, D::Error> {
    struct Hyphenated;
    impl Visitor<'_> for Hyphenated {
        type Value = Uuid;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a UUID in its hyphenated form, 8-4-4-4-12 hex digits")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Uuid, E> {
            parse_hyphenated_uuid(text).ok_or_else(|| {
                E::custom(format!(
                    "`order_id` {text:?} is not a UUID in its hyphenated form \
                     (8-4-4-4-12 hex digits)"
                ))
            })
        }
    }
    deserializer.deserialize_str(Hyphenated)
}

/// The UUID, if `text` is one in the hyphenated form. `uuid` reads 36 characters as that form
/// only (hyphens in place, hex digits elsewhere), so the length rules out the other forms.
pub(crate) fn parse_hyphenated_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 36 {
        return None;
    }
    Uuid::try_parse(text).ok()
}

/// `created_at`: an RFC 3339 `date-time` only.
pub(crate) fn rfc3339<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<DateTime<Utc>, D::Error> {
    struct Rfc3339;
    impl Visitor<'_> for Rfc3339 {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 date-time like 2026-11-21T17:00:00Z")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<DateTime<Utc>, E> {
            let refuse = || {
                E::custom(format!(
                    "`created_at` {text:?} is not an RFC 3339 date-time like \
                     2026-11-21T17:00:00Z"
                ))
            };
            parse_rfc3339(text).ok_or_else(refuse)
        }
    }
    deserializer.deserialize_str(Rfc3339)
}

/// The instant, if `text` is an RFC 3339 `date-time`.
pub(crate) fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    if !has_rfc3339_shape(text) {
        return None;
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, `T` and `Z` in either case (RFC 3339
/// section 5.6); the values themselves (month 13, February 30) are chrono's to judge.
fn has_rfc3339_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let at = |index: usize, allowed: &[u8]| bytes.get(index).is_some_and(|b| allowed.contains(b));
    let date_and_time = digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"Tt")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19);
    if !date_and_time {
        return false;
    }
    let mut rest = &bytes[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return false;
        }
        rest = &fraction[count..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Fields {
        #[serde(default, deserialize_with = "hyphenated_uuid")]
        #[allow(dead_code)]
        order_id: Uuid,
        #[serde(default, deserialize_with = "rfc3339")]
        #[allow(dead_code)]
        created_at: DateTime<Utc>,
    }

    /// A value that is not text at all is refused saying which form was expected.
    #[test]
    fn a_mistyped_value_is_refused_naming_the_form_expected() {
        let error = |json: &str| {
            serde_json::from_str::<Fields>(json)
                .expect_err("refused")
                .to_string()
        };
        let id = error(r#"{"order_id": 7}"#);
        assert!(id.contains("a UUID in its hyphenated form"), "{id}");
        let at = error(r#"{"created_at": true}"#);
        assert!(at.contains("an RFC 3339 date-time"), "{at}");
    }

    #[test]
    fn only_the_hyphenated_uuid_form_passes() {
        assert!(parse_hyphenated_uuid("4f7c1d2e-0000-4000-8000-00000000000a").is_some());
        assert!(parse_hyphenated_uuid("4F7C1D2E-0000-4000-8000-00000000000A").is_some());
        for other in [
            "4f7c1d2e000040008000000000000001",
            "{4f7c1d2e-0000-4000-8000-000000000001}",
            "urn:uuid:4f7c1d2e-0000-4000-8000-000000000001",
            "4f7c1d2e-0000-4000-8000-00000000000g",
            "4f7c1d2e-0000-4000-8000+000000000001",
            "4f7c1d2e0-000-4000-8000-00000000000a",
            "4f7c1d2e-0000-4000-8000-0000000000011",
            "4f7c1d2e-0000-4000-8000-00000000001",
            "",
        ] {
            assert!(parse_hyphenated_uuid(other).is_none(), "{other}");
        }
    }

    #[test]
    fn only_rfc3339_date_times_have_the_shape() {
        for good in [
            "2026-11-21T17:00:00Z",
            "2026-11-21t17:00:00z",
            "2026-11-21T17:00:00.123456789Z",
            "2026-11-21T17:00:00+01:00",
            "2026-11-21T17:00:00.5-09:30",
        ] {
            assert!(has_rfc3339_shape(good), "{good}");
        }
        for bad in [
            "2026-11-21 17:00:00Z",
            "2026-11-21T17:00:00+0100",
            "2026-11-21T17:00:00",
            "2026-11-21T17:00Z",
            "2026-11-21T17:00:00.Z",
            "2026-11-21T17:00:00Z ",
            "26-11-21T17:00:00Z",
            "2026-11-21T17:00:00+01",
            "",
        ] {
            assert!(!has_rfc3339_shape(bad), "{bad}");
        }
    }
}
