//! Steady under churn: three trackers of one group on a real broker, the producer at a steady
//! rate, trackers SIGKILLed and restarted at random, one scaled in with SIGTERM and one added.
//!
//! What it proves, from the services' own structured events:
//! - every order the producer reported delivered was tracked by some tracker (every process,
//!   killed ones included, counts: a killed tracker really did handle what it logged);
//! - every SIGTERM ended in exit 0 within 10 s;
//! - the group absorbs each event: within [`SETTLE_LIMIT`] every running tracker holds
//!   partitions again and together they hold all of them;
//! - no partition went unprocessed for longer than the failover bound the README states for
//!   this broker: each delivered message is handled within [`FAILOVER_BOUND`] of its delivery.
//!   A message waits only while its partition has no working owner, so its wait is the
//!   partition's unprocessed time; on failure the report shows each tracker's assignment
//!   events beside the worst waits, per partition, and each tracker's whole output (with
//!   librdkafka's group log) is written under `target/tmp/churn-<seed>/`.
//!
//! The bound is per event, not for storms of them, so the next event waits until the group
//! has settled after the last one (then a random 3-8 s pause). Without that wait a kill could
//! land on a tracker that the broker had just given partitions it never received, and those
//! partitions would wait for two session timeouts in a row (36 s seen in CI).
//!
//! The churn is random: the seed is printed, and `CHURN_SEED=<seed>` replays the same choices
//! (which tracker, and the pauses). The run takes about 3 minutes.
//!
//! The trackers run with the default group timeouts (`service_runtime::kafka`), because those
//! are what the bound is about.

use chrono::{DateTime, Utc};
use pipeline_tests::events::{deliveries, held_partitions, named, order_lines};
use pipeline_tests::{Event, Pipeline, Service, eventually, stop_within_ten_seconds};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// The default `session.timeout.ms` (`service_runtime::kafka`).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// tansu's rebalance: a join waits about half the session timeout, and a cooperative rebalance
/// that moves partitions takes two joins (revoke, then assign).
const TANSU_REBALANCE: Duration = Duration::from_secs(10);
/// tansu answers each JoinGroup about half a session timeout after that request arrived, not
/// all of a generation's at once, so a newcomer can get its answer before the leader has
/// computed the assignment. Its SyncGroup then waits and is answered 8 s later with "rebalance
/// in progress", and it joins again (librdkafka's group log of a failed CI run, seed
/// 15580887475100532418, shows it). Kafka answers a waiting follower as soon as the leader's
/// SyncGroup arrives.
const TANSU_SYNC_STALL: Duration = Duration::from_secs(8);
/// Heartbeat, fetch start-up and a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(5);
/// The README's failover bound on tansu: session timeout + rebalance + a stalled sync + a few
/// seconds.
const FAILOVER_BOUND: Duration = Duration::from_secs(
    SESSION_TIMEOUT.as_secs()
        + TANSU_REBALANCE.as_secs()
        + TANSU_SYNC_STALL.as_secs()
        + SLACK.as_secs(),
);
/// How long the group may take to absorb one event before the test calls it stuck.
const SETTLE_LIMIT: Duration = Duration::from_secs(90);
/// No assignment change for this long, and the group counts as settled.
const QUIET: Duration = Duration::from_secs(5);
const PARTITIONS: i32 = 6;
const ORDERS_PER_SECOND: u32 = 40;
const KILL_RESTART_CYCLES: usize = 3;

/// All tracker processes of the run, running or not, for their events.
struct Trackers<'a> {
    pipeline: &'a Pipeline,
    group: String,
    all: Vec<Service>,
    running: Vec<usize>,
}

impl Trackers<'_> {
    fn start(&mut self) -> usize {
        let tracker = self
            .pipeline
            .tracker_with_default_group_timeouts(&self.group)
            // librdkafka's group log, for the dump below: joins, syncs, assignments.
            .env("KAFKA_DEBUG", "cgrp")
            .env("RUST_LOG", "info,librdkafka=debug")
            .spawn();
        self.all.push(tracker);
        self.running.push(self.all.len() - 1);
        self.all.len() - 1
    }

    /// True when every running tracker holds partitions, together they hold all of them, and
    /// no tracker's assignment changed for [`QUIET`].
    fn settled(&self) -> bool {
        let mut held = BTreeSet::new();
        for &index in &self.running {
            let mine = self.all[index].with_events(held_partitions);
            if mine.is_empty() {
                return false;
            }
            held.extend(mine);
        }
        // The latest assignment change of any tracker (scanned in place: by the end of the run
        // each tracker has logged thousands of events).
        let last_change = self
            .all
            .iter()
            .filter_map(|tracker| {
                tracker.with_events(|events| {
                    events.iter().rev().find(|e| changes_assignment(e)).map(at)
                })
            })
            .max();
        held.len() == PARTITIONS as usize
            && last_change
                .is_some_and(|last| (Utc::now() - last).to_std().unwrap_or_default() > QUIET)
    }

    /// Waits for [`Trackers::settled`]; panics with the timeline after [`SETTLE_LIMIT`].
    fn wait_settled(&self, after: &str) {
        let started = Instant::now();
        // Polled every half second, not at `eventually`'s pace: the trackers under test share
        // the machine with this loop.
        let settled = loop {
            if self.settled() {
                break true;
            }
            if started.elapsed() >= SETTLE_LIMIT {
                break false;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let events = self.events();
        let start = events
            .iter()
            .map(|(_, e)| at(e))
            .min()
            .unwrap_or_else(Utc::now);
        assert!(
            settled,
            "the group did not settle within {SETTLE_LIMIT:?} after {after}:\n{}",
            assignment_timeline(&events, start)
        );
        eprintln!("  settled {:.1?} after {after}", started.elapsed());
    }

    fn take_random(&mut self, rng: &mut StdRng) -> usize {
        let at = rng.random_range(0..self.running.len());
        self.running.remove(at)
    }

    fn events(&self) -> Vec<(usize, Event)> {
        self.all
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.events().into_iter().map(move |e| (i, e)))
            .collect()
    }

    /// Writes every tracker's whole output to `dir`, one file each, and returns the dir.
    fn dump(&self, dir: &std::path::Path) -> String {
        let _ = std::fs::create_dir_all(dir);
        for (i, t) in self.all.iter().enumerate() {
            let text = format!("{}\n--- stderr:\n{}", t.stdout().join("\n"), t.stderr());
            let _ = std::fs::write(dir.join(format!("tracker-{i}.log")), text);
        }
        format!("each tracker's whole output: {}", dir.display())
    }

    fn reports(&self) -> String {
        self.all
            .iter()
            .map(Service::report)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A tracker's assignment grew or shrank.
fn changes_assignment(event: &Event) -> bool {
    matches!(
        event.name(),
        Some("partitions_assigned" | "partitions_revoked" | "partitions_lost")
    )
}

fn at(event: &Event) -> DateTime<Utc> {
    event.at().expect("every JSON line has a timestamp")
}

/// Each tracker's assignment events, in time order: `t+12.3s tracker#1 partitions_assigned ...`.
fn assignment_timeline(events: &[(usize, Event)], start: DateTime<Utc>) -> String {
    let mut lines: Vec<(DateTime<Utc>, String)> = events
        .iter()
        .filter(|(_, e)| {
            changes_assignment(e)
                || matches!(
                    e.name(),
                    Some(
                        "shutdown_started"
                            | "consumer_closed"
                            | "consumer_close_timed_out"
                            | "shutdown_budget_spent"
                            | "starting"
                    )
                )
        })
        .map(|(i, e)| {
            (
                at(e),
                format!(
                    "t+{:.1}s tracker#{i} {} {}",
                    (at(e) - start).num_milliseconds() as f64 / 1000.0,
                    e.name().unwrap_or_default(),
                    e.field("partitions").unwrap_or_default()
                ),
            )
        })
        .collect();
    lines.sort();
    lines
        .into_iter()
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn trackers_killed_restarted_scaled_in_and_out_lose_no_order_and_no_partition_waits_past_the_failover_bound()
 {
    let seed: u64 = std::env::var("CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("churn seed {seed} (replay: CHURN_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let test_started = Instant::now();

    let pipeline = Pipeline::new(PARTITIONS);
    let mut trackers = Trackers {
        pipeline: &pipeline,
        group: "churn".into(),
        all: Vec::new(),
        running: Vec::new(),
    };
    for _ in 0..3 {
        trackers.start();
    }
    // All three in the group, each holding partitions, and the group quiet before orders flow:
    // start-up, with its cooperative rounds, is not a failover.
    trackers.wait_settled("start-up");

    let mut producer = pipeline
        .producer()
        .env("ORDERS_PER_SECOND", ORDERS_PER_SECOND)
        .spawn();
    std::thread::sleep(Duration::from_secs(5));

    let mut sigterm_exits: Vec<(String, Duration)> = Vec::new();
    // After each event: let the group absorb it, then a little more steady running.
    let settle_then_pause = |trackers: &Trackers, rng: &mut StdRng, after: &str| {
        trackers.wait_settled(after);
        std::thread::sleep(Duration::from_millis(rng.random_range(3_000..8_000)));
    };
    for cycle in 0..KILL_RESTART_CYCLES {
        let victim = trackers.take_random(&mut rng);
        eprintln!(
            "t+{:?} cycle {cycle}: SIGKILL tracker#{victim}",
            test_started.elapsed()
        );
        trackers.all[victim].kill();
        std::thread::sleep(Duration::from_millis(rng.random_range(1_000..5_000)));
        let restarted = trackers.start();
        eprintln!(
            "t+{:?} cycle {cycle}: restarted as tracker#{restarted}",
            test_started.elapsed()
        );
        settle_then_pause(&trackers, &mut rng, &format!("cycle {cycle}"));
    }
    let leaving = trackers.take_random(&mut rng);
    eprintln!(
        "t+{:?} scale in: SIGTERM tracker#{leaving}",
        test_started.elapsed()
    );
    sigterm_exits.push((
        format!("tracker#{leaving} (scale in)"),
        stop_within_ten_seconds(&mut trackers.all[leaving]),
    ));
    settle_then_pause(&trackers, &mut rng, "scale in");
    let added = trackers.start();
    eprintln!(
        "t+{:?} scale out: added tracker#{added}",
        test_started.elapsed()
    );
    settle_then_pause(&trackers, &mut rng, "scale out");

    sigterm_exits.push(("producer".into(), stop_within_ten_seconds(&mut producer)));
    let delivered = deliveries(&producer.events());
    assert!(delivered.len() > 1000, "{}", producer.report());
    let delivered_ids: HashSet<&str> = delivered.iter().map(|d| d.order_id.as_str()).collect();
    let all_tracked = eventually(Duration::from_secs(60), || {
        let seen: HashSet<String> = trackers
            .all
            .iter()
            .flat_map(|t| order_lines(&t.events()))
            .map(|line| line.order_id)
            .collect();
        delivered_ids.iter().all(|id| seen.contains(*id))
    });
    for index in trackers.running.clone() {
        sigterm_exits.push((
            format!("tracker#{index}"),
            stop_within_ten_seconds(&mut trackers.all[index]),
        ));
    }

    let events = trackers.events();
    let producer_events = producer.events();
    let start = producer_events
        .first()
        .map(at)
        .expect("the producer logged");
    let timeline = assignment_timeline(&events, start);
    let dumped = trackers
        .dump(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("churn-{seed}")));

    // Every produced order was tracked, by some tracker.
    let mut first_handled: HashMap<String, DateTime<Utc>> = HashMap::new();
    for (_, event) in &events {
        if matches!(event.name(), Some("order_tracked" | "duplicate_skipped")) {
            let id = event.field("order_id").expect("order_id");
            let when = at(event);
            first_handled
                .entry(id)
                .and_modify(|t| *t = (*t).min(when))
                .or_insert(when);
        }
    }
    let missing: Vec<&&str> = delivered_ids
        .iter()
        .filter(|id| !first_handled.contains_key(**id))
        .take(10)
        .collect();
    assert!(
        all_tracked && missing.is_empty(),
        "orders never tracked (first 10 of them): {missing:?}\nseed {seed}\n{timeline}\n{dumped}\n{}",
        trackers.reports()
    );

    // No partition unprocessed past the bound: each delivered message was handled within it.
    let delivered_at: HashMap<&str, DateTime<Utc>> = named(&producer_events, "order_delivered")
        .map(|e| (e.json["order_id"].as_str().expect("id"), at(e)))
        .collect();
    let mut worst: BTreeMap<i64, (Duration, String)> = BTreeMap::new();
    for d in &delivered {
        let wait = (first_handled[&d.order_id] - delivered_at[d.order_id.as_str()])
            .to_std()
            .unwrap_or_default();
        let entry = worst
            .entry(d.partition)
            .or_insert((Duration::ZERO, String::new()));
        if wait > entry.0 {
            *entry = (
                wait,
                format!(
                    "offset {} delivered t+{:.1}s",
                    d.offset,
                    (delivered_at[d.order_id.as_str()] - start).num_milliseconds() as f64 / 1000.0
                ),
            );
        }
    }
    let summary = worst
        .iter()
        .map(|(p, (wait, which))| format!("partition {p}: longest wait {wait:.1?} ({which})"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!(
        "seed {seed}; {} orders; SIGTERM exits: {sigterm_exits:?}\n{summary}\nrun took {:?}",
        delivered.len(),
        test_started.elapsed()
    );
    assert_eq!(
        worst.len(),
        PARTITIONS as usize,
        "orders reached every partition"
    );
    assert!(
        worst.values().all(|(wait, _)| *wait <= FAILOVER_BOUND),
        "a partition went unprocessed for longer than {FAILOVER_BOUND:?} (seed {seed}):\n\
         {summary}\nassignments:\n{timeline}\n{dumped}"
    );
    // Every SIGTERM ended in exit 0 within 10 s (each `stop_within_ten_seconds` asserted it).
    assert!(
        sigterm_exits
            .iter()
            .all(|(_, took)| *took < Duration::from_secs(10))
    );
}
