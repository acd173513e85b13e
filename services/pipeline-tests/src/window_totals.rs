//! Window totals as the tests compare them: what the orders say (every order counted in the
//! window of its `created_at`) against what `order-tracker window-totals --json` prints. Shared
//! by the broker tests (`tests/window_stats.rs`) and the compose end-to-end test, so that both
//! prove the same thing the same way.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Orders and revenue per currency, per window start.
pub type Totals = BTreeMap<DateTime<Utc>, (u64, BTreeMap<String, i64>)>;

/// The start of the tumbling window of `window_secs` that holds `at`.
pub fn window_start(at: DateTime<Utc>, window_secs: i64) -> DateTime<Utc> {
    let millis = at.timestamp_millis();
    let length = window_secs * 1000;
    DateTime::from_timestamp_millis(millis - millis.rem_euclid(length)).expect("time")
}

/// What the statistics should say about `orders` (order JSON values): each counted in the
/// window of its `created_at`, revenue per currency. An order without those fields is an error.
pub fn expected_totals<'a>(
    orders: impl IntoIterator<Item = &'a serde_json::Value>,
    window_secs: i64,
) -> Result<Totals, String> {
    let mut totals = Totals::new();
    for order in orders {
        let created: DateTime<Utc> = order["created_at"]
            .as_str()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("no created_at in {order}"))?;
        let currency = order["currency"]
            .as_str()
            .ok_or_else(|| format!("no currency in {order}"))?;
        let cents = order["total_cents"]
            .as_i64()
            .ok_or_else(|| format!("no total_cents in {order}"))?;
        let window = totals
            .entry(window_start(created, window_secs))
            .or_default();
        window.0 += 1;
        *window.1.entry(currency.to_string()).or_default() += cents;
    }
    Ok(totals)
}

/// What `window-totals --json` printed (one object per window), for `group`: the totals, and
/// the windows it calls closed (`closed`: every partition with a part of it closed it).
pub fn parse_window_totals(
    json_lines: &str,
    group: &str,
) -> Result<(Totals, BTreeSet<DateTime<Utc>>), String> {
    let mut totals = Totals::new();
    let mut ended = BTreeSet::new();
    for line in json_lines.lines().filter(|line| !line.trim().is_empty()) {
        let window: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not a JSON line ({e}): {line}"))?;
        if window["group"] != group {
            continue;
        }
        let start: DateTime<Utc> = window["window_start"]
            .as_str()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("no window_start in {line}"))?;
        let orders = window["orders"]
            .as_u64()
            .ok_or_else(|| format!("no orders in {line}"))?;
        let revenue = window["revenue_cents"]
            .as_object()
            .ok_or_else(|| format!("no revenue_cents in {line}"))?
            .iter()
            .map(|(currency, cents)| Ok((currency.clone(), cents.as_i64().ok_or(line)?)))
            .collect::<Result<BTreeMap<String, i64>, &str>>()
            .map_err(|line| format!("revenue not in cents in {line}"))?;
        if window["closed"]
            .as_bool()
            .ok_or_else(|| format!("no closed in {line}"))?
        {
            ended.insert(start);
        }
        totals.insert(start, (orders, revenue));
    }
    Ok((totals, ended))
}
