//! Scenario 5: a wrong environment variable stops a service at start with one clear line that
//! names the variable and what it accepts, and a non-zero exit; no panic, no backtrace.

use std::time::Duration;
use test_broker::Service;

/// Runs `binary` with `vars` and returns (exit code, stderr).
fn start_with(binary: &str, vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut builder = Service::with_env_only(binary);
    for (key, value) in vars {
        builder = builder.env(key, value);
    }
    let mut service = builder.spawn();
    let status = service
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{binary} with {vars:?} did not stop\n{}", service.report()));
    (status.code(), service.stderr())
}

fn assert_refused(binary: &str, vars: &[(&str, &str)], variable: &str, accepts: &str) {
    let (code, stderr) = start_with(binary, vars);
    assert_eq!(code, Some(78), "{binary} {vars:?}: exit code\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{binary} {vars:?}: exactly one line\n{stderr}"
    );
    let line = lines[0];
    assert!(
        line.starts_with(&format!("{binary}: invalid configuration: {variable}")),
        "{line}"
    );
    assert!(
        line.contains(accepts),
        "{binary} {vars:?}: says what it accepts\n{line}"
    );
    assert!(
        !line.contains("panicked") && !line.contains("backtrace"),
        "{line}"
    );
}

#[test]
fn the_producer_refuses_bad_values_naming_the_variable() {
    assert_refused(
        "order-producer",
        &[("ORDERS_PER_SECOND", "fast")],
        "ORDERS_PER_SECOND",
        "a number >= 0",
    );
    assert_refused(
        "order-producer",
        &[("ORDERS_PER_SECOND", "-2")],
        "ORDERS_PER_SECOND",
        "a number >= 0",
    );
    assert_refused(
        "order-producer",
        &[("ORDER_COUNT", "lots")],
        "ORDER_COUNT",
        "a whole number >= 1",
    );
    assert_refused(
        "order-producer",
        &[("ORDER_COUNT", "0")],
        "ORDER_COUNT",
        "a whole number >= 1",
    );
    assert_refused(
        "order-producer",
        &[("KAFKA_BOOTSTRAP_SERVERS", "")],
        "KAFKA_BOOTSTRAP_SERVERS",
        "host:port",
    );
    assert_refused(
        "order-producer",
        &[("HEALTH_PORT", "99999")],
        "HEALTH_PORT",
        "TCP port",
    );
    assert_refused(
        "order-producer",
        &[("FLUSH_TIMEOUT_SECS", "0")],
        "FLUSH_TIMEOUT_SECS",
        "seconds >= 1",
    );
    assert_refused(
        "order-producer",
        &[("LOG_FORMAT", "xml")],
        "LOG_FORMAT",
        "`json`",
    );
}

#[test]
fn the_tracker_refuses_bad_values_naming_the_variable() {
    assert_refused(
        "order-tracker",
        &[("START_FROM", "yesterday")],
        "START_FROM",
        "`earliest`",
    );
    assert_refused(
        "order-tracker",
        &[("START_FROM", "0:-5")],
        "START_FROM",
        "partition:offset",
    );
    assert_refused(
        "order-tracker",
        &[("ALERT_BURST_COUNT", "-1")],
        "ALERT_BURST_COUNT",
        "a whole number >= 1",
    );
    assert_refused(
        "order-tracker",
        &[("STATS_INTERVAL_SECS", "often")],
        "STATS_INTERVAL_SECS",
        "seconds >= 1",
    );
    assert_refused(
        "order-tracker",
        &[("KAFKA_BOOTSTRAP_SERVERS", " ")],
        "KAFKA_BOOTSTRAP_SERVERS",
        "host:port",
    );
    assert_refused(
        "order-tracker",
        &[("GROUP_ID", "")],
        "GROUP_ID",
        "non-empty",
    );
    assert_refused(
        "order-tracker",
        &[("ORDERS_TOPIC", "no spaces allowed")],
        "ORDERS_TOPIC",
        "topic name",
    );
}

#[test]
fn topic_init_refuses_bad_values_naming_the_variable() {
    assert_refused(
        "topic-init",
        &[("TOPIC_PARTITIONS", "0")],
        "TOPIC_PARTITIONS",
        "1 to 10000",
    );
    assert_refused(
        "topic-init",
        &[("TOPIC_PARTITIONS", "six")],
        "TOPIC_PARTITIONS",
        "1 to 10000",
    );
    assert_refused(
        "topic-init",
        &[("TOPIC_RETENTION_MS", "-7")],
        "TOPIC_RETENTION_MS",
        "-1 to keep",
    );
    assert_refused(
        "topic-init",
        &[("CONNECT_MAX_ATTEMPTS", "0")],
        "CONNECT_MAX_ATTEMPTS",
        ">= 1",
    );
}

#[test]
fn a_setting_that_would_break_delivery_guarantees_is_refused_without_echoing_secrets() {
    let (code, stderr) = start_with(
        "order-producer",
        &[
            ("KAFKA_ENABLE_IDEMPOTENCE", "false"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
        ],
    );
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("KAFKA_ENABLE_IDEMPOTENCE"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let (code, stderr) = start_with("order-tracker", &[("KAFKA_NOT_A_PROPERTY", "1")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("KAFKA_NOT_A_PROPERTY"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn secrets_never_reach_the_logs() {
    // An unreachable broker: the services start, log their settings, and are stopped.
    for binary in ["order-producer", "order-tracker"] {
        let mut service = Service::builder(binary, "127.0.0.1:1")
            .env("HEALTH_PORT", test_broker::free_port())
            .env("KAFKA_SASL_USERNAME", "alice")
            .env("KAFKA_SASL_PASSWORD", "hunter2-secret")
            .spawn();
        assert!(
            service.wait_for_message("starting", Duration::from_secs(10)),
            "{}",
            service.report()
        );
        std::thread::sleep(Duration::from_millis(500));
        service.terminate();
        service.wait_exit(Duration::from_secs(20));
        let everything = format!("{}\n{}", service.stdout().join("\n"), service.stderr());
        assert!(
            everything.contains("sasl.password=[redacted]"),
            "{binary}: {everything}"
        );
        assert!(
            !everything.contains("hunter2-secret"),
            "{binary} leaked the password"
        );
    }
}
