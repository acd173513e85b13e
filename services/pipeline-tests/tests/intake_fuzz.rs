//! The HTTP intake under a schema-driven fuzzer the project did not write: schemathesis (pinned in
//! `python/requirements.txt`, installed by the harness into `target/test-python/`, see
//! `pipeline_tests::python`) reads the intake's committed OpenAPI document (the one `GET /openapi.json`
//! serves; read from the file so that schemathesis tests that operation too, where it skips the
//! one it loaded the document from) and throws valid and invalid requests at the real producer binary, in front of a real,
//! healthy broker. Every check runs (`python/schemathesis.toml` says where the expected
//! statuses differ from its defaults): no 5xx, and no answer whose status, content type,
//! headers or body break the document.
//!
//! The run is bounded: a fixed number of examples per operation, and a seed that is printed.
//! Repeat a run with `INTAKE_FUZZ_SEED=<seed>`; `INTAKE_FUZZ_EXAMPLES` changes the count.

use order_contract::{ORDER_SCHEMA_JSON, Order};
use pipeline_tests::python::{python_client, python_dir};
use pipeline_tests::{Pipeline, free_port, read_topic, stop_gracefully, unique_name};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DEFAULT_EXAMPLES: u32 = 100;

fn setting(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let pipeline = Pipeline::new(3);
    let port = free_port();
    let mut producer = pipeline
        .producer()
        .env("INTAKE_PORT", port)
        .env("GENERATE_ORDERS", "false")
        .spawn();
    assert!(
        producer.wait_for_event("ready", Duration::from_secs(30)),
        "{}",
        producer.report()
    );

    let seed: u64 = setting("INTAKE_FUZZ_SEED")
        .map(|text| {
            text.trim()
                .parse()
                .expect("INTAKE_FUZZ_SEED is a whole number")
        })
        // Any seed will do; a new one each run explores more, and it is printed to repeat it.
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0 >> 1);
    let examples: u32 = setting("INTAKE_FUZZ_EXAMPLES")
        .map(|text| {
            text.trim()
                .parse()
                .expect("INTAKE_FUZZ_EXAMPLES is a whole number")
        })
        .unwrap_or(DEFAULT_EXAMPLES);
    // Straight to stderr rather than through eprintln!, which the test harness captures: the
    // seed is printed whether the test passes or fails.
    let _ = writeln!(
        std::io::stderr().lock(),
        "schemathesis: seed {seed}, at most {examples} examples per operation \
         (repeat with INTAKE_FUZZ_SEED={seed})"
    );

    let schemathesis = python_client().with_file_name("st");
    // Its own working directory, so nothing it writes lands in the repository.
    let scratch = std::env::temp_dir().join(unique_name("schemathesis"));
    std::fs::create_dir_all(&scratch).expect("a scratch directory");
    let base = format!("http://127.0.0.1:{port}");
    let output = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(python_dir().join("schemathesis.toml"))
        .arg("run")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../order-producer/openapi/orders.v1.json"))
        .args(["--url", &base])
        .args(["--checks", "all", "--workers", "1"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--generation-database", "none", "--request-timeout", "20"])
        .arg("--no-color")
        .current_dir(&scratch)
        .output()
        .unwrap_or_else(|err| panic!("run {}: {err}", schemathesis.display()));
    let _ = std::fs::remove_dir_all(&scratch);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "schemathesis found problems (seed {seed}): see its report above\n{}",
        producer.report()
    );
    // It did post orders: the intake logged an answer for each.
    let posted = producer
        .events()
        .iter()
        .filter(|e| e.target == "order_producer::intake")
        .count();
    eprintln!("the intake answered {posted} fuzzed POST /orders");
    assert!(
        posted >= examples as usize,
        "schemathesis posted only {posted} orders"
    );

    // Whatever the fuzzer got accepted is an order the tracker tracks and the contract allows.
    let schema: serde_json::Value = serde_json::from_str(ORDER_SCHEMA_JSON).expect("schema");
    let contract = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the contract compiles");
    let accepted = read_topic(&pipeline.bootstrap(), &pipeline.orders, 0);
    for record in &accepted {
        let value = record.value.as_deref().expect("a value");
        Order::decode(Some(value), 65536).unwrap_or_else(|reason| {
            panic!(
                "the intake wrote what the tracker dead-letters ({reason}): {}",
                String::from_utf8_lossy(value)
            )
        });
        let json: serde_json::Value = serde_json::from_slice(value).expect("json");
        assert!(
            contract.is_valid(&json),
            "the intake wrote what the contract refuses: {json}"
        );
    }
    eprintln!("{} fuzzed orders were accepted and written", accepted.len());
    stop_gracefully(&mut producer);
}
