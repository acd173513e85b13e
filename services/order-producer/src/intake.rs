//! The HTTP intake: `POST /orders` takes one order as JSON and answers `201` with where the
//! broker put it, once the broker has acknowledged it (`acks=all`, the same idempotent producer
//! as the generator). `GET /openapi.json` serves the committed OpenAPI document.
//!
//! Shaped so that no request can do harm:
//! - Its own port (`INTAKE_PORT`), never the health port: health probes and Prometheus stay
//!   reachable however busy the intake is, and the intake can be published on its own. It has
//!   no authentication, so compose publishes it on the host's loopback only.
//! - The body is read up to `MAX_ORDER_BYTES` and no further (413), and what is written to the
//!   topic has passed the tracker's own decoder (see [`crate::intake_request`]), so a request
//!   cannot make the producer write something the tracker would dead-letter.
//! - Back-pressure is an answer, not a wait: a full producer queue is `503` at once, and a
//!   broker that has not acknowledged within `INTAKE_ACK_TIMEOUT_MS` is `503` too, both with
//!   `Retry-After`. After such a 503 the order may still be delivered (librdkafka keeps it
//!   queued until `message.timeout.ms`), so a client retries with the *same* `order_id` and the
//!   tracker recognises the copy; the README says how far that memory reaches.
//! - Shutdown: when asked to stop, the listener closes at once (no new requests), the requests
//!   in hand are answered (each waits at most the ack timeout for the broker), and only then
//!   does `run` flush the producer. Requests still unanswered `INTAKE_ACK_TIMEOUT_MS` plus two
//!   seconds after the stop (a client that never finishes its body) are abandoned with a
//!   warning, so a stuck client cannot hold the flush back past the container's grace period.

use crate::config::ProducerConfig;
use crate::intake_request::{Defaults, Problem, body_too_large, check_content_type, prepare};
use crate::{DeliveryNote, OrderProducer, ProducerMetrics, order_record};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use service_runtime::shutdown::{self, Shutdown, ShutdownTrigger};
use std::future::IntoFuture;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The OpenAPI document of the intake, served at `GET /openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi/orders.v1.json");

/// How long after a stop the intake waits, beyond the ack timeout, for requests in hand.
const DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// The intake port could not be bound (in use, or not permitted).
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the HTTP intake on port {port} (INTAKE_PORT): {source}")]
pub struct IntakeBindError {
    pub port: u16,
    #[source]
    pub source: std::io::Error,
}

type Labels = Vec<(&'static str, String)>;

/// Every answer the intake gave, by status and reason: `order_producer_intake_responses_total`.
#[derive(Debug, Clone, Default)]
struct IntakeMetrics {
    responses: Family<Labels, Counter>,
    /// From the request's arrival to its response, whatever the answer (a 201 includes the
    /// wait for the broker's acknowledgement).
    duration: service_runtime::metrics::LatencyHistogram,
}

/// A bound intake, not yet serving.
#[derive(Debug)]
pub struct Intake {
    listener: TcpListener,
    metrics: IntakeMetrics,
}

impl Intake {
    /// Binds `0.0.0.0:port` and registers the intake's metrics.
    pub async fn bind(port: u16, registry: &mut Registry) -> Result<Self, IntakeBindError> {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            .await
            .map_err(|source| IntakeBindError { port, source })?;
        let metrics = IntakeMetrics::default();
        registry.register(
            "intake_responses",
            "Answers of the HTTP intake, by status and reason",
            metrics.responses.clone(),
        );
        registry.register(
            "intake_request_duration_seconds",
            "Time the HTTP intake took to answer a request",
            metrics.duration.histogram(),
        );
        Ok(Intake { listener, metrics })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves in a background task until `shutdown` fires or [`RunningIntake::finish`] stops it.
    pub(crate) fn start(
        self,
        config: &ProducerConfig,
        producer: Arc<OrderProducer>,
        producer_metrics: ProducerMetrics,
        shutdown: Shutdown,
    ) -> RunningIntake {
        let (stop, stopped) = shutdown::channel();
        let state = IntakeState {
            producer,
            producer_metrics,
            metrics: self.metrics,
            topic: Arc::from(config.common.orders_topic.as_str()),
            max_order_bytes: config.max_order_bytes,
            ack_timeout: config.intake_ack_timeout,
            in_hand: Arc::new(AtomicUsize::new(0)),
        };
        let port = self.listener.local_addr().map(|a| a.port()).unwrap_or(0);
        info!(
            event = "intake_listening",
            port,
            max_order_bytes = config.max_order_bytes,
            ack_timeout_ms = config.intake_ack_timeout.as_millis() as u64,
            "HTTP intake listening on port {port}: POST /orders, GET /openapi.json"
        );
        let task = tokio::spawn(serve(
            self.listener,
            state,
            StopSignal {
                shutdown,
                finished: stopped,
            },
        ));
        RunningIntake { stop, task }
    }
}

/// A serving intake.
#[derive(Debug)]
pub(crate) struct RunningIntake {
    stop: ShutdownTrigger,
    task: JoinHandle<()>,
}

impl RunningIntake {
    /// Waits until the intake has stopped and answered the requests in hand. With `now`, it is
    /// told to stop first (a bounded run is over); otherwise it stops when shutdown is requested.
    pub async fn finish(self, now: bool) {
        if now {
            self.stop.trigger();
        }
        if let Err(err) = self.task.await {
            warn!(error = %err, "the HTTP intake task failed");
        }
    }
}

/// Fires on the service's shutdown or when the run is over, whichever comes first.
#[derive(Debug, Clone)]
struct StopSignal {
    shutdown: Shutdown,
    finished: Shutdown,
}

impl StopSignal {
    async fn requested(&mut self) {
        tokio::select! {
            _ = self.shutdown.requested() => {}
            _ = self.finished.requested() => {}
        }
    }
}

#[derive(Clone)]
struct IntakeState {
    producer: Arc<OrderProducer>,
    producer_metrics: ProducerMetrics,
    metrics: IntakeMetrics,
    topic: Arc<str>,
    max_order_bytes: usize,
    ack_timeout: Duration,
    /// Requests being handled now, for the shutdown log.
    in_hand: Arc<AtomicUsize>,
}

impl IntakeState {
    /// `Retry-After` after the broker did not acknowledge: the ack timeout, in whole seconds.
    fn retry_after_secs(&self) -> u64 {
        self.ack_timeout.as_secs_f64().ceil() as u64
    }
}

/// Counts a request as in hand while it lives.
struct InHand(Arc<AtomicUsize>);

impl InHand {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InHand(counter.clone())
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(listener: TcpListener, state: IntakeState, stop: StopSignal) {
    let in_hand = state.in_hand.clone();
    let drain_timeout = state.ack_timeout + DRAIN_MARGIN;
    let duration = state.metrics.duration.clone();
    let app = Router::new()
        .route(
            "/orders",
            post(post_order).fallback(
                |method: Method, State(state): State<IntakeState>| async move {
                    method_not_allowed(&state, &method, "POST")
                },
            ),
        )
        .route(
            "/openapi.json",
            get(openapi).fallback(
                |method: Method, State(state): State<IntakeState>| async move {
                    method_not_allowed(&state, &method, "GET, HEAD")
                },
            ),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let duration = duration.clone();
                async move {
                    let started = std::time::Instant::now();
                    let response = next.run(request).await;
                    duration.observe(started.elapsed());
                    response
                }
            },
        ))
        .with_state(state);
    let mut on_stop = stop.clone();
    let announced = in_hand.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            on_stop.requested().await;
            let count = announced.load(Ordering::SeqCst);
            info!(
                event = "intake_stopping",
                in_hand = count,
                "HTTP intake no longer accepts requests; answering the {count} in hand"
            );
        })
        .into_future();
    let mut deadline = stop;
    tokio::select! {
        result = server => match result {
            Ok(()) => info!(
                event = "intake_stopped",
                "HTTP intake stopped: every request in hand was answered"
            ),
            Err(err) => warn!(error = %err, "HTTP intake stopped with an error: {err}"),
        },
        () = async move {
            deadline.requested().await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            let count = in_hand.load(Ordering::SeqCst);
            warn!(
                event = "intake_drain_timed_out",
                abandoned = count,
                "HTTP intake drain timed out after {} ms: {count} requests still in hand were abandoned",
                drain_timeout.as_millis()
            );
        }
    }
}

/// `POST /orders`.
async fn post_order(State(state): State<IntakeState>, headers: HeaderMap, body: Body) -> Response {
    let _in_hand = InHand::new(&state.in_hand);
    match take_order(&state, &headers, body).await {
        Ok(accepted) => {
            state.count(StatusCode::CREATED, "accepted");
            (
                StatusCode::CREATED,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                accepted.to_string(),
            )
                .into_response()
        }
        Err(problem) => {
            if problem.status.is_server_error() {
                warn!(
                    target: "order_producer::intake",
                    event = "order_unavailable",
                    status = problem.status.as_u16(),
                    reason = problem.reason,
                    "POST /orders answered {} {}: {}",
                    problem.status.as_u16(),
                    problem.reason,
                    problem.detail
                );
            } else {
                info!(
                    target: "order_producer::intake",
                    event = "order_refused",
                    status = problem.status.as_u16(),
                    reason = problem.reason,
                    "POST /orders refused with {} {}: {}",
                    problem.status.as_u16(),
                    problem.reason,
                    problem.detail
                );
            }
            state.answer(problem)
        }
    }
}

/// Everything between the request and the broker's acknowledgement; the `Ok` value is the
/// 201 body.
async fn take_order(
    state: &IntakeState,
    headers: &HeaderMap,
    body: Body,
) -> Result<serde_json::Value, Problem> {
    check_content_type(headers.get(header::CONTENT_TYPE))?;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    if announced.is_some_and(|length| length > state.max_order_bytes as u64) {
        return Err(body_too_large(state.max_order_bytes));
    }
    let body = read_at_most(body, state.max_order_bytes).await?;
    let accepted = prepare(&body, state.max_order_bytes, Defaults::now())?;
    let order = &accepted.order;
    let (reply, delivered) = tokio::sync::oneshot::channel();
    let note = DeliveryNote::of(order).with_reply(reply);
    match state.producer.kafka().send(order_record(
        &state.topic,
        order.key(),
        order.schema_version,
        &accepted.payload,
        note,
    )) {
        Ok(()) => {
            state.producer_metrics.produced.inc();
        }
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
            return Err(Problem::unavailable(
                "queue-full",
                "the producer's queue is full (the broker is slow or away); try again shortly \
                 with the same order_id",
                1,
            ));
        }
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "the order is larger than the Kafka client accepts (message.max.bytes); \
                 MAX_ORDER_BYTES should be below it",
            ));
        }
        Err((err, _)) => {
            return Err(Problem::unavailable(
                "not-delivered",
                format!("the order could not be queued for the broker: {err}"),
                state.retry_after_secs(),
            ));
        }
    }
    match tokio::time::timeout(state.ack_timeout, delivered).await {
        Ok(Ok(Ok((partition, offset)))) => {
            info!(
                target: "order_producer::intake",
                event = "order_accepted",
                order_id = %order.order_id,
                customer_id = %order.customer_id,
                partition,
                offset,
                filled = accepted.filled.join(","),
                "order {} posted over HTTP accepted: {}/{partition}@{offset}",
                order.order_id,
                state.topic,
            );
            Ok(serde_json::json!({
                "order_id": order.order_id,
                "topic": &*state.topic,
                "partition": partition,
                "offset": offset,
            }))
        }
        Ok(Ok(Err(err))) => Err(Problem::unavailable(
            "not-delivered",
            format!(
                "the broker did not take order {}: {err}; try again with the same order_id",
                order.order_id
            ),
            state.retry_after_secs(),
        )),
        // The report is sent exactly once; a dropped sender means the producer is gone.
        Ok(Err(_)) => Err(Problem::unavailable(
            "not-delivered",
            format!("order {} got no delivery report", order.order_id),
            state.retry_after_secs(),
        )),
        Err(_) => Err(Problem::unavailable(
            "broker-timeout",
            format!(
                "the broker did not acknowledge order {} within {} ms; it may still arrive: \
                 try again with the same order_id",
                order.order_id,
                state.ack_timeout.as_millis()
            ),
            state.retry_after_secs(),
        )),
    }
}

/// The body, refused with 413 as soon as it passes `max_bytes`.
async fn read_at_most(body: Body, max_bytes: usize) -> Result<Vec<u8>, Problem> {
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|err| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "unreadable-body",
                format!("the request body could not be read: {err}"),
            )
        })?;
        if bytes.len() + chunk.len() > max_bytes {
            return Err(body_too_large(max_bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// `GET /openapi.json`.
async fn openapi(State(state): State<IntakeState>) -> Response {
    state.count(StatusCode::OK, "openapi");
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI_JSON,
    )
        .into_response()
}

fn method_not_allowed(state: &IntakeState, method: &Method, allow: &'static str) -> Response {
    let mut response = state.answer(Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{method} is not allowed here; allowed: {allow}"),
    ));
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn not_found(
    State(state): State<IntakeState>,
    method: Method,
    uri: axum::http::Uri,
) -> Response {
    state.answer(Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!(
            "no {method} {} here: the intake serves POST /orders and GET /openapi.json",
            uri.path()
        ),
    ))
}

impl IntakeState {
    fn count(&self, status: StatusCode, reason: &'static str) {
        self.metrics
            .responses
            .get_or_create(&vec![
                ("status", status.as_u16().to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    /// A problem as an `application/problem+json` response, counted.
    fn answer(&self, problem: Problem) -> Response {
        self.count(problem.status, problem.reason);
        let mut response = (
            problem.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            problem.to_json(),
        )
            .into_response();
        if let Some(seconds) = problem.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake_request::INTAKE_REASONS;
    use serde_json::Value;

    fn openapi() -> Value {
        serde_json::from_str(OPENAPI_JSON).expect("the OpenAPI document is JSON")
    }

    #[test]
    fn the_documented_request_is_the_order_contract_with_three_fields_optional() {
        let contract: Value =
            serde_json::from_str(order_contract::ORDER_SCHEMA_JSON).expect("schema");
        let request = &openapi()["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        let mut expected = contract.clone();
        let fillable = ["schema_version", "order_id", "created_at"];
        let required = expected["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter(|name| !fillable.contains(&name.as_str().unwrap_or_default()))
            .cloned()
            .collect::<Vec<_>>();
        expected["required"] = Value::Array(required);
        for key in ["properties", "required", "type"] {
            assert_eq!(
                request[key], expected[key],
                "the OpenAPI request schema's {key:?} differs from the order contract's"
            );
        }
    }

    #[test]
    fn every_reason_the_intake_can_give_is_documented() {
        let document = openapi();
        let documented: Vec<&str> =
            document["components"]["schemas"]["Problem"]["properties"]["reason"]["enum"]
                .as_array()
                .expect("reason enum")
                .iter()
                .filter_map(Value::as_str)
                .collect();
        // The dead-letter reasons, less `tombstone`: an HTTP body cannot be one.
        let dead_letter_reasons = [
            "empty",
            "too-large",
            "invalid-utf8",
            "not-json",
            "unknown-schema-version",
            "invalid-field",
            "no-items",
            "non-positive-quantity",
            "negative-price",
            "total-mismatch",
        ];
        let mut expected: Vec<&str> = dead_letter_reasons
            .iter()
            .chain(INTAKE_REASONS)
            .copied()
            .collect();
        expected.sort_unstable();
        let mut documented_sorted = documented.clone();
        documented_sorted.sort_unstable();
        assert_eq!(documented_sorted, expected);
    }

    #[test]
    fn the_503_answers_document_retry_after() {
        let document = openapi();
        let unavailable = &document["paths"]["/orders"]["post"]["responses"]["503"];
        assert_eq!(unavailable["headers"]["Retry-After"]["required"], true);
    }
}
