//! The thinnest consume loop rdkafka allows: what `order-tracker` is measured against.
//!
//! Same librdkafka build and the same consumer settings as the tracker (from
//! `service_runtime::kafka`: no automatic offset store, background commit, the same fetch and
//! queue limits, any `KAFKA_*` override), a group member like the tracker, and the same
//! at-least-once step per message: store its offset. It does not decode anything.
//!
//!   thin_consume_loop --topic T --group G --count N [--latency]
//!
//! Prints `{"event": "ready"}` once it owns partitions, then, after N messages, one JSON line
//! `{"count", "elapsed_ms", "created_ms", "latencies_ms"}`: elapsed from the first message to
//! the N-th, and with `--latency`, for each message in the order handled its CreateTime (set
//! when the producer handed it over) and the time from then to now, in two parallel arrays (left
//! empty otherwise, so that throughput runs hold no extra memory). The CreateTimes let the
//! benchmark leave out the orders created during the producer's start-up.

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args = pipeline_bench::Args::from_env();
    let topic = args.required("--topic");
    let group = args.required("--group");
    let count: u64 = args.number("--count");
    let measure_latency = args.flag("--latency");

    let vars = service_runtime::config::process_env();
    let consumer: BaseConsumer = pipeline_bench::kafka_settings(&vars)
        .and_then(|settings| settings.consumer("thin-consume-loop", &group))
        .unwrap_or_else(|err| pipeline_bench::fail(&err))
        .create()
        .unwrap_or_else(|err| pipeline_bench::fail(&err));
    consumer
        .subscribe(&[topic.as_str()])
        .unwrap_or_else(|err| pipeline_bench::fail(&err));

    let mut ready = false;
    let mut first: Option<Instant> = None;
    let mut received: u64 = 0;
    let mut created_ms: Vec<i64> = Vec::new();
    let mut latencies_ms: Vec<i64> = Vec::new();
    while received < count {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                first.get_or_insert_with(Instant::now);
                if measure_latency && let Some(created) = message.timestamp().to_millis() {
                    created_ms.push(created);
                    latencies_ms.push(pipeline_bench::now_millis() - created);
                }
                if let Err(err) = consumer.store_offset_from_message(&message) {
                    pipeline_bench::fail(&err);
                }
                received += 1;
            }
            Some(Err(err)) => eprintln!("consumer error: {err}"),
            None => {}
        }
        if !ready && consumer.assignment().is_ok_and(|a| a.count() > 0) {
            ready = true;
            pipeline_bench::print_json(&serde_json::json!({"event": "ready"}));
        }
    }
    let elapsed = first.map_or(Duration::ZERO, |first| first.elapsed());
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    pipeline_bench::print_json(&serde_json::json!({
        "count": received,
        "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
        "created_ms": created_ms,
        "latencies_ms": latencies_ms,
    }));
    ExitCode::SUCCESS
}
