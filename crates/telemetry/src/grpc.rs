//! Tower layers that give every gRPC call a span and its metrics: [`ServerLayer`] for calls a
//! service serves, [`ClientLayer`] for calls it makes. Both speak W3C trace context
//! (`traceparent`/`tracestate`): the server layer continues the caller's trace, the client
//! layer hands the current one on, so one client call through the gateway is one trace.
//!
//! Spans and metrics use OpenTelemetry's RPC conventions: `rpc.system` = `grpc`,
//! `rpc.service`, `rpc.method`, `rpc.grpc.status_code`, and the peer's address on spans.
//! Label cardinality is bounded: only methods listed in the service's descriptor sets get
//! their own labels; any other path is recorded as `_OTHER`.
//!
//! Span attributes are written only when traces are exported (an OTLP endpoint is set):
//! without an exporter the spans exist only to carry trace ids into logs and onto the next hop,
//! and formatting attributes (the peer's IP address as text) on every call would buy nothing.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::Frame;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, BoundUpDownCounter, Histogram, UpDownCounter};
use opentelemetry::propagation::Extractor;
use tonic::Status;
use tonic::body::Body;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::methods::MethodTable;

/// Set to `true` to trace health checks too; by default they are counted but not traced,
/// because probes every few seconds drown the traces that matter.
pub const TRACE_HEALTH_CHECKS_ENV: &str = "NOTESUITE_TRACE_HEALTH_CHECKS";

/// Set to `off` to take the per-call spans and metrics out of the request path altogether:
/// a kill switch for an incident, and the baseline when measuring what telemetry costs.
pub const RPC_TELEMETRY_ENV: &str = "NOTESUITE_RPC_TELEMETRY";

fn rpc_telemetry_enabled() -> bool {
    std::env::var(RPC_TELEMETRY_ENV).map_or(true, |value| value != "off")
}

/// Bucket boundaries (seconds) for call durations: 100 µs to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Number of gRPC status codes (`OK` = 0 … `UNAUTHENTICATED` = 16).
const STATUS_CODES: usize = 17;

/// The labels and bound instruments of one method on one side, built once: recording a call
/// then costs no attribute hashing.
struct MethodLabels {
    /// `package.Service/Method`, the span name.
    full_name: String,
    service: String,
    method: String,
    health_check: bool,
    /// `rpc.system`, `rpc.service`, `rpc.method`.
    attributes: [KeyValue; 3],
    active: BoundUpDownCounter<i64>,
    /// Durations by status code, bound on first use.
    duration_by_code: [OnceLock<BoundHistogram<f64>>; STATUS_CODES],
    duration: Histogram<f64>,
}

impl std::fmt::Debug for MethodLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodLabels")
            .field("full_name", &self.full_name)
            .finish_non_exhaustive()
    }
}

impl MethodLabels {
    fn new(service: &str, method: &str, instruments: &Instruments) -> Self {
        let attributes = [
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service.to_owned()),
            KeyValue::new("rpc.method", method.to_owned()),
        ];
        Self {
            full_name: format!("{service}/{method}"),
            service: service.to_owned(),
            method: method.to_owned(),
            health_check: service == "grpc.health.v1.Health",
            active: instruments.active.bind(&attributes),
            attributes,
            duration_by_code: std::array::from_fn(|_| OnceLock::new()),
            duration: instruments.duration.clone(),
        }
    }

    fn record_duration(&self, code: tonic::Code, seconds: f64) {
        let index = (code as usize).min(STATUS_CODES - 1);
        self.duration_by_code[index]
            .get_or_init(|| {
                let [system, service, method] = self.attributes.clone();
                self.duration.bind(&[
                    system,
                    service,
                    method,
                    KeyValue::new("rpc.grpc.status_code", code as i64),
                ])
            })
            .record(seconds);
    }
}

/// Method labels by path, shared by every clone of a layer.
#[derive(Debug)]
struct Labels {
    by_path: HashMap<String, Arc<MethodLabels>>,
    other: Arc<MethodLabels>,
}

impl Labels {
    fn new(methods: &MethodTable, instruments: &Instruments) -> Arc<Self> {
        let by_path = methods
            .iter()
            .map(|method| {
                (
                    method.path.clone(),
                    Arc::new(MethodLabels::new(
                        &method.service,
                        &method.method,
                        instruments,
                    )),
                )
            })
            .collect();
        Arc::new(Self {
            by_path,
            other: Arc::new(MethodLabels::new("_OTHER", "_OTHER", instruments)),
        })
    }

    fn get(&self, path: &str) -> Arc<MethodLabels> {
        self.by_path.get(path).unwrap_or(&self.other).clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// The instruments of one side.
#[derive(Debug, Clone)]
struct Instruments {
    side: Side,
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
}

impl Instruments {
    fn new(side: Side) -> Self {
        let meter = opentelemetry::global::meter(crate::SCOPE);
        let (duration, active) = match side {
            Side::Server => ("rpc.server.call.duration", "rpc.server.active_calls"),
            Side::Client => ("rpc.client.call.duration", "rpc.client.active_calls"),
        };
        Self {
            side,
            duration: meter
                .f64_histogram(duration)
                .with_unit("s")
                .with_description("Duration of gRPC calls, by method and status code")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter(active)
                .with_unit("{call}")
                .with_description("gRPC calls in flight, streams included while open")
                .build(),
        }
    }
}

/// Adds a server span and server metrics to every call a service serves.
#[derive(Debug, Clone)]
pub struct ServerLayer {
    labels: Arc<Labels>,
    instruments: Instruments,
    trace_health_checks: bool,
    enabled: bool,
    attributes: bool,
}

impl ServerLayer {
    pub fn new(methods: &MethodTable) -> Self {
        let instruments = Instruments::new(Side::Server);
        Self {
            labels: Labels::new(methods, &instruments),
            instruments,
            trace_health_checks: std::env::var(TRACE_HEALTH_CHECKS_ENV)
                .is_ok_and(|value| value == "true"),
            enabled: rpc_telemetry_enabled(),
            attributes: crate::exporting("TRACES"),
        }
    }
}

impl<S> tower_layer::Layer<S> for ServerLayer {
    type Service = ServerTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTelemetry {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerTelemetry<S> {
    inner: S,
    layer: ServerLayer,
}

impl<S> tower_service::Service<http::Request<Body>> for ServerTelemetry<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if !self.layer.enabled {
            return CallFuture {
                inner: self.inner.call(request),
                call: None,
            };
        }
        let labels = self.layer.labels.get(request.uri().path());
        let span = if labels.health_check && !self.layer.trace_health_checks {
            Span::none()
        } else if !self.layer.attributes {
            tracing::debug_span!(target: "notesuite::grpc", "grpc.server")
        } else {
            let span = tracing::debug_span!(
                target: "notesuite::grpc",
                "grpc.server",
                otel.name = %labels.full_name,
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = %labels.service,
                rpc.method = %labels.method,
                rpc.grpc.status_code = tracing::field::Empty,
                network.peer.address = tracing::field::Empty,
                network.peer.port = tracing::field::Empty,
            );
            if let Some(peer) = request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
            {
                span.record("network.peer.address", peer.ip().to_string());
                span.record("network.peer.port", peer.port());
            }
            span
        };
        // A caller that sent no trace context starts a trace here: nothing to extract.
        if !span.is_none() && request.headers().contains_key(&TRACEPARENT) {
            let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.extract(&HeaderExtractor(request.headers()))
            });
            let _ = span.set_parent(parent);
        }
        let call = Call::start(labels, self.layer.instruments.clone(), span);
        let inner = call.span.in_scope(|| self.inner.call(request));
        CallFuture {
            inner,
            call: Some(call),
        }
    }
}

/// Adds a client span, trace context propagation and client metrics to every call made
/// through the wrapped channel.
#[derive(Debug, Clone)]
pub struct ClientLayer {
    labels: Arc<Labels>,
    instruments: Instruments,
    enabled: bool,
    attributes: bool,
    /// `server.address` and `server.port` of the channel's target: the channel fills in the
    /// request's authority only below this layer.
    server: Option<(Arc<str>, Option<u16>)>,
}

impl ClientLayer {
    pub fn new(methods: &MethodTable) -> Self {
        let instruments = Instruments::new(Side::Client);
        Self {
            labels: Labels::new(methods, &instruments),
            instruments,
            enabled: rpc_telemetry_enabled(),
            attributes: crate::exporting("TRACES"),
            server: None,
        }
    }

    /// The same layer for a channel to `url` (`http://host:port`).
    pub fn for_server(&self, url: &str) -> Self {
        let server = url
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| Some((Arc::from(uri.host()?), uri.port_u16())));
        Self {
            server,
            ..self.clone()
        }
    }
}

impl<S> tower_layer::Layer<S> for ClientLayer {
    type Service = ClientTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTelemetry {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientTelemetry<S> {
    inner: S,
    layer: ClientLayer,
}

impl<S> tower_service::Service<http::Request<Body>> for ClientTelemetry<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if !self.layer.enabled {
            return CallFuture {
                inner: self.inner.call(request),
                call: None,
            };
        }
        let labels = self.layer.labels.get(request.uri().path());
        // Without an exporter a client span would be built and thrown away on every call:
        // the next hop continues the current (server) span's trace instead, so its logs carry
        // the same trace id.
        let span = if self.layer.attributes {
            let span = tracing::debug_span!(
                target: "notesuite::grpc",
                "grpc.client",
                otel.name = %labels.full_name,
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = %labels.service,
                rpc.method = %labels.method,
                rpc.grpc.status_code = tracing::field::Empty,
                server.address = tracing::field::Empty,
                server.port = tracing::field::Empty,
            );
            if let Some((host, port)) = &self.layer.server {
                span.record("server.address", &**host);
                if let Some(port) = port {
                    span.record("server.port", port);
                }
            }
            inject_trace_context(&span.context(), request.headers_mut());
            span
        } else {
            inject_trace_context(&Span::current().context(), request.headers_mut());
            Span::none()
        };
        let call = Call::start(labels, self.layer.instruments.clone(), span);
        let inner = call.span.in_scope(|| self.inner.call(request));
        CallFuture {
            inner,
            call: Some(call),
        }
    }
}

/// One call being measured: ends when its response body ends (or is dropped).
#[derive(Debug)]
///
/// A call that is dropped unfinished (its caller went away before the answer was complete)
/// ends as CANCELLED, so that the in-flight gauge never leaks.
struct Call {
    labels: Arc<MethodLabels>,
    instruments: Instruments,
    span: Span,
    started: Instant,
    finished: bool,
}

impl Call {
    fn start(labels: Arc<MethodLabels>, instruments: Instruments, span: Span) -> Self {
        labels.active.add(1);
        Self {
            labels,
            instruments,
            span,
            started: Instant::now(),
            finished: false,
        }
    }

    fn finish(mut self, code: tonic::Code) {
        self.record(code);
    }

    fn record(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let code_number = code as i64;
        self.labels
            .record_duration(code, self.started.elapsed().as_secs_f64());
        self.labels.active.add(-1);
        self.span.record("rpc.grpc.status_code", code_number);
        if is_error(self.instruments.side, code) {
            self.span.record("otel.status_code", "ERROR");
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.record(tonic::Code::Cancelled);
    }
}

/// Which codes mark a span as failed: every non-OK code for a client; for a server only those
/// that are the server's fault (OpenTelemetry's gRPC conventions).
fn is_error(side: Side, code: tonic::Code) -> bool {
    use tonic::Code;
    match side {
        Side::Client => code != Code::Ok,
        Side::Server => matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ),
    }
}

pin_project_lite::pin_project! {
    pub struct CallFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, E> Future for CallFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            ready!(this.inner.poll(cx))
        };
        let Some(call) = this.call.take() else {
            return Poll::Ready(result);
        };
        Poll::Ready(match result {
            Ok(response) => {
                // A trailers-only answer carries its status in the headers.
                let header_status = status_code(response.headers());
                Ok(response.map(|body| {
                    Body::new(MeasuredBody {
                        inner: body,
                        header_status,
                        call: Some(call),
                    })
                }))
            }
            Err(error) => {
                call.finish(tonic::Code::Unavailable);
                Err(error)
            }
        })
    }
}

/// The `grpc-status` of a header block, if it has one. Only the code: the metrics and spans
/// need nothing else, and decoding a whole `Status` (message, details) on every call is waste.
fn status_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get(Status::GRPC_STATUS)?;
    let code = std::str::from_utf8(value.as_bytes())
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(code))
}

/// A response body that ends its call's measurement with the status in its trailers.
struct MeasuredBody {
    inner: Body,
    header_status: Option<tonic::Code>,
    call: Option<Call>,
}

impl http_body::Body for MeasuredBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| status_code(trailers).unwrap_or(tonic::Code::Unknown)),
            Some(Err(status)) => Some(status.code()),
            // A body that ends with no status anywhere was cut short: the call was abandoned.
            None => Some(self.header_status.unwrap_or(tonic::Code::Cancelled)),
        };
        if let Some(code) = code
            && let Some(call) = self.call.take()
        {
            call.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeasuredBody {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        // An empty trailers-only answer is never polled: its status is in the headers. Any
        // other body dropped before its end was abandoned: the call ends as CANCELLED.
        match self.header_status {
            Some(code) if http_body::Body::is_end_stream(&self.inner) => call.finish(code),
            _ => drop(call),
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
static TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// Writes `context`'s span as W3C trace context (`traceparent`, and `tracestate` when it has
/// one) — what the `TraceContextPropagator` set in [`crate::init`] writes, without its
/// `format!` and header-name parsing on every call.
fn inject_trace_context(context: &opentelemetry::Context, headers: &mut http::HeaderMap) {
    use opentelemetry::trace::TraceContextExt as _;
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return;
    }
    // 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>
    let mut value = [0u8; 55];
    value[..3].copy_from_slice(b"00-");
    hex_into(&mut value[3..35], &span_context.trace_id().to_bytes());
    value[35] = b'-';
    hex_into(&mut value[36..52], &span_context.span_id().to_bytes());
    value[52] = b'-';
    hex_into(
        &mut value[53..55],
        &[span_context.trace_flags().to_u8() & opentelemetry::trace::TraceFlags::SAMPLED.to_u8()],
    );
    // New on every call: kept out of HPACK's table (never indexed), where it would only push
    // out the headers that repeat.
    if let Ok(mut value) = http::HeaderValue::from_bytes(&value) {
        value.set_sensitive(true);
        headers.insert(TRACEPARENT.clone(), value);
    }
    // Whatever `tracestate` came in belongs to the caller's trace context, not this one.
    let state = span_context.trace_state().header();
    match http::HeaderValue::from_str(&state) {
        Ok(value) if !state.is_empty() => {
            headers.insert(TRACESTATE.clone(), value);
        }
        _ => {
            headers.remove(&TRACESTATE);
        }
    }
}

/// Lower-case hex of `bytes` into `out` (twice as long).
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::BoxFuture;
    use http_body_util::BodyExt as _;
    use tonic::server::UnaryService;
    use tower_layer::Layer as _;
    use tower_service::Service as _;

    struct Echo;
    impl UnaryService<()> for Echo {
        type Response = ();
        type Future = BoxFuture<'static, Result<tonic::Response<()>, Status>>;
        fn call(&mut self, _request: tonic::Request<()>) -> Self::Future {
            Box::pin(async { Ok(tonic::Response::new(())) })
        }
    }

    #[derive(Clone)]
    struct Route;
    impl tower_service::Service<http::Request<Body>> for Route {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;
        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
                Ok(grpc.unary(Echo, request).await)
            })
        }
    }

    fn server_calls(registry: &prometheus::Registry, code: &str) -> u64 {
        registry
            .gather()
            .iter()
            .filter(|family| family.name() == "rpc_server_call_duration_seconds")
            .flat_map(|family| family.get_metric())
            .filter(|metric| {
                metric
                    .get_label()
                    .iter()
                    .any(|label| label.name() == "rpc_grpc_status_code" && label.value() == code)
            })
            .map(|metric| metric.get_histogram().get_sample_count())
            .sum()
    }

    #[test]
    fn trace_context_is_written_as_the_w3c_propagator_writes_it() {
        use opentelemetry::propagation::TextMapPropagator as _;
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        };
        let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
        let state = TraceState::from_key_value([("vendor", "opaque")]).expect("state");
        for (flags, state) in [
            (TraceFlags::SAMPLED, TraceState::default()),
            (TraceFlags::default(), state),
        ] {
            let context = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("trace id"),
                SpanId::from_hex("b7ad6b7169203331").expect("span id"),
                flags,
                true,
                state,
            ));
            let mut expected = std::collections::HashMap::new();
            propagator.inject_context(&context, &mut expected);
            // The propagator writes an empty `tracestate` too; W3C lets it be left out.
            expected.retain(|_, value: &mut String| !value.is_empty());
            let mut headers = http::HeaderMap::new();
            inject_trace_context(&context, &mut headers);
            let written: std::collections::HashMap<String, String> = headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_str().expect("ascii").to_owned()))
                .collect();
            assert_eq!(written, expected);
        }
        let mut headers = http::HeaderMap::new();
        inject_trace_context(&opentelemetry::Context::new(), &mut headers);
        assert!(headers.is_empty(), "no span: nothing to hand on");
        // A caller's `tracestate` does not go on with a trace that is not the caller's.
        let context = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("trace id"),
            SpanId::from_hex("b7ad6b7169203331").expect("span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        let mut headers = http::HeaderMap::new();
        headers.insert("tracestate", http::HeaderValue::from_static("caller=state"));
        inject_trace_context(&context, &mut headers);
        assert!(!headers.contains_key("tracestate"));
    }

    #[tokio::test]
    async fn a_call_is_measured_once_with_the_status_in_its_trailers() {
        let registry = prometheus::Registry::new();
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .expect("exporter");
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_reader(reader)
            .build();
        opentelemetry::global::set_meter_provider(provider);

        let mut service = ServerLayer::new(&MethodTable::default()).layer(Route);
        let request = http::Request::builder()
            .uri("/a.B/C")
            .header("content-type", "application/grpc")
            .body(Body::new(http_body_util::Full::new(Bytes::from_static(&[
                0, 0, 0, 0, 0,
            ]))))
            .expect("request");
        let response = service.call(request).await.expect("response");
        assert_eq!(
            server_calls(&registry, "0"),
            0,
            "not measured before the body ends"
        );
        let collected = response.into_body().collect().await.expect("body");
        assert!(collected.trailers().is_some());
        assert_eq!(server_calls(&registry, "0"), 1);
    }
}
