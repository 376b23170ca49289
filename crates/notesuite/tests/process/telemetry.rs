//! Traces, metrics and logs, observed from outside as an operator would: an OTLP collector
//! receives what the services export, `/metrics` is scraped, logs are read.

use tokio::sync::watch;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use proto::gateway::gateway_service_client::GatewayServiceClient;
use proto::gateway::{GetProfileRequest, LoginRequest, SignUpRequest};
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::{CreateNoteRequest, GetNoteRequest, ListNotesRequest, Note};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::support::{PATIENCE, Service, Up, keygen, scrape};

/// An OTLP collector, in the test: it keeps every span (with the `service.name` of the process
/// that sent it) and the name of every metric exported, and wakes whoever waits for them.
#[derive(Clone)]
pub(crate) struct Collector {
    spans: watch::Sender<Vec<(String, Span)>>,
    metric_exports: watch::Sender<Vec<String>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| string_attribute(&resource.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                received.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
            }
        }
        self.spans.send_modify(|spans| spans.extend(received));
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut received = Vec::new();
        for resource_metrics in request.into_inner().resource_metrics {
            for scope in resource_metrics.scope_metrics {
                received.extend(scope.metrics.into_iter().map(|metric| metric.name));
            }
        }
        self.metric_exports
            .send_modify(|exports| exports.extend(received));
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Collector {
    pub(crate) async fn start() -> (Self, String) {
        let collector = Self {
            spans: watch::Sender::new(Vec::new()),
            metric_exports: watch::Sender::new(Vec::new()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(server);
        (collector, format!("http://{address}"))
    }

    /// Waits until `done` holds for the spans of `trace_id`.
    pub(crate) async fn trace(
        &self,
        trace_id: &[u8],
        done: impl Fn(&[(String, Span)]) -> bool,
    ) -> Vec<(String, Span)> {
        let of_trace = |spans: &[(String, Span)]| -> Vec<(String, Span)> {
            spans
                .iter()
                .filter(|(_, span)| span.trace_id == trace_id)
                .cloned()
                .collect()
        };
        let mut spans = self.spans.subscribe();
        let waited =
            tokio::time::timeout(PATIENCE, spans.wait_for(|spans| done(&of_trace(spans)))).await;
        match waited {
            Ok(spans) => of_trace(&spans.expect("the collector outlives the test")),
            Err(_) => panic!("trace incomplete: {:#?}", of_trace(&self.spans.borrow())),
        }
    }

    /// Waits until every metric in `names` has been exported at least once.
    async fn metrics(&self, names: &[&str]) {
        let all_there =
            |exported: &Vec<String>| names.iter().all(|name| exported.iter().any(|e| e == name));
        let mut exports = self.metric_exports.subscribe();
        let waited = tokio::time::timeout(PATIENCE, exports.wait_for(all_there)).await;
        assert!(
            waited.is_ok(),
            "not all of {names:?} exported: {:?}",
            self.metric_exports.borrow()
        );
    }
}

fn string_attribute(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(
            |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                Value::StringValue(value) => Some(value.clone()),
                Value::IntValue(value) => Some(value.to_string()),
                other => Some(format!("{other:?}")),
            },
        )
}

pub(crate) fn attribute(span: &Span, key: &str) -> Option<String> {
    string_attribute(&span.attributes, key)
}

/// The three services as separate processes, exporting to `collector`.
struct Deployment {
    gateway: Service,
    _users: Service,
    _notes: Service,
    _dir: tempfile::TempDir,
}

impl Deployment {
    async fn start(otlp_endpoint: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (private_key, public_key) = keygen(dir.path());
        let env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_owned()),
        ];
        let common = ["--metrics-listen", "127.0.0.1:0", "--drain-delay", "0s"];
        let database = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        let users_db = database("users.db");
        let notes_db = database("notes.db");
        let mut args = vec![
            "users",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &users_db,
            "--jwt-public-key",
            &public_key,
        ];
        args.extend(common);
        let users = Service::start(&args, &env).await;
        let mut args = vec![
            "notes",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &notes_db,
            "--jwt-public-key",
            &public_key,
        ];
        args.extend(common);
        let notes = Service::start(&args, &env).await;
        let (users_url, notes_url) = (users.url(), notes.url());
        let mut args = vec![
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--users-url",
            &users_url,
            "--notes-url",
            &notes_url,
            "--jwt-private-key",
            &private_key,
        ];
        args.extend(common);
        let gateway = Service::start(&args, &env).await;
        Self {
            gateway,
            _users: users,
            _notes: notes,
            _dir: dir,
        }
    }
}

async fn sign_up(channel: Channel) -> String {
    GatewayServiceClient::new(channel)
        .sign_up(SignUpRequest {
            email: format!("trace{}@example.com", std::process::id()),
            display_name: "Tracer".into(),
            password: "correct horse battery".into(),
        })
        .await
        .expect("sign up")
        .into_inner()
        .access_token
}

fn authorized<T>(message: T, token: &str, traceparent: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    if let Some(traceparent) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().expect("ascii"));
    }
    request
}

fn find<'a>(
    spans: &'a [(String, Span)],
    service: &str,
    kind: SpanKind,
    name: &str,
) -> Option<&'a Span> {
    spans
        .iter()
        .find(|(from, span)| from == service && span.kind == kind as i32 && span.name == name)
        .map(|(_, span)| span)
}

#[tokio::test]
async fn one_call_through_the_gateway_is_one_trace_across_all_three_services() {
    let (collector, endpoint) = Collector::start().await;
    let deployment = Deployment::start(&endpoint).await;
    let channel = deployment.gateway.channel().await;
    let token = sign_up(channel.clone()).await;

    // The client's own span: the gateway must continue this trace under this parent.
    let trace_id = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ];
    let client_span_id = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    GatewayServiceClient::new(channel)
        .get_profile(authorized(
            GetProfileRequest::default(),
            &token,
            Some(traceparent),
        ))
        .await
        .expect("profile");

    const GET_PROFILE: &str = "notesuite.gateway.v1.GatewayService/GetProfile";
    const GET_USER: &str = "notesuite.users.v1.UsersService/GetUser";
    const LIST_NOTES: &str = "notesuite.notes.v1.NotesService/ListNotes";
    let spans = collector
        .trace(&trace_id, |spans| {
            find(spans, "notesuite-users", SpanKind::Server, GET_USER).is_some()
                && find(spans, "notesuite-notes", SpanKind::Server, LIST_NOTES).is_some()
                && find(spans, "notesuite-gateway", SpanKind::Server, GET_PROFILE).is_some()
        })
        .await;

    let gateway =
        find(&spans, "notesuite-gateway", SpanKind::Server, GET_PROFILE).expect("gateway span");
    assert_eq!(
        gateway.parent_span_id, client_span_id,
        "the client's traceparent is the parent"
    );
    assert_eq!(attribute(gateway, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attribute(gateway, "rpc.service").as_deref(),
        Some("notesuite.gateway.v1.GatewayService")
    );
    assert_eq!(
        attribute(gateway, "rpc.method").as_deref(),
        Some("GetProfile")
    );
    assert_eq!(
        attribute(gateway, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(
        attribute(gateway, "network.peer.address").as_deref(),
        Some("127.0.0.1")
    );

    for (service, method) in [
        ("notesuite-users", GET_USER),
        ("notesuite-notes", LIST_NOTES),
    ] {
        let client = find(&spans, "notesuite-gateway", SpanKind::Client, method)
            .expect("gateway client span");
        assert_eq!(
            client.parent_span_id, gateway.span_id,
            "{method}: client span under the gateway's"
        );
        assert_eq!(
            attribute(client, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        let server = find(&spans, service, SpanKind::Server, method).expect("backend span");
        assert_eq!(
            server.parent_span_id, client.span_id,
            "{method}: backend span under the client span"
        );
        assert_eq!(
            attribute(server, "rpc.grpc.status_code").as_deref(),
            Some("0")
        );
    }
}

#[tokio::test]
async fn a_forwarded_call_is_traced_through_the_gateway_and_failures_are_marked() {
    let (collector, endpoint) = Collector::start().await;
    let deployment = Deployment::start(&endpoint).await;
    let channel = deployment.gateway.channel().await;
    let token = sign_up(channel.clone()).await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let status = NotesServiceClient::new(channel)
        .get_note(authorized(
            GetNoteRequest {
                id: "01900000-0000-7000-8000-000000000000".into(),
            },
            &token,
            Some(traceparent),
        ))
        .await
        .expect_err("no such note");
    assert_eq!(status.code(), Code::NotFound);

    let trace_id = [
        0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31,
        0x9c,
    ];
    const GET_NOTE: &str = "notesuite.notes.v1.NotesService/GetNote";
    let spans = collector
        .trace(&trace_id, |spans| {
            find(spans, "notesuite-notes", SpanKind::Server, GET_NOTE).is_some()
                && find(spans, "notesuite-gateway", SpanKind::Server, GET_NOTE).is_some()
                && find(spans, "notesuite-gateway", SpanKind::Client, GET_NOTE).is_some()
        })
        .await;
    let gateway = find(&spans, "notesuite-gateway", SpanKind::Server, GET_NOTE).expect("gateway");
    let client = find(&spans, "notesuite-gateway", SpanKind::Client, GET_NOTE).expect("client");
    let notes = find(&spans, "notesuite-notes", SpanKind::Server, GET_NOTE).expect("notes");
    assert_eq!(client.parent_span_id, gateway.span_id);
    assert_eq!(notes.parent_span_id, client.span_id);
    assert_eq!(
        attribute(notes, "rpc.grpc.status_code").as_deref(),
        Some("5")
    );
    // NOT_FOUND is the caller's problem: an error on the client side, not on the server's.
    let error = opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32;
    assert_eq!(
        client.status.as_ref().map(|status| status.code),
        Some(error)
    );
    assert_ne!(notes.status.as_ref().map(|status| status.code), Some(error));
}

#[tokio::test]
async fn health_checks_are_not_traced_and_metrics_are_pushed_over_otlp() {
    let (collector, endpoint) = Collector::start().await;
    let deployment = Deployment::start(&endpoint).await;
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(deployment.gateway.channel().await);
    let traceparent = "00-11111111111111111111111111111111-2222222222222222-01";
    let mut request = Request::new(tonic_health::pb::HealthCheckRequest::default());
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    health.check(request).await.expect("health");
    // A traced call with the same parent, made after the health check on the same process.
    let mut gateway = GatewayServiceClient::new(deployment.gateway.channel().await);
    let mut login = Request::new(LoginRequest {
        email: "nobody@example.com".into(),
        password: "not a password".into(),
    });
    login
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    gateway.login(login).await.expect_err("unknown account");

    // Spans leave in order: once the later call's span has arrived, the health check's would
    // have too.
    const LOGIN: &str = "notesuite.gateway.v1.GatewayService/Login";
    let spans = collector
        .trace(&[0x11; 16], |spans| {
            find(spans, "notesuite-gateway", SpanKind::Server, LOGIN).is_some()
        })
        .await;
    let health_spans: Vec<&str> = spans
        .iter()
        .map(|(_, span)| span.name.as_str())
        .filter(|name| name.starts_with("grpc.health"))
        .collect();
    assert!(
        health_spans.is_empty(),
        "health checks traced: {health_spans:?}"
    );

    // Metrics arrive over OTLP too.
    collector
        .metrics(&[
            "rpc.server.call.duration",
            "rpc.client.call.duration",
            "db.client.connection.count",
        ])
        .await;
}

#[tokio::test]
async fn spans_still_buffered_are_flushed_by_the_drain() {
    let (collector, endpoint) = Collector::start().await;
    // Spans would wait a minute for their batch: only the shutdown flush can deliver them.
    let mut up = Up::start_with_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        ],
    )
    .await;
    let traceparent = "00-33333333333333333333333333333333-4444444444444444-01";
    let mut login = Request::new(LoginRequest {
        email: "nobody@example.com".into(),
        password: "not a password".into(),
    });
    login
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    GatewayServiceClient::new(up.channel().await)
        .login(login)
        .await
        .expect_err("unknown account");
    assert!(
        collector.spans.borrow().is_empty(),
        "nothing is exported before the batch is due"
    );

    up.terminate();
    assert_eq!(up.exit_status().await.code(), Some(0));
    let spans = collector
        .trace(&[0x33; 16], |spans| !spans.is_empty())
        .await;
    assert!(
        find(
            &spans,
            "notesuite",
            SpanKind::Server,
            "notesuite.gateway.v1.GatewayService/Login"
        )
        .is_some(),
        "{spans:#?}"
    );
}

/// Sums the `_count` samples of a histogram whose labels include `labels`.
fn count(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| {
            labels
                .iter()
                .all(|(name, value)| sample.labels.get(name) == Some(*value))
        })
        .map(|sample| match sample.value {
            prometheus_parse::Value::Untyped(value)
            | prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value) => value,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_count_every_call_by_method_and_status_code() {
    let up = Up::start(&[]).await;
    let metrics = up.metrics.expect("banner shows the metrics endpoint");
    let channel = up.channel().await;
    let mut gateway = GatewayServiceClient::new(channel.clone());
    let email = format!("metrics{}@example.com", std::process::id());
    let token = gateway
        .sign_up(SignUpRequest {
            email: email.clone(),
            display_name: "Counter".into(),
            password: "correct horse battery".into(),
        })
        .await
        .expect("sign up")
        .into_inner()
        .access_token;
    gateway
        .login(LoginRequest {
            email: email.clone(),
            password: "correct horse battery".into(),
        })
        .await
        .expect("login");
    for _ in 0..2 {
        gateway
            .login(LoginRequest {
                email: email.clone(),
                password: "wrong password!".into(),
            })
            .await
            .expect_err("wrong password");
    }
    let mut notes = NotesServiceClient::new(channel);
    for index in 0..3 {
        notes
            .create_note(authorized(
                CreateNoteRequest {
                    note: Some(Note {
                        title: format!("n{index}"),
                        ..Note::default()
                    }),
                    request_id: String::new(),
                },
                &token,
                None,
            ))
            .await
            .expect("create");
    }
    notes
        .list_notes(authorized(
            ListNotesRequest {
                page_size: -1,
                ..Default::default()
            },
            &token,
            None,
        ))
        .await
        .expect_err("invalid");

    let scrape = scrape(metrics);
    let calls = |service: &str, method: &str, code: &str| {
        count(
            &scrape,
            "rpc_server_call_duration_seconds_count",
            &[
                ("rpc_system", "grpc"),
                ("rpc_service", service),
                ("rpc_method", method),
                ("rpc_grpc_status_code", code),
            ],
        )
    };
    const GATEWAY: &str = "notesuite.gateway.v1.GatewayService";
    const NOTES: &str = "notesuite.notes.v1.NotesService";
    const USERS: &str = "notesuite.users.v1.UsersService";
    assert_eq!(calls(GATEWAY, "SignUp", "0"), 1.0);
    assert_eq!(calls(GATEWAY, "Login", "0"), 1.0);
    assert_eq!(calls(GATEWAY, "Login", "16"), 2.0);
    // `up` serves all three in one process: the forwarded calls count at the gateway and
    // again at the notes service.
    assert_eq!(calls(NOTES, "CreateNote", "0"), 6.0);
    assert_eq!(calls(NOTES, "ListNotes", "3"), 2.0);
    assert_eq!(calls(USERS, "VerifyCredentials", "16"), 2.0);

    let client_calls = count(
        &scrape,
        "rpc_client_call_duration_seconds_count",
        &[
            ("rpc_service", USERS),
            ("rpc_method", "VerifyCredentials"),
            ("rpc_grpc_status_code", "0"),
        ],
    );
    assert_eq!(client_calls, 1.0);

    // Gauges exist for calls in flight and for the database pools.
    assert!(
        scrape
            .samples
            .iter()
            .any(|sample| sample.metric == "rpc_server_active_calls")
    );
    let pools: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == "db_client_connection_count")
        .filter_map(|sample| sample.labels.get("db_client_connection_pool_name"))
        .collect();
    assert!(
        pools.contains(&"users") && pools.contains(&"notes"),
        "{pools:?}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|sample| sample.metric == "db_client_connection_wait_time_seconds_count")
    );

    // An unknown path does not create a label of its own.
    let mut grpc = tonic::client::Grpc::new(up.channel().await);
    grpc.ready().await.expect("ready");
    let _ = grpc
        .unary::<(), (), _>(
            Request::new(()),
            http::uri::PathAndQuery::from_static("/made.up.Service/Anything"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    let after = crate::support::scrape(metrics);
    assert!(
        !after
            .samples
            .iter()
            .any(|sample| sample.labels.get("rpc_service") == Some("made.up.Service"))
    );
    assert!(
        count(
            &after,
            "rpc_server_call_duration_seconds_count",
            &[("rpc_service", "_OTHER")]
        ) >= 1.0
    );
}

/// With no exporter (spans carry no attributes then), the caller's trace still crosses the
/// gateway to notes: the INTERNAL answer and the log line carry the caller's trace id.
#[tokio::test]
async fn an_internal_error_logs_the_trace_id_the_client_received() {
    const CALLER_TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";
    let up = Up::start(&[]).await;
    let channel = up.channel().await;
    let token = sign_up(channel.clone()).await;
    // Break the notes database under the running service.
    let database = format!("sqlite://{}", up.data_dir.path().join("notes.db").display());
    let pool = sqlx::SqlitePool::connect(&database)
        .await
        .expect("open notes.db");
    sqlx::query("DROP TABLE notes")
        .execute(&pool)
        .await
        .expect("drop table");

    let status = NotesServiceClient::new(channel)
        .list_notes(authorized(
            ListNotesRequest::default(),
            &token,
            Some(&format!("00-{CALLER_TRACE_ID}-eee19b7ec3c1b174-01")),
        ))
        .await
        .expect_err("broken database");
    assert_eq!(status.code(), Code::Internal);
    let trace_id = status
        .message()
        .strip_prefix("internal error (trace id ")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected message {:?}", status.message()))
        .to_owned();
    assert_eq!(trace_id, CALLER_TRACE_ID);
    assert!(
        !status.message().contains("no such table"),
        "the cause stays in the log"
    );

    // The log line may come after the answer: wait for it.
    let Some(entry) = up
        .logs
        .wait_for_entry(|entry| entry["message"] == "internal error")
        .await
    else {
        panic!("no internal error logged: {}", up.logs.text());
    };
    assert_eq!(entry["trace_id"], trace_id.as_str(), "{entry}");
    assert!(
        entry["span_id"]
            .as_str()
            .is_some_and(|span_id| span_id.len() == 16),
        "{entry}"
    );
    assert!(
        entry["error"]
            .as_str()
            .is_some_and(|error| error.contains("no such table")),
        "{entry}"
    );
}

/// A TCP endpoint that accepts connections and never answers: the worst exporter outage.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{address}")
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn an_unreachable_exporter_neither_fails_calls_nor_grows_memory() {
    let endpoint = black_hole().await;
    // The token is minted here, not by SignUp: a password hash takes 19 MiB of memory that
    // the allocator gives back at a moment of its own, which would swamp what is measured.
    let keys = tempfile::tempdir().expect("temp dir");
    let (private_key, _) = keygen(keys.path());
    let issuer = token::Issuer::new(
        &token::SigningKey::read_pem_file(std::path::Path::new(&private_key)).expect("key"),
        std::time::Duration::from_secs(900),
    );
    let token = issuer
        .user_token("01900000-0000-7000-8000-000000000001")
        .expect("sign")
        .token;
    // A small queue fills fast; the bound is what matters, not its size.
    let up = Up::start_with_env(
        &["--jwt-private-key", &private_key],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "256"),
        ],
    )
    .await;
    let notes = NotesServiceClient::new(up.channel().await);
    let calls = |count: usize| {
        let mut notes = notes.clone();
        let token = token.clone();
        async move {
            for _ in 0..count {
                // Three spans per call: gateway server, gateway client, notes server.
                notes
                    .list_notes(authorized(ListNotesRequest::default(), &token, None))
                    .await
                    .expect("calls keep succeeding while the exporter hangs");
            }
        }
    };
    // 1,500 spans: the queue (256) and the batch stuck in the hanging export (256 more) are
    // full before the first measurement.
    calls(500).await;
    let warmed_up = resident_kib(up.pid());
    calls(2_500).await;
    let after = resident_kib(up.pid());
    // Every span after the warm-up is dropped, so nothing should grow. Measured over these
    // 7,500 spans: -0.2 to +0.4 MiB (allocator noise) with the bounded queue, +5.7 MiB when the
    // queue is large enough to keep them all (0.8 KiB per span). 2 MiB is five times the noise
    // and a third of what keeping the spans costs.
    assert!(
        after < warmed_up + 2 * 1024,
        "resident memory grew from {warmed_up} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn calls_the_client_resets_count_as_cancelled_never_unknown() {
    use futures_util::StreamExt as _;
    let up = Up::start(&[]).await;
    let metrics = up.metrics.expect("banner shows the metrics endpoint");
    let channel = up.channel().await;
    let token = GatewayServiceClient::new(channel.clone())
        .sign_up(SignUpRequest {
            email: format!("reset{}@example.com", std::process::id()),
            display_name: "Resetter".into(),
            password: "correct horse battery".into(),
        })
        .await
        .expect("sign up")
        .into_inner()
        .access_token;
    let mut notes = NotesServiceClient::new(channel.clone());
    // Watches the client walks away from once they are under way: tonic resets the stream.
    for _ in 0..3 {
        let mut watch = notes
            .watch_notes(authorized(
                proto::notes::WatchNotesRequest {
                    after_revision: 0,
                    start_from_now: true,
                },
                &token,
                None,
            ))
            .await
            .expect("watch")
            .into_inner();
        notes
            .create_note(authorized(
                CreateNoteRequest {
                    note: Some(Note {
                        title: "seen".into(),
                        ..Note::default()
                    }),
                    request_id: String::new(),
                },
                &token,
                None,
            ))
            .await
            .expect("create");
        let first = tokio::time::timeout(PATIENCE, watch.next()).await;
        assert!(matches!(first, Ok(Some(Ok(_)))), "{first:?}");
        drop(watch);
    }
    // Unary calls abandoned at every moment of their life.
    for wait in [0u64, 1, 2, 5, 10, 20] {
        let call = notes.list_notes(authorized(ListNotesRequest::default(), &token, None));
        let _ = tokio::time::timeout(std::time::Duration::from_micros(wait * 100), call).await;
    }
    // The server notices the resets asynchronously: wait until both hops counted them.
    let watch_cancelled = |service_side: &str| {
        count(
            &scrape(metrics),
            service_side,
            &[
                ("rpc_service", "notesuite.notes.v1.NotesService"),
                ("rpc_method", "WatchNotes"),
                ("rpc_grpc_status_code", "1"),
            ],
        )
    };
    tokio::time::timeout(PATIENCE, async {
        // `up` serves the gateway and notes in one process: each reset counts at both.
        while watch_cancelled("rpc_server_call_duration_seconds_count") < 6.0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every reset watch counted CANCELLED at the gateway and at notes");
    let scrape = scrape(metrics);
    let unknown: Vec<String> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric.ends_with("_call_duration_seconds_count"))
        .filter(|sample| sample.labels.get("rpc_grpc_status_code") == Some("2"))
        .map(|sample| format!("{} {:?}", sample.metric, sample.labels))
        .collect();
    assert!(unknown.is_empty(), "calls counted UNKNOWN: {unknown:#?}");
}
