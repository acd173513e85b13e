//! The README documents every environment variable the services read, with its default.

use service_runtime::config::{COMMON_VARIABLES, Variable};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md")
}

fn assert_documented(service: &str, table: &[Variable]) {
    let readme = readme();
    for variable in table {
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| `{}` |", variable.name)))
            .unwrap_or_else(|| panic!("{service}: README has no table row for {}", variable.name));
        // The default's first word (e.g. `604800000` of "604800000 (7 days)") is in the row.
        let default = variable
            .default
            .split_whitespace()
            .next()
            .unwrap_or_default();
        let default = default.trim_matches(|c| c == '(' || c == ')');
        assert!(
            row.contains(default),
            "{service}: the README row of {} does not give its default {default:?}:\n{row}",
            variable.name
        );
    }
}

#[test]
fn every_variable_is_documented_with_its_default() {
    assert_documented("all services", COMMON_VARIABLES);
    assert_documented("order-producer", order_producer::config::VARIABLES);
    assert_documented("order-tracker", order_tracker::config::VARIABLES);
    assert_documented("topic-init", topic_init::config::VARIABLES);
}
