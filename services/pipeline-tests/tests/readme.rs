//! The README's variable tables and `deploy/example.env` say exactly what the declarations in
//! the code say (`service_runtime::config` and each service's `config::VARIABLES`): the same
//! variables, in the same order, with the defaults the code uses and the same "accepts" text.
//! On a mismatch the failure prints what to paste.

use service_runtime::config::{COMMON_VARIABLES, Variable, Variables};
use std::collections::BTreeMap;

/// The README tables under `## Configuration`, by `###` heading, and what each must list.
const TABLES: &[(&str, Variables)] = &[
    ("All services", COMMON_VARIABLES),
    ("order-producer", order_producer::config::VARIABLES),
    ("order-tracker", order_tracker::config::VARIABLES),
    ("topic-init", topic_init::config::VARIABLES),
];

fn repo_file(path: &str) -> String {
    let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("{full}: {err}"))
}

/// The README row a declaration gives.
fn row(variable: &dyn Variable) -> String {
    let default = variable
        .default()
        .map_or_else(|| "(unset)".to_string(), |default| format!("`{default}`"));
    format!(
        "| `{}` | {default} | {} |",
        variable.name(),
        variable.accepts()
    )
}

/// The table rows (after the header and separator) of the `### {heading}` section of the
/// README's `## Configuration` section.
fn readme_rows(readme: &str, heading: &str) -> Vec<String> {
    let configuration = readme
        .split_once("\n## Configuration\n")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .expect("README has a `## Configuration` section");
    let section = configuration
        .split_once(&format!("\n### {heading}\n"))
        .map(|(_, rest)| rest.split("\n### ").next().unwrap_or(rest))
        .unwrap_or_else(|| panic!("README has no `### {heading}` under Configuration"));
    section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_tables_list_exactly_the_declared_variables_defaults_and_accepts() {
    let readme = repo_file("README.md");
    let mut mismatches = Vec::new();
    for (heading, variables) in TABLES {
        let expected: Vec<String> = variables.iter().map(|v| row(*v)).collect();
        if readme_rows(&readme, heading) != expected {
            mismatches.push(format!(
                "### {heading}\n\n| Variable | Default | Accepts |\n| --- | --- | --- |\n{}",
                expected.join("\n")
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "README tables differ from the declarations; they should read:\n\n{}",
        mismatches.join("\n\n")
    );
}

/// `# NAME=value` lines of deploy/example.env.
fn example_env() -> BTreeMap<String, String> {
    let text = repo_file("deploy/example.env");
    let mut entries = BTreeMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.strip_prefix("# ").and_then(|l| l.split_once('=')) else {
            continue;
        };
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            let previous = entries.insert(name.to_string(), value.to_string());
            assert!(previous.is_none(), "example.env lists {name} twice");
        }
    }
    entries
}

/// `NAME: value` lines of docker-compose.yml that set a value (not a pass-through), and
/// `${NAME:-default}` substitutions.
fn compose() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let text = repo_file("docker-compose.yml");
    let mut set = BTreeMap::new();
    for line in text.lines() {
        if let Some((name, value)) = line.trim().split_once(": ")
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        {
            set.insert(name.to_string(), value.trim().to_string());
        }
    }
    let mut substituted = BTreeMap::new();
    for piece in text.split("${").skip(1) {
        if let Some((name, rest)) = piece.split_once(":-")
            && let Some((default, _)) = rest.split_once('}')
        {
            substituted.insert(name.to_string(), default.to_string());
        }
    }
    (set, substituted)
}

#[test]
fn example_env_lists_every_declared_knob_with_the_default_the_code_uses() {
    let example = example_env();
    let (set_by_compose, substituted) = compose();
    let mut expected = BTreeMap::new();
    for variable in TABLES.iter().flat_map(|(_, variables)| variables.iter()) {
        let name = variable.name();
        // `KAFKA_*` is a family, not a knob; the broker address inside the network is fixed by
        // the compose file.
        if name.ends_with('*') || set_by_compose.contains_key(name) {
            continue;
        }
        let value = match variable.default() {
            Some(default) => default.to_string(),
            // No default: the example shows a value, which must be one the service accepts.
            None => {
                let shown = example.get(name).cloned().unwrap_or_default();
                assert!(
                    variable.accepts_value(&shown),
                    "example.env shows {name}={shown:?}, which the service refuses"
                );
                shown
            }
        };
        expected.insert(name.to_string(), value);
    }
    // The compose file's own knobs (images, the host port) with its defaults.
    for name in example.keys() {
        if !expected.contains_key(name)
            && let Some(default) = substituted.get(name)
        {
            expected.insert(name.clone(), default.clone());
        }
    }
    let lines = |entries: &BTreeMap<String, String>| {
        entries
            .iter()
            .map(|(name, value)| format!("# {name}={value}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        lines(&example),
        lines(&expected),
        "deploy/example.env (left) differs from the declarations and docker-compose.yml (right)"
    );
}
