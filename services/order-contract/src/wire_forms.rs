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
    if let Some(at) = parse_plain_utc(text.as_bytes()) {
        return Some(at);
    }
    if !has_rfc3339_shape(text) {
        return None;
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// The instant, if `text` is `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with at most nine fraction
/// digits and no leap second: what our producer writes, and most clients. `None` says only
/// that this form does not apply: [`parse_rfc3339`] then asks chrono, whose answer this one
/// must always equal (`the_plain_utc_form_reads_as_chrono_reads_it` compares them). chrono's
/// general parser was about a tenth of decoding an order.
fn parse_plain_utc(text: &[u8]) -> Option<DateTime<Utc>> {
    let number = |range: std::ops::Range<usize>| {
        let digits = text.get(range)?;
        digits.iter().try_fold(0u32, |value, &digit| {
            digit
                .is_ascii_digit()
                .then(|| value * 10 + u32::from(digit - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if !separators
        .iter()
        .all(|&(at, separator)| text.get(at) == Some(&separator))
    {
        return None;
    }
    let year = number(0..4)?;
    let (month, day) = (number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let nanos = match text.get(19..)? {
        b"Z" => 0,
        [b'.', fraction @ .., b'Z'] if (1..=9).contains(&fraction.len()) => {
            let digits = number(20..20 + fraction.len())?;
            digits * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    if second > 59 {
        return None; // a leap second: chrono's to judge
    }
    chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)
        .map(|at| at.and_utc())
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

    /// Every text the plain form reads, chrono reads as the same instant. The texts are
    /// the producer's form with each field swept through in-range, edge and out-of-range
    /// values (February 29 in leap and other years, day 31 of short months, hour 24, second
    /// 60), fractions of every length, and random single-byte mutations.
    #[test]
    fn the_plain_utc_form_reads_as_chrono_reads_it() {
        use rand::{RngExt, SeedableRng};
        let chrono_reads = |text: &str| {
            has_rfc3339_shape(text)
                .then(|| DateTime::parse_from_rfc3339(text).ok())
                .flatten()
                .map(|at| at.with_timezone(&Utc))
        };
        let mut texts = Vec::new();
        for year in [
            "0000", "0001", "1900", "1999", "2000", "2024", "2026", "2100", "9999",
        ] {
            for month in ["00", "01", "02", "04", "06", "09", "11", "12", "13", "99"] {
                for day in ["00", "01", "28", "29", "30", "31", "32"] {
                    texts.push(format!("{year}-{month}-{day}T12:30:45Z"));
                }
            }
        }
        for time in [
            "00:00:00", "23:59:59", "24:00:00", "23:60:00", "23:59:60", "99:99:99",
        ] {
            for fraction in [
                "",
                ".",
                ".5",
                ".123",
                ".123456",
                ".123456789",
                ".1234567891",
            ] {
                texts.push(format!("2026-11-21T{time}{fraction}Z"));
            }
        }
        let mut random = rand::rngs::StdRng::seed_from_u64(3339);
        let base = b"2026-11-21T17:04:05.123456Z";
        let alphabet = b"0123456789-:.TtZz+ x\xc3";
        for _ in 0..200_000 {
            let mut text = base.to_vec();
            for _ in 0..random.random_range(1..=3) {
                let at = random.random_range(0..text.len());
                match random.random_range(0..3) {
                    0 => text[at] = alphabet[random.random_range(0..alphabet.len())],
                    1 => drop(text.remove(at)),
                    _ => text.insert(at, alphabet[random.random_range(0..alphabet.len())]),
                }
            }
            if let Ok(text) = String::from_utf8(text) {
                texts.push(text);
            }
        }
        let mut read_plainly = 0;
        for text in &texts {
            if let Some(at) = parse_plain_utc(text.as_bytes()) {
                read_plainly += 1;
                assert_eq!(Some(at), chrono_reads(text), "{text:?}");
            }
            assert_eq!(parse_rfc3339(text), chrono_reads(text), "{text:?}");
        }
        assert!(read_plainly > 10_000, "the plain form read {read_plainly}");
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
