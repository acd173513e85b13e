//! The HTTP intake's load: `POST /orders` from a stated number of concurrent clients on
//! loopback, each sending its next order only once the last one was answered (a closed loop,
//! like services that wait for the acknowledgement before moving on).
//!
//! An answer is 201 only once the broker acknowledged the order, so response times sit on the
//! broker's acknowledgement time; on tansu that floor is its own (about 144 ms p50), which is
//! why the report states it beside the figures instead of judging them alone. Every order must
//! be accepted: a refusal or an error fails the run, so a fast figure can never come from
//! orders that were turned away.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What one load run saw.
#[derive(Debug)]
pub struct IntakeLoad {
    /// Orders answered 201.
    pub accepted: u64,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    /// Each accepted order's response time, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// The first few refusals or errors, for the failure message.
    pub failures: Vec<String>,
    /// How many requests were not answered 201.
    pub failed: u64,
}

impl IntakeLoad {
    /// Accepted orders per second over the whole run.
    pub fn accepted_per_sec(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Posts every body in `bodies` once, from `concurrency` clients, to the intake on `port`.
pub fn post_orders(port: u16, bodies: &[Vec<u8>], concurrency: usize) -> IntakeLoad {
    let url = format!("http://127.0.0.1:{port}/orders");
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let per_client: Vec<(Vec<f64>, Vec<String>, u64)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(30)))
                        .build()
                        .into();
                    let mut latencies = Vec::new();
                    let mut failures = Vec::new();
                    let mut failed = 0;
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(index) else { break };
                        let sent = Instant::now();
                        let answer = agent
                            .post(&url)
                            .header("content-type", "application/json")
                            .send(body.as_slice());
                        match answer {
                            Ok(mut response) if response.status().as_u16() == 201 => {
                                // Read the body so that the connection is reused.
                                let _ = response.body_mut().read_to_vec();
                                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                            }
                            Ok(mut response) => {
                                failed += 1;
                                if failures.len() < 3 {
                                    let text =
                                        response.body_mut().read_to_string().unwrap_or_default();
                                    failures.push(format!("{}: {text}", response.status()));
                                }
                            }
                            Err(err) => {
                                failed += 1;
                                if failures.len() < 3 {
                                    failures.push(err.to_string());
                                }
                            }
                        }
                    }
                    (latencies, failures, failed)
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|client| {
                client
                    .join()
                    .unwrap_or_else(|_| (Vec::new(), vec!["a client thread panicked".into()], 1))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut load = IntakeLoad {
        accepted: 0,
        elapsed,
        latencies_ms: Vec::new(),
        failures: Vec::new(),
        failed: 0,
    };
    for (latencies, failures, failed) in per_client {
        load.accepted += latencies.len() as u64;
        load.latencies_ms.extend(latencies);
        load.failures.extend(failures);
        load.failed += failed;
    }
    load
}
