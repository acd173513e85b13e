//! The rows of the benchmark and how each one is run; see the crate header for why.

use crate::process::{Finished, Measured, Running};
use crate::report::{self, IntakeRow, LatencyRow, Series, ThroughputRow};
use crate::startup::{self, LatencySample};
use pipeline_tests::{TestBroker, binary_path, create_topics, free_port, unique_name};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Orders per throughput run.
    pub orders: u64,
    /// Interleaved rounds; each figure is the median over them.
    pub rounds: usize,
    /// Orders in the backlog the tracker catches up in the memory rows (0: skip them).
    pub backlog: u64,
    /// Seconds of each latency run.
    pub latency_secs: u64,
    /// Seconds at the start of each latency run whose orders do not count towards its
    /// percentiles (at most half the run; see [`crate::startup`]).
    pub latency_warmup_secs: f64,
    /// Orders per second of the latency runs.
    pub latency_rate: f64,
    /// Orders posted to the HTTP intake per run (0: skip those rows).
    pub intake_orders: u64,
    /// Concurrent HTTP clients of the intake runs.
    pub intake_concurrency: usize,
    /// Where each run's output is kept.
    pub out_dir: PathBuf,
}

/// Partitions of every benchmark topic: the compose default (`TOPIC_PARTITIONS`).
const PARTITIONS: i32 = 6;

// Row labels, as printed.
const PRODUCER: &str = "`order-producer`, `ORDERS_PER_SECOND=0`, `RUST_LOG=warn`";
const PRODUCER_LOGGING: &str = "`order-producer`, delivery lines on (`RUST_LOG=info`, to a file)";
const PRODUCE_LOOP: &str = "thinnest rdkafka produce loop";
const PRODUCE_LOOP_HEADERS: &str = "thinnest produce loop with the contract's two headers";
const PYTHON_PRODUCER: &str = "seed-style Python producer";
const TRACKER: &str = "`order-tracker`, new group, catching up, `RUST_LOG=warn`";
const TRACKER_LOGGING: &str = "`order-tracker`, order lines on (`RUST_LOG=info`, to a file)";
const CONSUME_LOOP: &str = "thinnest rdkafka consume loop";
const PYTHON_CONSUMER: &str = "seed-style Python consumer";
const BACKLOG_TRACKER: &str = "`order-tracker`, the services' fetch and queue limits";
const BACKLOG_TRACKER_UNBOUNDED: &str = "`order-tracker`, librdkafka's default prefetch";
const BACKLOG_LOOP: &str = "thinnest rdkafka consume loop, the services' limits";
const SERVICES_PAIR: &str = "`order-producer` -> `order-tracker` (order lines on, as in compose)";
const LOOPS_PAIR: &str = "thinnest produce loop -> thinnest consume loop";
const PYTHON_PAIR: &str = "seed-style Python producer -> Python consumer";
const INTAKE: &str = "`order-producer` HTTP intake, `GENERATE_ORDERS=false`, `RUST_LOG=warn`";

/// librdkafka's own defaults for the consumer's prefetch (`CONFIGURATION.md`), for the row
/// that shows what bounding it in `service_runtime::kafka` costs.
const LIBRDKAFKA_DEFAULT_PREFETCH: &[(&str, &str)] = &[
    ("KAFKA_QUEUED_MAX_MESSAGES_KBYTES", "65536"),
    ("KAFKA_QUEUED_MIN_MESSAGES", "100000"),
    ("KAFKA_FETCH_MAX_BYTES", "52428800"),
    ("KAFKA_MAX_PARTITION_FETCH_BYTES", "1048576"),
    ("KAFKA_FETCH_QUEUE_BACKOFF_MS", "1000"),
];

type Result<T, E = String> = std::result::Result<T, E>;

/// Every row's figures, for the report.
struct Measurements {
    producers: BTreeMap<String, ThroughputRow>,
    consumers: BTreeMap<String, ThroughputRow>,
    backlog: BTreeMap<String, ThroughputRow>,
    latency: BTreeMap<String, LatencyRow>,
    intake: IntakeRow,
}

/// Everything the runs share: the broker, the programs, the settings.
struct Bench {
    options: Options,
    broker: TestBroker,
    producer_bin: PathBuf,
    tracker_bin: PathBuf,
    produce_loop_bin: PathBuf,
    consume_loop_bin: PathBuf,
    python: PathBuf,
    python_script: PathBuf,
    run_counter: usize,
    payload_bytes: BTreeMap<&'static str, Series>,
}

/// Runs the whole benchmark and returns the report (Markdown).
pub fn run(options: Options) -> Result<String> {
    std::fs::create_dir_all(&options.out_dir).map_err(|err| err.to_string())?;
    let load_before = load_average();
    let examples = std::env::current_exe()
        .map_err(|err| err.to_string())?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("no directory for the benchmark programs")?;
    progress("preparing the Python clients (a virtual environment under target/)");
    let python = pipeline_tests::python::python_client();
    progress("starting the test broker");
    let mut bench = Bench {
        broker: TestBroker::start(),
        producer_bin: binary_path("order-producer"),
        tracker_bin: binary_path("order-tracker"),
        produce_loop_bin: examples.join("thin_produce_loop"),
        consume_loop_bin: examples.join("thin_consume_loop"),
        python,
        python_script: Path::new(env!("CARGO_MANIFEST_DIR")).join("python/seed_clients.py"),
        run_counter: 0,
        payload_bytes: BTreeMap::new(),
        options,
    };
    let producers = bench.producer_rounds()?;
    let (consumers, backlog) = bench.consumer_rounds()?;
    let latency = bench.latency_rounds()?;
    let intake = bench.intake_rounds()?;
    let load_after = load_average();
    Ok(bench.report(
        &Measurements {
            producers,
            consumers,
            backlog,
            latency,
            intake,
        },
        load_before,
        load_after,
    ))
}

fn progress(text: &str) {
    eprintln!("bench: {text}");
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Adds one run's rate, and its process's peak memory and CPU per order, to `row`.
fn push_run(row: &mut ThroughputRow, count: u64, per_second: f64, finished: &Finished) {
    row.orders_per_sec.push(per_second);
    row.peak_rss_mb.push(finished.peak_rss_bytes as f64 / 1e6);
    row.cpu_us_per_order
        .push(finished.cpu_secs * 1e6 / count as f64);
}

/// `count` orders over `elapsed`.
fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The last JSON line a benchmark program printed.
fn last_json(finished: &Finished) -> Result<serde_json::Value> {
    finished
        .stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| format!("no result line in {:?}", finished.stdout))
}

impl Bench {
    fn bootstrap(&self) -> String {
        self.broker.bootstrap()
    }

    /// A fresh orders topic (and its dead-letter topic), made by the real `topic-init`. The
    /// trackers' window stats all go to the default stats topic, which the first call makes.
    fn new_topic(&self) -> String {
        let topic = unique_name("bench");
        create_topics(
            &self.bootstrap(),
            &topic,
            &format!("{topic}.dlq"),
            service_runtime::config::WINDOW_STATS_TOPIC
                .default
                .unwrap_or("order-stats"),
            PARTITIONS,
        );
        topic
    }

    /// A unique file label for one run's output.
    fn label(&mut self, what: &str) -> String {
        self.run_counter += 1;
        format!("{:03}-{what}", self.run_counter)
    }

    fn producer_env(&self) -> Vec<(String, String)> {
        vec![("KAFKA_BOOTSTRAP_SERVERS".into(), self.bootstrap())]
    }

    /// Consumers join quickly on tansu with a short session (a join waits about half of it).
    fn consumer_env(&self) -> Vec<(String, String)> {
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS".into(), self.bootstrap()),
            ("KAFKA_SESSION_TIMEOUT_MS".into(), "6000".into()),
            ("KAFKA_HEARTBEAT_INTERVAL_MS".into(), "500".into()),
        ]
    }

    /// The services' librdkafka properties as JSON, for the Python clients.
    fn python_config(&self, consumer_group: Option<&str>) -> Result<String> {
        let env = match consumer_group {
            Some(_) => self.consumer_env(),
            None => self.producer_env(),
        };
        let settings = crate::kafka_settings(&env).map_err(|err| err.to_string())?;
        let config = match consumer_group {
            Some(group) => settings.consumer("seed-python-consumer", group),
            None => settings.producer("seed-python-producer"),
        }
        .map_err(|err| err.to_string())?;
        let map: serde_json::Map<String, serde_json::Value> = config
            .config_map()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
            .collect();
        Ok(serde_json::Value::Object(map).to_string())
    }

    // ---------------------------------------------------------------- producers

    fn spawn_producer(&mut self, topic: &str, count: u64, rate: f64, logging: bool) -> Running {
        let label = self.label("order-producer");
        Measured::new(&self.producer_bin)
            .envs(&self.producer_env())
            .env("ORDERS_TOPIC", topic)
            .env("DEAD_LETTER_TOPIC", format!("{topic}.dlq"))
            .env("ORDER_COUNT", count)
            .env("ORDERS_PER_SECOND", rate)
            .env("HEALTH_PORT", free_port())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", if logging { "info" } else { "warn" })
            .spawn(&self.options.out_dir, &label)
    }

    fn spawn_produce_loop(&mut self, topic: &str, count: u64, rate: f64, headers: bool) -> Running {
        let label = self.label("thin-produce-loop");
        let mut command = Measured::new(&self.produce_loop_bin)
            .envs(&self.producer_env())
            .arg("--topic")
            .arg(topic)
            .arg("--count")
            .arg(count);
        if rate > 0.0 {
            command = command.arg("--rate").arg(rate);
        }
        if headers {
            command = command.arg("--headers");
        }
        command.spawn(&self.options.out_dir, &label)
    }

    fn spawn_python_producer(&mut self, topic: &str, count: u64, rate: f64) -> Result<Running> {
        let label = self.label("python-producer");
        let config = self.python_config(None)?;
        Ok(Measured::new(&self.python)
            .inherit_env()
            .arg(self.python_script.display())
            .arg("produce")
            .arg("--config")
            .arg(config)
            .arg("--topic")
            .arg(topic)
            .arg("--count")
            .arg(count)
            .arg("--rate")
            .arg(rate)
            .spawn(&self.options.out_dir, &label))
    }

    /// Waits for a producer run and checks that every order was delivered.
    fn finish_producer(
        &mut self,
        running: Running,
        row: &'static str,
        count: u64,
    ) -> Result<Finished> {
        let err_tail = running.stderr_tail();
        let finished = running.wait(Duration::from_secs(120 + count / 1000))?;
        if !finished.success {
            return Err(format!("{row} failed:\n{err_tail}\n{}", finished.stdout));
        }
        if row != PRODUCER && row != PRODUCER_LOGGING {
            let result = last_json(&finished)?;
            if result["delivered"].as_u64() != Some(count) {
                return Err(format!(
                    "{row} delivered {} of {count}",
                    result["delivered"]
                ));
            }
            if let Some(bytes) = result["payload_bytes"].as_f64() {
                self.payload_bytes.entry(row).or_default().push(bytes);
            }
        }
        Ok(finished)
    }

    /// One flat-out producer run into a fresh topic. Its headline rate is the steady rate
    /// read from the topic's CreateTimes afterwards ([`startup::steady_rate`]); the rate over
    /// the process's whole wall time is kept beside it.
    fn produce_once(
        &mut self,
        row: &'static str,
        count: u64,
        data: &mut BTreeMap<String, ThroughputRow>,
    ) -> Result<()> {
        let topic = self.new_topic();
        let running = match row {
            PRODUCER => self.spawn_producer(&topic, count, 0.0, false),
            PRODUCER_LOGGING => self.spawn_producer(&topic, count, 0.0, true),
            PRODUCE_LOOP => self.spawn_produce_loop(&topic, count, 0.0, false),
            PRODUCE_LOOP_HEADERS => self.spawn_produce_loop(&topic, count, 0.0, true),
            _ => self.spawn_python_producer(&topic, count, 0.0)?,
        };
        let finished = self.finish_producer(running, row, count)?;
        let created: Vec<i64> = create_times(&self.bootstrap(), &topic, count)?
            .into_values()
            .collect();
        if created.len() as u64 != count {
            return Err(format!(
                "{row}: read back {} of {count} orders' CreateTimes",
                created.len()
            ));
        }
        let steady = startup::steady_rate(&created);
        let whole_run = rate(count, finished.wall);
        let entry = data.entry(row.to_string()).or_default();
        push_run(entry, count, steady, &finished);
        entry.whole_run_orders_per_sec.push(whole_run);
        progress(&format!(
            "{row}: steady {} orders/s ({} over the whole run), {:.0} MB",
            report::thousands(steady),
            report::thousands(whole_run),
            finished.peak_rss_bytes as f64 / 1e6
        ));
        Ok(())
    }

    fn producer_rounds(&mut self) -> Result<BTreeMap<String, ThroughputRow>> {
        let rows = [
            PRODUCER,
            PRODUCE_LOOP,
            PYTHON_PRODUCER,
            PRODUCER_LOGGING,
            PRODUCE_LOOP_HEADERS,
        ];
        let mut data = BTreeMap::new();
        for round in 0..self.options.rounds {
            progress(&format!(
                "producers, round {}/{}",
                round + 1,
                self.options.rounds
            ));
            for i in 0..rows.len() {
                let row = rows[(i + round) % rows.len()];
                self.produce_once(row, self.options.orders, &mut data)?;
            }
        }
        Ok(data)
    }

    // ---------------------------------------------------------------- consumers

    fn spawn_tracker(
        &mut self,
        topic: &str,
        logging: bool,
        extra: &[(&str, &str)],
    ) -> (Running, u16) {
        let label = self.label("order-tracker");
        let port = free_port();
        let mut command = Measured::new(&self.tracker_bin)
            .envs(&self.consumer_env())
            .env("ORDERS_TOPIC", topic)
            .env("DEAD_LETTER_TOPIC", format!("{topic}.dlq"))
            .env("GROUP_ID", unique_name("bench-tracker"))
            .env("START_FROM", "earliest")
            .env("HEALTH_PORT", port)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", if logging { "info" } else { "warn" });
        for (key, value) in extra {
            command = command.env(key, value);
        }
        (command.spawn(&self.options.out_dir, &label), port)
    }

    fn spawn_consume_loop(
        &mut self,
        topic: &str,
        count: u64,
        latency: bool,
        extra: &[(&str, &str)],
    ) -> Running {
        let label = self.label("thin-consume-loop");
        let mut command = Measured::new(&self.consume_loop_bin)
            .envs(&self.consumer_env())
            .arg("--topic")
            .arg(topic)
            .arg("--group")
            .arg(unique_name("bench-loop"))
            .arg("--count")
            .arg(count);
        if latency {
            command = command.arg("--latency");
        }
        for (key, value) in extra {
            command = command.env(key, value);
        }
        command.spawn(&self.options.out_dir, &label)
    }

    fn spawn_python_consumer(&mut self, topic: &str, count: u64, latency: bool) -> Result<Running> {
        let label = self.label("python-consumer");
        let config = self.python_config(Some(&unique_name("bench-python")))?;
        let mut command = Measured::new(&self.python)
            .inherit_env()
            .arg(self.python_script.display())
            .arg("consume")
            .arg("--config")
            .arg(config)
            .arg("--topic")
            .arg(topic)
            .arg("--count")
            .arg(count);
        if latency {
            command = command.arg("--latency");
        }
        Ok(command.spawn(&self.options.out_dir, &label))
    }

    /// A tracker catching up `count` orders: orders/s from the first order tracked to the
    /// last (from its `/metrics`, polled every 10 ms), then SIGTERM.
    fn track_once(
        &mut self,
        topic: &str,
        count: u64,
        logging: bool,
        extra: &[(&str, &str)],
    ) -> Result<(f64, Finished)> {
        let (mut running, port) = self.spawn_tracker(topic, logging, extra);
        let deadline = Instant::now() + Duration::from_secs(120 + count / 1000);
        let mut first: Option<(Instant, u64)> = None;
        let last = loop {
            let tracked = tracked_orders(port);
            let now = Instant::now();
            if let Some(tracked) = tracked {
                if tracked > 0 && first.is_none() {
                    first = Some((now, tracked));
                }
                if tracked >= count {
                    break now;
                }
            }
            if now > deadline {
                running.terminate();
                let err_tail = running.stderr_tail();
                let _ = running.wait(Duration::from_secs(15));
                return Err(format!(
                    "the tracker did not track {count} orders in time\n{err_tail}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        running.terminate();
        let finished = running.wait(Duration::from_secs(30))?;
        if !finished.success {
            return Err(format!(
                "the tracker did not stop cleanly:\n{}",
                tail_of(&finished.stdout)
            ));
        }
        let (first_at, tracked_then) = first.unwrap_or((last, 0));
        let per_second = if last > first_at {
            rate(count - tracked_then, last - first_at)
        } else {
            f64::NAN
        };
        Ok((per_second, finished))
    }

    /// A consume loop or Python consumer reading `count` orders; orders/s as it measured them.
    fn consume_once(
        &mut self,
        running: Running,
        count: u64,
    ) -> Result<(f64, Finished, serde_json::Value)> {
        let err_tail_path = running.stderr_tail();
        let finished = running.wait(Duration::from_secs(120 + count / 1000))?;
        let result = last_json(&finished).map_err(|err| format!("{err}\n{err_tail_path}"))?;
        if !finished.success || result["count"].as_u64() != Some(count) {
            return Err(format!("a consumer failed: {result}\n{err_tail_path}"));
        }
        let elapsed_ms = result["elapsed_ms"].as_f64().unwrap_or(f64::NAN);
        Ok((count as f64 * 1000.0 / elapsed_ms, finished, result))
    }

    fn consume_row(
        &mut self,
        row: &'static str,
        topic: &str,
        count: u64,
    ) -> Result<(f64, Finished)> {
        match row {
            TRACKER | BACKLOG_TRACKER => self.track_once(topic, count, false, &[]),
            TRACKER_LOGGING => self.track_once(topic, count, true, &[]),
            BACKLOG_TRACKER_UNBOUNDED => {
                self.track_once(topic, count, false, LIBRDKAFKA_DEFAULT_PREFETCH)
            }
            CONSUME_LOOP | BACKLOG_LOOP => {
                let running = self.spawn_consume_loop(topic, count, false, &[]);
                self.consume_once(running, count).map(|(r, f, _)| (r, f))
            }
            _ => {
                let running = self.spawn_python_consumer(topic, count, false)?;
                self.consume_once(running, count).map(|(r, f, _)| (r, f))
            }
        }
    }

    /// Runs each consumer row once per round on `topic`, rotating their order every round so
    /// that no row always runs first (interleaved, as the medians assume), and records each run.
    fn consume_rounds(
        &mut self,
        what: &str,
        rows: &[&'static str],
        topic: &str,
        count: u64,
        data: &mut BTreeMap<String, ThroughputRow>,
    ) -> Result<()> {
        for round in 0..self.options.rounds {
            progress(&format!(
                "{what}, round {}/{}",
                round + 1,
                self.options.rounds
            ));
            for i in 0..rows.len() {
                let row = rows[(i + round) % rows.len()];
                let (per_second, finished) = self.consume_row(row, topic, count)?;
                Self::record(data, row, count, per_second, &finished);
            }
        }
        Ok(())
    }

    fn record(
        data: &mut BTreeMap<String, ThroughputRow>,
        row: &str,
        count: u64,
        per_second: f64,
        finished: &Finished,
    ) {
        push_run(
            data.entry(row.to_string()).or_default(),
            count,
            per_second,
            finished,
        );
        progress(&format!(
            "{row}: {} orders/s, {:.0} MB",
            report::thousands(per_second),
            finished.peak_rss_bytes as f64 / 1e6
        ));
    }

    #[allow(clippy::type_complexity)]
    fn consumer_rounds(
        &mut self,
    ) -> Result<(
        BTreeMap<String, ThroughputRow>,
        BTreeMap<String, ThroughputRow>,
    )> {
        let count = self.options.orders;
        let rows = [TRACKER, CONSUME_LOOP, PYTHON_CONSUMER, TRACKER_LOGGING];
        let mut data = BTreeMap::new();
        // One topic of real orders, written by the service, read by every consumer run.
        progress("writing the orders the consumers read");
        let topic = self.new_topic();
        let running = self.spawn_producer(&topic, count, 0.0, false);
        self.finish_producer(running, PRODUCER, count)?;
        self.consume_rounds("consumers", &rows, &topic, count, &mut data)?;
        let mut backlog = BTreeMap::new();
        let backlog_count = self.options.backlog;
        if backlog_count > 0 {
            progress(&format!(
                "writing a backlog of {} orders",
                report::thousands(backlog_count as f64)
            ));
            let topic = self.new_topic();
            let running = self.spawn_producer(&topic, backlog_count, 0.0, false);
            self.finish_producer(running, PRODUCER, backlog_count)?;
            let rows = [BACKLOG_TRACKER, BACKLOG_TRACKER_UNBOUNDED, BACKLOG_LOOP];
            self.consume_rounds("backlog", &rows, &topic, backlog_count, &mut backlog)?;
        }
        Ok((data, backlog))
    }

    // ---------------------------------------------------------------- latency

    /// Waits until the tracker on `port` says it is ready (it owns partitions).
    fn wait_ready(port: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ureq::get(&format!("http://127.0.0.1:{port}/readyz"))
                .call()
                .is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// One latency run of `pair`: every order's CreateTime and latency, in the order handled.
    fn latency_once(&mut self, pair: &'static str) -> Result<Vec<LatencySample>> {
        let rate = self.options.latency_rate;
        let count = (rate * self.options.latency_secs as f64).round().max(1.0) as u64;
        let topic = self.new_topic();
        match pair {
            SERVICES_PAIR => {
                let (mut tracker, port) = self.spawn_tracker(&topic, true, &[]);
                if !Self::wait_ready(port, Duration::from_secs(60)) {
                    tracker.terminate();
                    return Err(format!(
                        "the tracker never became ready\n{}",
                        tracker.stderr_tail()
                    ));
                }
                let producer = self.spawn_producer(&topic, count, rate, true);
                self.finish_producer(producer, PRODUCER_LOGGING, count)?;
                let deadline = Instant::now() + Duration::from_secs(60);
                while tracked_orders(port).unwrap_or(0) < count && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                tracker.terminate();
                let finished = tracker.wait(Duration::from_secs(30))?;
                let created = create_times(&self.bootstrap(), &topic, count)?;
                let samples = tracker_latencies(&finished.stdout, &created);
                if samples.len() as u64 != count {
                    return Err(format!(
                        "the tracker handled {} of {count} orders",
                        samples.len()
                    ));
                }
                Ok(samples)
            }
            _ => {
                let mut consumer = if pair == LOOPS_PAIR {
                    self.spawn_consume_loop(&topic, count, true, &[])
                } else {
                    self.spawn_python_consumer(&topic, count, true)?
                };
                if !consumer.wait_for_output("ready", Duration::from_secs(60)) {
                    return Err(format!(
                        "{pair}: the consumer never became ready\n{}",
                        consumer.stderr_tail()
                    ));
                }
                let producer = if pair == LOOPS_PAIR {
                    self.spawn_produce_loop(&topic, count, rate, false)
                } else {
                    self.spawn_python_producer(&topic, count, rate)?
                };
                let row = if pair == LOOPS_PAIR {
                    PRODUCE_LOOP
                } else {
                    PYTHON_PRODUCER
                };
                self.finish_producer(producer, row, count)?;
                let (_, _, result) = self.consume_once(consumer, count)?;
                consumer_latencies(&result).map_err(|err| format!("{pair}: {err}"))
            }
        }
    }

    /// Each pair once per round; the percentiles leave out the orders created in the warm-up
    /// (the producers' start-up stall), and the first order's latency is kept beside them.
    fn latency_rounds(&mut self) -> Result<BTreeMap<String, LatencyRow>> {
        let pairs = [SERVICES_PAIR, LOOPS_PAIR, PYTHON_PAIR];
        let mut data: BTreeMap<String, LatencyRow> = BTreeMap::new();
        if self.options.latency_secs == 0 {
            return Ok(data);
        }
        let warmup_ms = self.latency_warmup_ms();
        for round in 0..self.options.rounds {
            progress(&format!(
                "latency, round {}/{}",
                round + 1,
                self.options.rounds
            ));
            for i in 0..pairs.len() {
                let pair = pairs[(i + round) % pairs.len()];
                let samples = self.latency_once(pair)?;
                let counted = startup::latencies_after_warmup(&samples, warmup_ms);
                let entry = data.entry(pair.to_string()).or_default();
                let (p50, p99) = (
                    report::percentile(&counted, 50.0),
                    report::percentile(&counted, 99.0),
                );
                let first = startup::first_order_latency(&samples);
                entry.p50_ms.push(p50);
                entry.p99_ms.push(p99);
                entry.first_order_ms.push(first);
                progress(&format!(
                    "{pair}: p50 {p50:.0} ms, p99 {p99:.0} ms over {} of {} orders, first order {first:.0} ms",
                    counted.len(),
                    samples.len()
                ));
            }
        }
        Ok(data)
    }

    fn latency_warmup_ms(&self) -> i64 {
        startup::latency_warmup_ms(self.options.latency_warmup_secs, self.options.latency_secs)
    }

    // ---------------------------------------------------------------- HTTP intake

    /// One intake run: a producer that takes orders only over HTTP, loaded by
    /// [`crate::intake::post_orders`] with fresh generated orders; every one must be accepted.
    fn intake_once(&mut self, data: &mut IntakeRow) -> Result<()> {
        let count = self.options.intake_orders;
        let topic = self.new_topic();
        let (intake_port, health_port) = (free_port(), free_port());
        let label = self.label("order-producer-intake");
        let mut producer = Measured::new(&self.producer_bin)
            .envs(&self.producer_env())
            .env("ORDERS_TOPIC", &topic)
            .env("DEAD_LETTER_TOPIC", format!("{topic}.dlq"))
            .env("GENERATE_ORDERS", "false")
            .env("INTAKE_PORT", intake_port)
            .env("HEALTH_PORT", health_port)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .spawn(&self.options.out_dir, &label);
        // The generator's orders, as a client would post them (made before the clock starts).
        let mut generator = order_contract::samples::OrderGenerator::seeded(200, 7);
        let bodies: Vec<Vec<u8>> = (0..count)
            .map(|_| generator.next_order().to_json())
            .collect();
        if !Self::wait_ready(health_port, Duration::from_secs(60)) {
            producer.terminate();
            return Err(format!(
                "the intake's producer never became ready\n{}",
                producer.stderr_tail()
            ));
        }
        let load =
            crate::intake::post_orders(intake_port, &bodies, self.options.intake_concurrency);
        producer.terminate();
        let finished = producer.wait(Duration::from_secs(30))?;
        if load.failed > 0 || load.accepted != count {
            return Err(format!(
                "the intake accepted {} of {count} orders; {} failed, first: {:?}",
                load.accepted, load.failed, load.failures
            ));
        }
        let (p50, p99) = (
            report::percentile(&load.latencies_ms, 50.0),
            report::percentile(&load.latencies_ms, 99.0),
        );
        push_run(
            &mut data.throughput,
            count,
            load.accepted_per_sec(),
            &finished,
        );
        data.latency.p50_ms.push(p50);
        data.latency.p99_ms.push(p99);
        progress(&format!(
            "{INTAKE}: {} accepted orders/s, p50 {p50:.0} ms, p99 {p99:.0} ms",
            report::thousands(load.accepted_per_sec())
        ));
        Ok(())
    }

    fn intake_rounds(&mut self) -> Result<IntakeRow> {
        let mut data = IntakeRow::default();
        if self.options.intake_orders == 0 {
            return Ok(data);
        }
        for round in 0..self.options.rounds {
            progress(&format!(
                "HTTP intake, round {}/{}",
                round + 1,
                self.options.rounds
            ));
            self.intake_once(&mut data)?;
        }
        Ok(data)
    }

    // ---------------------------------------------------------------- report

    fn report(&self, measured: &Measurements, load_before: String, load_after: String) -> String {
        let Measurements {
            producers,
            consumers,
            backlog,
            latency,
            intake,
        } = measured;
        let options = &self.options;
        let mut out = String::new();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, name)| name.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
        let payload = |row: &str| {
            self.payload_bytes
                .get(row)
                .map_or("?".to_string(), |series| format!("{:.0}", series.median()))
        };
        let _ = writeln!(
            out,
            "Machine: {cores} cores ({cpu}), Linux {}, load average {load_before} before and {load_after} after. \
             Broker: tansu (test broker, in memory), {PARTITIONS} partitions. librdkafka {librdkafka}. \
             {} orders per run, {} interleaved rounds, median of rounds (min-max); each ratio is the median of the \
             per-round ratios. Payload: {} bytes on average from the services' generator, {} from the Python seed.\n",
            kernel.trim(),
            report::thousands(options.orders as f64),
            options.rounds,
            payload(PRODUCE_LOOP),
            payload(PYTHON_PRODUCER),
        );
        out.push_str(&report::throughput_table(
            "producing",
            &format!(
                "steady orders/s ({}th-{}th percentile CreateTimes)",
                startup::STEADY_FROM_PERCENTILE,
                startup::STEADY_TO_PERCENTILE
            ),
            true,
            &[
                (PRODUCER, Some(PRODUCE_LOOP), Some(PYTHON_PRODUCER)),
                (PRODUCER_LOGGING, Some(PRODUCE_LOOP), Some(PYTHON_PRODUCER)),
                (PRODUCE_LOOP, None, Some(PYTHON_PRODUCER)),
                (
                    PRODUCE_LOOP_HEADERS,
                    Some(PRODUCE_LOOP),
                    Some(PYTHON_PRODUCER),
                ),
                (PYTHON_PRODUCER, None, None),
            ],
            producers,
        ));
        out.push('\n');
        out.push_str(&report::throughput_table(
            "consuming",
            "orders/s",
            false,
            &[
                (TRACKER, Some(CONSUME_LOOP), Some(PYTHON_CONSUMER)),
                (TRACKER_LOGGING, Some(CONSUME_LOOP), Some(PYTHON_CONSUMER)),
                (CONSUME_LOOP, None, Some(PYTHON_CONSUMER)),
                (PYTHON_CONSUMER, None, None),
            ],
            consumers,
        ));
        if !backlog.is_empty() {
            out.push('\n');
            out.push_str(&report::throughput_table(
                &format!(
                    "catching up a backlog of {} orders",
                    report::thousands(options.backlog as f64)
                ),
                "orders/s",
                false,
                &[
                    (BACKLOG_TRACKER, Some(BACKLOG_LOOP), None),
                    (BACKLOG_TRACKER_UNBOUNDED, Some(BACKLOG_LOOP), None),
                    (BACKLOG_LOOP, None, None),
                ],
                backlog,
            ));
            if let (Some(bounded), Some(unbounded)) = (
                backlog.get(BACKLOG_TRACKER),
                backlog.get(BACKLOG_TRACKER_UNBOUNDED),
            ) {
                let _ = writeln!(
                    out,
                    "\nCatch-up rate with the services' fetch and queue limits / with librdkafka's defaults: {:.2} \
                     (median of per-round ratios; 1.00 = the bound costs nothing).",
                    bounded.orders_per_sec.ratio_to(&unbounded.orders_per_sec),
                );
            }
        }
        if !latency.is_empty() {
            out.push('\n');
            out.push_str(&report::latency_table(
                options.latency_rate,
                self.latency_warmup_ms(),
                &[
                    (SERVICES_PAIR, Some(LOOPS_PAIR)),
                    (LOOPS_PAIR, None),
                    (PYTHON_PAIR, Some(LOOPS_PAIR)),
                ],
                latency,
            ));
        }
        if !intake.latency.p50_ms.per_round.is_empty() {
            out.push('\n');
            out.push_str(&report::intake_table(
                INTAKE,
                options.intake_concurrency,
                options.intake_orders,
                intake,
            ));
        }
        out
    }
}

/// The tracker's `order_tracker_orders_tracked_total`, from its `/metrics`.
fn tracked_orders(port: u16) -> Option<u64> {
    let mut response = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()?;
    let body = response.body_mut().read_to_string().ok()?;
    body.lines()
        .find_map(|line| line.strip_prefix("order_tracker_orders_tracked_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

fn tail_of(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Every message's CreateTime in `topic`, by (partition, offset): read from the beginning of
/// every partition until `expected` messages are in (or 60 s have passed). The producers' steady
/// rates and the tracker's latencies both come from here.
fn create_times(bootstrap: &str, topic: &str, expected: u64) -> Result<HashMap<(i32, i64), i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.auto.commit", "false")
        .set("group.id", unique_name("bench-reader"))
        .create()
        .map_err(|err| err.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|err| err.to_string())?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .map_err(|err| err.to_string())?;
    }
    consumer
        .assign(&assignment)
        .map_err(|err| err.to_string())?;
    let mut times = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (times.len() as u64) < expected && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100))
            && let Some(created) = message.timestamp().to_millis()
        {
            times.insert((message.partition(), message.offset()), created);
        }
    }
    Ok(times)
}

/// Latencies from the tracker's JSON log: each order line's timestamp minus its message's
/// CreateTime (the line ends with `[topic/partition@offset]`), with that CreateTime.
fn tracker_latencies(log: &str, created: &HashMap<(i32, i64), i64>) -> Vec<LatencySample> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "order_tracked")
        .filter_map(|event| {
            let handled =
                chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str()?).ok()?;
            let message = event["message"].as_str()?;
            let source = message.rsplit_once('[')?.1.trim_end_matches(']');
            let (_, position) = source.rsplit_once('/')?;
            let (partition, offset) = position.split_once('@')?;
            let created_ms = *created.get(&(partition.parse().ok()?, offset.parse().ok()?))?;
            Some(LatencySample {
                created_ms,
                latency_ms: (handled.timestamp_micros() as f64 / 1000.0) - created_ms as f64,
            })
        })
        .collect()
}

/// The samples in a consume loop's or Python consumer's result line: `created_ms` and
/// `latencies_ms`, parallel arrays, one entry per message.
fn consumer_latencies(result: &serde_json::Value) -> Result<Vec<LatencySample>> {
    let numbers = |key: &str| -> Result<Vec<f64>> {
        result[key]
            .as_array()
            .ok_or_else(|| format!("no {key} in the consumer's result"))?
            .iter()
            .map(|value| value.as_f64().ok_or_else(|| format!("{key} holds {value}")))
            .collect()
    };
    let (created, latencies) = (numbers("created_ms")?, numbers("latencies_ms")?);
    if created.len() != latencies.len() {
        return Err(format!(
            "{} CreateTimes for {} latencies",
            created.len(),
            latencies.len()
        ));
    }
    Ok(created
        .into_iter()
        .zip(latencies)
        .map(|(created_ms, latency_ms)| LatencySample {
            created_ms: created_ms as i64,
            latency_ms,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumers_result_pairs_each_create_time_with_its_latency() {
        let result = serde_json::json!({
            "count": 2, "created_ms": [1_000, 1_004], "latencies_ms": [550, 7],
        });
        assert_eq!(
            consumer_latencies(&result),
            Ok(vec![
                LatencySample {
                    created_ms: 1_000,
                    latency_ms: 550.0
                },
                LatencySample {
                    created_ms: 1_004,
                    latency_ms: 7.0
                },
            ])
        );
    }

    #[test]
    fn a_consumers_result_without_matching_create_times_is_refused() {
        let uneven = serde_json::json!({"created_ms": [1_000], "latencies_ms": [550, 7]});
        assert!(consumer_latencies(&uneven).is_err());
        let without = serde_json::json!({"latencies_ms": [550, 7]});
        assert!(consumer_latencies(&without).is_err());
    }
}
