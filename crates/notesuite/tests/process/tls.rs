//! TLS on the gateway's public port and mTLS between the gateway and users/notes, with every
//! certificate rotated on disk under load, as cert-manager does it: renewed leaves, then a new
//! CA added to every bundle, leaves of the new CA, and the old CA removed. No call fails; the
//! expiry metric follows; the peer's address reaches telemetry through TLS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use proto::gateway::gateway_service_client::GatewayServiceClient;
use proto::gateway::{GetProfileRequest, LoginRequest, SignUpRequest};
use proto::notes::ListNotesRequest;
use proto::notes::notes_service_client::NotesServiceClient;
use tls::testing::{SecretDir, TestCa};
use tonic::transport::{Channel, Endpoint};

use crate::support::{PATIENCE, Service, keygen, run, scrape, start_backend};
use crate::telemetry::{Collector, attribute};

const RELOAD: &str = "200ms";
const PASSWORD: &str = "correct horse battery";

/// One side of the rotation: a CA bundle and the leaf certificates issued for it.
struct Pki {
    /// users, notes and the gateway's client certificate: `ca.crt` is the internal bundle.
    users: SecretDir,
    notes: SecretDir,
    gateway_client: SecretDir,
    /// The gateway's public certificate; `ca.crt` is the bundle its clients trust.
    gateway_public: SecretDir,
}

impl Pki {
    fn new() -> Self {
        Self {
            users: SecretDir::new(),
            notes: SecretDir::new(),
            gateway_client: SecretDir::new(),
            gateway_public: SecretDir::new(),
        }
    }

    /// Every internal leaf from `issuer`, every internal bundle `bundle`; the public leaf from
    /// `public_issuer`, its clients' bundle `public_bundle`. The serials of the new leaves:
    /// users, notes, the gateway's client and public certificates.
    fn write(
        &self,
        issuer: &TestCa,
        bundle: &[&TestCa],
        public_issuer: &TestCa,
        public_bundle: &[&TestCa],
        expiry_year: i32,
    ) -> [String; 4] {
        let leaves = [
            (
                &self.users,
                issuer.issue(&["localhost"], expiry_year),
                bundle,
            ),
            (
                &self.notes,
                issuer.issue(&["localhost"], expiry_year),
                bundle,
            ),
            (
                &self.gateway_client,
                issuer.issue(&["gateway"], expiry_year),
                bundle,
            ),
            (
                &self.gateway_public,
                public_issuer.issue(&["127.0.0.1", "localhost"], expiry_year),
                public_bundle,
            ),
        ];
        leaves.map(|(dir, leaf, bundle)| {
            dir.write(bundle, &leaf);
            leaf.serial
        })
    }
}

/// One step of the rotation: who issues the new leaves, and what every bundle holds.
struct Phase<'a> {
    name: &'static str,
    issuer: &'a TestCa,
    bundle: Vec<&'a TestCa>,
    public_issuer: &'a TestCa,
    public_bundle: Vec<&'a TestCa>,
    expiry_year: i32,
}

fn path(path: &std::path::Path) -> String {
    path.display().to_string()
}

async fn backend(kind: &str, dir: &SecretDir, database: &str, public_key: &str) -> Service {
    let (cert, key, ca) = (path(&dir.cert()), path(&dir.key()), path(&dir.ca()));
    let extra = [
        "--key-reload-interval",
        RELOAD,
        // The gateway reconnects every second or so: every phase of the rotation is seen
        // by new handshakes, not only by connections opened before it.
        "--max-connection-age",
        "1s",
        "--max-connection-age-grace",
        "5s",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ];
    start_backend(kind, "127.0.0.1:0", database, public_key, &extra).await
}

/// A channel to the gateway's TLS port, opened now: its handshake sees the certificate and the
/// client's bundle in force.
async fn connect(address: SocketAddr, client: &tls::ClientTls) -> Result<Channel, String> {
    Endpoint::from_shared(format!("https://{address}"))
        .expect("uri")
        .connect_timeout(PATIENCE)
        .timeout(PATIENCE)
        .connect_with_connector(tls::Connector::new(client.clone()))
        .await
        .map_err(|error| format!("{error:?}"))
}

fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

/// Waits until `service` has loaded the certificate `serial`.
async fn loaded(service: &Service, serial: &str) {
    let seen = service
        .logs
        .wait_for_entry(|entry| {
            entry["message"] == "tls certificate loaded" && entry["serial"] == serial
        })
        .await;
    assert!(seen.is_some(), "certificate {serial} never loaded");
}

fn expiry(metrics: SocketAddr, role: &str) -> Option<f64> {
    scrape(metrics)
        .samples
        .into_iter()
        .find(|sample| {
            sample.metric == "notesuite_tls_certificate_expiry_timestamp_seconds"
                && sample.labels.get("role") == Some(role)
        })
        .and_then(|sample| match sample.value {
            prometheus_parse::Value::Gauge(value) => Some(value),
            _ => None,
        })
}

/// 2033-12-31T00:00:00Z: the expiry of the last certificates.
const END_OF_2033: f64 = 2_019_600_000.0;

#[allow(
    clippy::print_stdout,
    reason = "the calls made and failed during the rotation are this test's report"
)]
#[tokio::test]
async fn rotating_every_certificate_and_ca_under_load_fails_no_call() {
    let dir = tempfile::tempdir().expect("dir");
    let (_, public_key) = keygen(dir.path());
    let private_key = path(&dir.path().join("jwt-private.pem"));
    let database = |name: &str| format!("sqlite://{}", dir.path().join(name).display());

    let (old_internal, new_internal) = (TestCa::new("internal 1"), TestCa::new("internal 2"));
    let (old_public, new_public) = (TestCa::new("public 1"), TestCa::new("public 2"));
    let pki = Pki::new();
    pki.write(
        &old_internal,
        &[&old_internal],
        &old_public,
        &[&old_public],
        2030,
    );

    let users = backend("users", &pki.users, &database("users.db"), &public_key).await;
    let notes = backend("notes", &pki.notes, &database("notes.db"), &public_key).await;
    let (collector, otlp) = Collector::start().await;
    let gateway = Service::start(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            // The name in the URL is what the backends' certificates must carry.
            "--users-url",
            &format!("https://localhost:{}", users.address.port()),
            "--notes-url",
            &format!("https://localhost:{}", notes.address.port()),
            "--jwt-private-key",
            &private_key,
            "--key-reload-interval",
            RELOAD,
            "--tls-cert",
            &path(&pki.gateway_public.cert()),
            "--tls-key",
            &path(&pki.gateway_public.key()),
            "--backend-ca",
            &path(&pki.gateway_client.ca()),
            "--backend-cert",
            &path(&pki.gateway_client.cert()),
            "--backend-key",
            &path(&pki.gateway_client.key()),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
            ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
        ],
    )
    .await;
    let metrics: SocketAddr = gateway
        .logs
        .wait_for_entry(|entry| entry["message"] == "serving metrics at /metrics")
        .await
        .and_then(|entry| entry["address"].as_str().map(str::to_owned))
        .expect("a metrics address")
        .parse()
        .expect("an address");

    // The gateway's clients trust the public bundle, read again as it changes.
    let public_client = tls::ClientTls::load(&pki.gateway_public.ca(), None).expect("client");
    let channel = connect(gateway.address, &public_client)
        .await
        .expect("connect");
    let email = format!("tls-{}@example.com", std::process::id());
    let token = GatewayServiceClient::new(channel.clone())
        .sign_up(SignUpRequest {
            email: email.clone(),
            display_name: "Rotor".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("sign up over TLS, through mTLS to users")
        .into_inner()
        .access_token;

    // The peer's address reaches the gateway's telemetry through TLS.
    let traceparent = "00-6e0c63257de34c926f9efcd03899a0b1-00f067aa0ba902b7-01";
    let mut request = authorized(GetProfileRequest::default(), &token);
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    GatewayServiceClient::new(channel.clone())
        .get_profile(request)
        .await
        .expect("profile");
    let trace_id = [
        0x6e, 0x0c, 0x63, 0x25, 0x7d, 0xe3, 0x4c, 0x92, 0x6f, 0x9e, 0xfc, 0xd0, 0x38, 0x99, 0xa0,
        0xb1,
    ];
    let spans = collector
        .trace(&trace_id, |spans| {
            spans
                .iter()
                .any(|(_, span)| span.kind == SpanKind::Server as i32)
        })
        .await;
    let (_, server_span) = spans
        .iter()
        .find(|(_, span)| span.kind == SpanKind::Server as i32)
        .expect("the gateway's span");
    assert_eq!(
        attribute(server_span, "network.peer.address").as_deref(),
        Some("127.0.0.1")
    );

    // The load: clients listing notes (gateway -> notes) and logging in (gateway -> users),
    // each opening a new connection to the gateway now and then, so that the public side's
    // rotation meets new handshakes too.
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let calls = Arc::new(AtomicU64::new(0));
    let (stop_clients, stop) = tokio::sync::watch::channel(false);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (email, token, address) = (email.clone(), token.clone(), gateway.address);
            let (failures, calls, stop) = (failures.clone(), calls.clone(), stop.clone());
            let (public_client, mut channel) = (public_client.clone(), channel.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !*stop.borrow() {
                    n += 1;
                    let outcome = if n.is_multiple_of(40) {
                        match connect(address, &public_client).await {
                            Ok(fresh) => {
                                channel = fresh;
                                Ok(())
                            }
                            Err(error) => Err(error),
                        }
                    } else if n.is_multiple_of(10) {
                        GatewayServiceClient::new(channel.clone())
                            .login(LoginRequest {
                                email: email.clone(),
                                password: PASSWORD.into(),
                            })
                            .await
                            .map(drop)
                            .map_err(|status| format!("{status:?}"))
                    } else {
                        NotesServiceClient::new(channel.clone())
                            .list_notes(authorized(ListNotesRequest::default(), &token))
                            .await
                            .map(drop)
                            .map_err(|status| format!("{status:?}"))
                    };
                    if let Err(error) = outcome {
                        failures.lock().expect("failures").push(error);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let wait_for_calls = |more: u64| {
        let calls = calls.clone();
        async move {
            let target = calls.load(Ordering::Relaxed) + more;
            tokio::time::timeout(PATIENCE, async {
                while calls.load(Ordering::Relaxed) < target {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the load goes on");
        }
    };
    // Long enough for the backends' connections to the gateway to be replaced (1 s age).
    let settle = || async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        wait_for_calls(100).await;
    };
    let started = Instant::now();
    wait_for_calls(100).await;

    // Each step rewrites every file of every process, with new leaves: each process logs
    // their serials as it loads them.
    let phases = [
        Phase {
            name: "renewed leaves, same CAs",
            issuer: &old_internal,
            bundle: vec![&old_internal],
            public_issuer: &old_public,
            public_bundle: vec![&old_public],
            expiry_year: 2031,
        },
        Phase {
            name: "bundles hold the old and the new CA",
            issuer: &old_internal,
            bundle: vec![&old_internal, &new_internal],
            public_issuer: &old_public,
            public_bundle: vec![&old_public, &new_public],
            expiry_year: 2032,
        },
        Phase {
            name: "leaves of the new CAs",
            issuer: &new_internal,
            bundle: vec![&old_internal, &new_internal],
            public_issuer: &new_public,
            public_bundle: vec![&old_public, &new_public],
            expiry_year: 2033,
        },
        Phase {
            name: "the old CAs removed",
            issuer: &new_internal,
            bundle: vec![&new_internal],
            public_issuer: &new_public,
            public_bundle: vec![&new_public],
            expiry_year: 2033,
        },
    ];
    let mut report = Vec::new();
    for phase in &phases {
        let before = calls.load(Ordering::Relaxed);
        let [users_serial, notes_serial, client_serial, public_serial] = pki.write(
            phase.issuer,
            &phase.bundle,
            phase.public_issuer,
            &phase.public_bundle,
            phase.expiry_year,
        );
        public_client.reload().expect("the public bundle reloads");
        loaded(&users, &users_serial).await;
        loaded(&notes, &notes_serial).await;
        loaded(&gateway, &client_serial).await;
        loaded(&gateway, &public_serial).await;
        settle().await;
        report.push(format!(
            "{}: {} calls",
            phase.name,
            calls.load(Ordering::Relaxed) - before
        ));
    }

    let _ = stop_clients.send(true);
    for client in clients {
        client.await.expect("client");
    }
    let failures = failures.lock().expect("failures").clone();
    println!(
        "certificate rotation under load: {} calls in {:.1} s, {} failed ({})",
        calls.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        failures.len(),
        report.join("; ")
    );
    assert!(failures.is_empty(), "{failures:#?}");

    // Only the new CAs are trusted now: a client of the old public CA is refused by the
    // gateway's new certificate; the old internal client certificate by the backends.
    let old_public_dir = SecretDir::new();
    old_public_dir.write(&[&old_public], &old_public.issue(&["x"], 2031));
    let stale = tls::ClientTls::load(&old_public_dir.ca(), None).expect("client");
    let refused = match connect(gateway.address, &stale).await {
        Ok(channel) => GatewayServiceClient::new(channel)
            .login(LoginRequest {
                email: email.clone(),
                password: PASSWORD.into(),
            })
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(
        refused,
        "a client trusting only the old public CA got through"
    );
    let old_internal_dir = SecretDir::new();
    old_internal_dir.write(
        &[&old_internal, &new_internal],
        &old_internal.issue(&["gateway"], 2031),
    );
    let health = |dir: &SecretDir| {
        run(&[
            "health",
            "--addr",
            &users.address.to_string(),
            "--tls-ca",
            &path(&dir.ca()),
            "--tls-cert",
            &path(&dir.cert()),
            "--tls-key",
            &path(&dir.key()),
            "--tls-server-name",
            "localhost",
        ])
    };
    let (code, stderr) = health(&old_internal_dir);
    assert_eq!(
        code,
        Some(1),
        "an old client certificate was accepted: {stderr}"
    );
    let (code, stderr) = health(&pki.gateway_client);
    assert_eq!(code, Some(0), "notesuite health over mTLS: {stderr}");

    // The metric shows the certificates in force, not the first ones.
    assert_eq!(expiry(metrics, "server"), Some(END_OF_2033));
    assert_eq!(expiry(metrics, "client"), Some(END_OF_2033));
}
