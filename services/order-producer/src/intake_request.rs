//! What a `POST /orders` request must hold, decided without HTTP plumbing or Kafka, so that every
//! rule is a plain function with unit tests.
//!
//! The rule is that the intake may only write what the tracker would track: the body is parsed,
//! its missing `schema_version`, `order_id` and `created_at` are filled in, and then the *final
//! bytes*, exactly as they will be written to the topic, go through the tracker's own decoder
//! ([`Order::decode`], with the same `MAX_ORDER_BYTES`). A refusal carries the decoder's reason
//! code, so a client sees the same `reason` for a bad order as the dead-letter topic would have
//! recorded for it.
//!
//! The decoder accepts nothing the contract's JSON Schema refuses (order-contract tests that
//! case by case, and a test here checks accepted requests against the schema), so every message
//! the intake writes is valid for the other clients of the topic too, without a second
//! validator in the binary (the `jsonschema` crate cost the image 5 MB).

use axum::http::{HeaderValue, StatusCode};
use chrono::{DateTime, SecondsFormat, Utc};
use order_contract::{Order, RejectReason, SCHEMA_VERSION};
use serde_json::Value;
use uuid::Uuid;

/// A refusal: an RFC 9457 problem with the reason code as the `reason` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub status: StatusCode,
    /// A stable code: one of the dead-letter reasons, or one of [`INTAKE_REASONS`].
    pub reason: &'static str,
    pub detail: String,
    /// Seconds for the `Retry-After` header (503 only).
    pub retry_after: Option<u64>,
}

/// Reason codes that only the intake uses (the others are the dead-letter reasons of
/// [`RejectReason::code`]). The OpenAPI document lists both; a test keeps them equal.
#[cfg(test)]
pub(crate) const INTAKE_REASONS: &[&str] = &[
    "unsupported-media-type",
    "unreadable-body",
    "not-found",
    "method-not-allowed",
    "queue-full",
    "broker-timeout",
    "not-delivered",
];

impl Problem {
    pub fn new(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            reason,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A 503 that tells the client when to try again.
    pub fn unavailable(reason: &'static str, detail: impl Into<String>, retry_after: u64) -> Self {
        Problem {
            retry_after: Some(retry_after.max(1)),
            ..Problem::new(StatusCode::SERVICE_UNAVAILABLE, reason, detail)
        }
    }

    /// The decoder's verdict as an HTTP status: a body that is not JSON text is malformed
    /// (400), one over the size limit too large (413), and a JSON body that is not a valid
    /// order unprocessable (422).
    pub fn rejected(reason: &RejectReason) -> Self {
        let status = match reason {
            RejectReason::Tombstone
            | RejectReason::Empty
            | RejectReason::InvalidUtf8 { .. }
            | RejectReason::NotJson { .. } => StatusCode::BAD_REQUEST,
            RejectReason::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Problem::new(status, reason.code(), reason.to_string())
    }

    /// The body, `application/problem+json`.
    pub fn to_json(&self) -> Vec<u8> {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "reason": self.reason,
        });
        body.to_string().into_bytes()
    }
}

/// `Content-Type` must be `application/json` (parameters such as `charset=utf-8` allowed).
pub(crate) fn check_content_type(value: Option<&HeaderValue>) -> Result<(), Problem> {
    let media_type = value
        .and_then(|value| value.to_str().ok())
        .map(|text| text.split(';').next().unwrap_or_default().trim());
    match media_type {
        Some(media_type) if media_type.eq_ignore_ascii_case("application/json") => Ok(()),
        other => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!(
                "an order is sent as Content-Type: application/json, not {} \
                 (curl: -H 'Content-Type: application/json', or --json)",
                other.map_or("no content type".to_string(), |t| format!("{t:?}"))
            ),
        )),
    }
}

/// The request body is over the limit before it is even parsed.
pub(crate) fn body_too_large(max_bytes: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("the request body is over the {max_bytes}-byte limit (MAX_ORDER_BYTES)"),
    )
}

/// The values for the fields a client may leave out.
#[derive(Debug, Clone)]
pub(crate) struct Defaults {
    pub order_id: Uuid,
    pub created_at: DateTime<Utc>,
}

impl Defaults {
    pub fn now() -> Self {
        Defaults {
            order_id: Uuid::new_v4(),
            created_at: Utc::now(),
        }
    }
}

/// An order ready to be written: `payload` is exactly what goes to the topic, and `order` is
/// what the tracker's decoder made of it.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub order: Order,
    pub payload: Vec<u8>,
    /// The fields that were filled in, for the log.
    pub filled: Vec<&'static str>,
}

/// Turns a request body into an order the tracker would track, or says why not.
pub(crate) fn prepare(
    body: &[u8],
    max_bytes: usize,
    defaults: Defaults,
) -> Result<Accepted, Problem> {
    if body.len() > max_bytes {
        return Err(body_too_large(max_bytes));
    }
    if body.is_empty() {
        return Err(Problem::rejected(&RejectReason::Empty));
    }
    let text = std::str::from_utf8(body).map_err(|err| {
        Problem::rejected(&RejectReason::InvalidUtf8 {
            valid_up_to: err.valid_up_to(),
        })
    })?;
    let mut value: Value = serde_json::from_str(text).map_err(|err| {
        Problem::rejected(&RejectReason::NotJson {
            detail: err.to_string(),
        })
    })?;
    let Some(fields) = value.as_object_mut() else {
        return Err(Problem::rejected(&RejectReason::InvalidField {
            detail: "an order is a JSON object".into(),
        }));
    };
    // Only absent fields are filled in: a present one, even `null`, is the client's and is
    // judged as sent.
    let mut filled = Vec::new();
    if !fields.contains_key("schema_version") {
        fields.insert("schema_version".into(), SCHEMA_VERSION.into());
        filled.push("schema_version");
    }
    if !fields.contains_key("order_id") {
        fields.insert("order_id".into(), defaults.order_id.to_string().into());
        filled.push("order_id");
    }
    if !fields.contains_key("created_at") {
        let created_at = defaults
            .created_at
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        fields.insert("created_at".into(), created_at.into());
        filled.push("created_at");
    }
    // Serializing a `Value` that was just parsed cannot fail.
    let payload = serde_json::to_vec(&value).unwrap_or_default();
    // The final bytes through the tracker's decoder, with the tracker's size limit: over the
    // limit once filled in is `too-large` (413) here, as it would be there.
    let order = Order::decode(Some(&payload), max_bytes).map_err(|reason| {
        let mut problem = Problem::rejected(&reason);
        if let RejectReason::TooLarge { bytes, max_bytes } = reason {
            problem.detail = format!(
                "the order would be {bytes} bytes on the topic once its missing fields are \
                 filled in, over the {max_bytes}-byte limit (MAX_ORDER_BYTES)"
            );
        }
        problem
    })?;
    Ok(Accepted {
        order,
        payload,
        filled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAX: usize = 64 * 1024;

    fn defaults() -> Defaults {
        Defaults {
            order_id: Uuid::parse_str("4f7c1d2e-0000-4000-8000-000000000001").expect("uuid"),
            created_at: DateTime::parse_from_rfc3339("2026-11-21T17:00:00Z")
                .expect("time")
                .with_timezone(&Utc),
        }
    }

    fn minimal() -> Value {
        json!({
            "customer_id": "customer-7",
            "restaurant": "Chez Luigi",
            "delivery_address": {"street": "1 rue de la Paix", "postal_code": "75002", "city": "Paris"},
            "items": [{"sku": "PIZ-MAR", "name": "Pizza Margherita", "quantity": 2, "unit_price_cents": 950}],
            "total_cents": 1900,
            "currency": "EUR"
        })
    }

    fn prepare_value(value: &Value) -> Result<Accepted, Problem> {
        prepare(value.to_string().as_bytes(), MAX, defaults())
    }

    fn refusal(value: &Value) -> (StatusCode, &'static str) {
        let problem = prepare_value(value).expect_err("must be refused");
        (problem.status, problem.reason)
    }

    #[test]
    fn missing_id_time_and_version_are_filled_in_and_the_result_decodes() {
        let accepted = prepare_value(&minimal()).expect("accepted");
        assert_eq!(
            accepted.filled,
            ["schema_version", "order_id", "created_at"]
        );
        assert_eq!(accepted.order.order_id, defaults().order_id);
        assert_eq!(accepted.order.created_at, defaults().created_at);
        assert_eq!(accepted.order.schema_version, SCHEMA_VERSION);
        let again = Order::decode(Some(&accepted.payload), MAX).expect("the payload decodes");
        assert_eq!(again, accepted.order);
    }

    #[test]
    fn fields_the_client_sent_are_kept_as_sent_including_unknown_ones() {
        let mut value = minimal();
        value["order_id"] = json!("0b6f3d52-8a57-4c55-9a4b-8d0f3c1f2e10");
        value["created_at"] = json!("2026-11-21T12:30:00+02:00");
        value["schema_version"] = json!(1);
        value["loyalty_points"] = json!(12);
        let accepted = prepare_value(&value).expect("accepted");
        assert!(accepted.filled.is_empty());
        let written: Value = serde_json::from_slice(&accepted.payload).expect("json");
        assert_eq!(written, value, "nothing changed, nothing dropped");
    }

    #[test]
    fn invalid_orders_get_422_with_the_dead_letter_reason() {
        let mut value = minimal();
        value["total_cents"] = json!(1899);
        assert_eq!(
            refusal(&value),
            (StatusCode::UNPROCESSABLE_ENTITY, "total-mismatch")
        );
        let mut value = minimal();
        value["items"] = json!([]);
        value["total_cents"] = json!(0);
        assert_eq!(
            refusal(&value),
            (StatusCode::UNPROCESSABLE_ENTITY, "no-items")
        );
        let mut value = minimal();
        value["items"][0]["quantity"] = json!(0);
        value["total_cents"] = json!(0);
        assert_eq!(
            refusal(&value),
            (StatusCode::UNPROCESSABLE_ENTITY, "non-positive-quantity")
        );
        let mut value = minimal();
        value["schema_version"] = json!(2);
        assert_eq!(
            refusal(&value),
            (StatusCode::UNPROCESSABLE_ENTITY, "unknown-schema-version")
        );
        let mut value = minimal();
        value.as_object_mut().expect("object").remove("customer_id");
        assert_eq!(
            refusal(&value),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-field")
        );
        assert_eq!(
            refusal(&json!([1, 2])),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-field")
        );
    }

    #[test]
    fn a_null_in_a_fillable_field_is_judged_not_filled() {
        let mut value = minimal();
        value["order_id"] = Value::Null;
        assert_eq!(
            refusal(&value),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-field")
        );
    }

    #[test]
    fn what_the_contract_forbids_is_refused_as_an_invalid_field() {
        let mut value = minimal();
        value["customer_id"] = json!("c".repeat(129));
        assert_eq!(
            refusal(&value),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-field")
        );
        let mut value = minimal();
        // The uuid crate reads the simple form; the schema asks for the hyphenated one.
        value["order_id"] = json!("0b6f3d528a574c559a4b8d0f3c1f2e10");
        assert_eq!(
            refusal(&value),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-field")
        );
        let mut value = minimal();
        // chrono reads a space for the `T`; RFC 3339 does not.
        value["created_at"] = json!("2026-11-21 17:00:00Z");
        assert_eq!(
            refusal(&value),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-field")
        );
    }

    /// The intake has no schema validator of its own: everything it accepts must be valid under
    /// the published schema because the decoder is at least as strict.
    #[test]
    fn every_accepted_request_is_written_as_an_order_the_json_schema_accepts() {
        let schema: Value =
            serde_json::from_str(order_contract::ORDER_SCHEMA_JSON).expect("schema is JSON");
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("schema compiles");
        type Edit = fn(&mut Value);
        let edits: &[Edit] = &[
            |_| {},
            |v| v["order_id"] = json!("0B6F3D52-8A57-4C55-9A4B-8D0F3C1F2E10"),
            |v| v["order_id"] = json!("0b6f3d528a574c559a4b8d0f3c1f2e10"),
            |v| v["order_id"] = json!("{0b6f3d52-8a57-4c55-9a4b-8d0f3c1f2e10}"),
            |v| v["order_id"] = json!("urn:uuid:0b6f3d52-8a57-4c55-9a4b-8d0f3c1f2e10"),
            |v| v["created_at"] = json!("2026-11-21T17:00:00.123+05:30"),
            |v| v["created_at"] = json!("2026-11-21t17:00:00z"),
            |v| v["created_at"] = json!("2026-11-21 17:00:00Z"),
            |v| v["created_at"] = json!("2026-11-21T17:00:00+0530"),
            |v| v["customer_id"] = json!("c".repeat(128)),
            |v| v["customer_id"] = json!("c".repeat(129)),
            |v| v["customer_id"] = json!("\u{3000}"),
            |v| v["restaurant"] = json!("\t"),
            |v| v["restaurant"] = Value::Null,
            |v| v["items"][0]["sku"] = json!(""),
            |v| v["items"][0]["quantity"] = json!(2.0),
            |v| v["currency"] = json!("eur"),
            |v| v["loyalty_points"] = json!(3),
        ];
        let mut accepted = 0;
        for (index, edit) in edits.iter().enumerate() {
            let mut value = minimal();
            edit(&mut value);
            if let Ok(order) = prepare_value(&value) {
                accepted += 1;
                let written: Value = serde_json::from_slice(&order.payload).expect("JSON");
                assert!(
                    validator.is_valid(&written),
                    "edit #{index}: the intake accepted {value} but the schema refuses it"
                );
            }
        }
        // Not a vacuous pass: the valid variants were accepted.
        assert!(accepted >= 6, "only {accepted} variants accepted");
    }

    #[test]
    fn text_that_is_not_json_is_a_bad_request() {
        let reason = |body: &[u8]| {
            let problem = prepare(body, MAX, defaults()).expect_err("refused");
            assert_eq!(problem.status, StatusCode::BAD_REQUEST);
            problem.reason
        };
        assert_eq!(reason(b"{\"customer_id\": "), "not-json");
        assert_eq!(reason(b"\xff\xfe"), "invalid-utf8");
        assert_eq!(reason(b""), "empty");
    }

    #[test]
    fn an_order_that_outgrows_the_limit_when_filled_in_is_too_large() {
        let compact = serde_json::to_vec(&minimal()).expect("json").len();
        // Fits as sent, with a few bytes to spare: the filled-in fields take more than that.
        let limit = compact + 10;
        let problem = prepare(minimal().to_string().as_bytes(), limit, defaults())
            .expect_err("too large once filled in");
        assert_eq!(
            (problem.status, problem.reason),
            (StatusCode::PAYLOAD_TOO_LARGE, "too-large")
        );
        assert!(problem.detail.contains("filled in"), "{}", problem.detail);
        let problem = prepare(minimal().to_string().as_bytes(), compact - 1, defaults())
            .expect_err("too large as sent");
        assert_eq!(problem.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn only_json_is_accepted() {
        let header = |text: &'static str| HeaderValue::from_static(text);
        assert!(check_content_type(Some(&header("application/json"))).is_ok());
        assert!(check_content_type(Some(&header("Application/JSON; charset=utf-8"))).is_ok());
        for refused in [
            Some(header("text/plain")),
            Some(header("application/x-www-form-urlencoded")),
            None,
        ] {
            let problem = check_content_type(refused.as_ref()).expect_err("refused");
            assert_eq!(problem.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
    }

    #[test]
    fn a_problem_is_rfc_9457_json_with_its_reason() {
        let problem = Problem::rejected(&RejectReason::NoItems);
        let body: Value = serde_json::from_slice(&problem.to_json()).expect("json");
        assert_eq!(body["status"], 422);
        assert_eq!(body["reason"], "no-items");
        assert_eq!(body["title"], "Unprocessable Entity");
        assert_eq!(body["type"], "about:blank");
    }
}
