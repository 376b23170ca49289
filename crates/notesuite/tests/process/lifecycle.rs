//! Signals, exit codes, configuration errors.

use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::support::{PATIENCE, Service, Up, held_call, keygen, run};

async fn check(health: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("check")
        .into_inner()
        .status()
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_and_exits_zero() {
    let mut up = Up::start(&["--drain-delay", "2s", "--shutdown-grace", "10s"]).await;
    let channel = up.channel().await;
    let mut health = HealthClient::new(channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(
        watch
            .message()
            .await
            .expect("message")
            .expect("open")
            .status(),
        ServingStatus::Serving
    );
    let (release, in_flight) = held_call::<HealthCheckRequest, HealthCheckResponse>(
        channel.clone(),
        "/grpc.health.v1.Health/Check",
    );

    up.terminate();

    assert_eq!(
        watch
            .message()
            .await
            .expect("message")
            .expect("open")
            .status(),
        ServingStatus::NotServing,
        "readiness turns off first"
    );
    assert_eq!(check(&mut health, "liveness").await, ServingStatus::Serving);

    release
        .send(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("release the held call");
    drop(release);
    let answered = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the in-flight call ends")
        .expect("task")
        .expect("the in-flight call succeeds");
    assert_eq!(answered.status(), ServingStatus::NotServing);

    let ended = tokio::time::timeout(PATIENCE, watch.message())
        .await
        .expect("the stream ends")
        .expect_err("with a status");
    assert_eq!(ended.code(), Code::Unavailable);

    assert_eq!(up.exit_status().await.code(), Some(0));
}

#[tokio::test]
async fn a_call_that_never_finishes_does_not_hold_the_exit() {
    let mut up = Up::start(&["--drain-delay", "0s", "--shutdown-grace", "500ms"]).await;
    let channel = up.channel().await;
    let (_never_released, _stuck) =
        held_call::<proto::gateway::LoginRequest, proto::gateway::LoginResponse>(
            channel.clone(),
            "/notesuite.gateway.v1.GatewayService/Login",
        );
    // Two round trips on the same connection: the first lets the held call be sent, the
    // second is answered only after the server has taken the held call's stream.
    let mut health = HealthClient::new(channel);
    check(&mut health, "").await;
    check(&mut health, "").await;
    up.terminate();
    assert_eq!(up.exit_status().await.code(), Some(0));
    let logs = up.logs.all().await;
    assert!(
        logs.lines()
            .any(|line| line.contains("shutdown grace period over")
                && line.contains("\"abandoned_calls\":1")),
        "the abandoned call is reported: {logs}"
    );
}

#[test]
fn invalid_configuration_fails_before_binding_and_names_the_setting() {
    // Hold the port: if the process bound before validating, it would fail on the port.
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = occupied.local_addr().expect("address").to_string();

    let (code, stderr) = run(&[
        "notes",
        "--listen",
        &listen,
        "--database-url",
        "mysql://db",
        "--jwt-public-key",
        "x.pem",
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--database-url"), "{stderr}");

    let (code, stderr) = run(&[
        "users",
        "--listen",
        &listen,
        "--jwt-public-key",
        "/no/such/key.pem",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--jwt-public-key"), "{stderr}");
    assert!(!stderr.contains("in use"), "{stderr}");

    let (code, stderr) = run(&[
        "gateway",
        "--listen",
        &listen,
        "--users-url",
        "ftp://users",
        "--jwt-private-key",
        "k.pem",
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--users-url"), "{stderr}");

    let (code, stderr) = run(&["up", "--drain-delay", "soon"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--drain-delay"), "{stderr}");
}

#[test]
fn a_port_in_use_is_reported_with_its_setting() {
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = occupied.local_addr().expect("address").port().to_string();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let (code, stderr) = run(&[
        "up",
        "--data-dir",
        data_dir.path().to_str().expect("utf-8 path"),
        "--gateway-port",
        &port,
        "--users-port",
        "0",
        "--notes-port",
        "0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--gateway-port"), "{stderr}");
}

#[test]
fn keygen_writes_a_key_pair_and_never_overwrites_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().to_str().expect("utf-8 path");
    let (code, stderr) = run(&["keygen", "--out-dir", out_dir]);
    assert_eq!(code, Some(0), "{stderr}");
    let private = dir.path().join("jwt-private.pem");
    let public = dir.path().join("jwt-public.pem");
    token::SigningKey::read_pem_file(&private).expect("a valid private key");
    token::VerifyingKey::read_pem_file(&public).expect("a valid public key");

    let (code, _) = run(&["keygen", "--out-dir", out_dir]);
    assert_eq!(
        code,
        Some(1),
        "a second keygen must not overwrite the first key"
    );
}

#[tokio::test]
async fn the_database_url_can_come_from_a_file_as_a_mounted_secret_provides_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, public_key) = keygen(dir.path());
    // As `kubectl create secret --from-file` leaves it: with a trailing newline.
    let url_file = dir.path().join("database-url");
    let database = dir.path().join("notes.db");
    std::fs::write(&url_file, format!("sqlite://{}\n", database.display())).expect("write");
    let url_file = url_file.display().to_string();
    let notes = Service::start(
        &[
            "notes",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--jwt-public-key",
            &public_key,
        ],
        &[("NOTESUITE_DATABASE_URL_FILE", url_file)],
    )
    .await;
    assert!(database.exists(), "notes did not open the file's database");
    drop(notes);

    let bad = dir.path().join("bad-url");
    std::fs::write(&bad, "mysql://db/notes\n").expect("write");
    for file in [bad.display().to_string(), "/no/such/secret".to_owned()] {
        let (code, stderr) = run(&[
            "users",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--database-url-file",
            &file,
            "--jwt-public-key",
            &public_key,
        ]);
        assert_eq!(code, Some(1));
        assert!(
            stderr.contains(&format!("--database-url-file {file}")),
            "{stderr}"
        );
    }
}

/// The listening socket's accept backlog, as `ss` reports it (its Send-Q for a listener).
fn backlog(address: std::net::SocketAddr) -> u32 {
    let output = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", address.port())])
        .output()
        .expect("ss (iproute2)");
    let listing = String::from_utf8_lossy(&output.stdout).into_owned();
    listing
        .lines()
        .find(|line| line.contains(&address.to_string()))
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|send_q| send_q.parse().ok())
        .unwrap_or_else(|| panic!("no listener {address} in: {listing}"))
}

#[tokio::test]
async fn the_service_port_queues_a_burst_of_connections() {
    let dir = tempfile::tempdir().expect("dir");
    let (_private, public) = keygen(dir.path());
    let database = format!("sqlite://{}", dir.path().join("notes.db").display());
    let notes = Service::start(
        &[
            "notes",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--database-url",
            &database,
            "--jwt-public-key",
            &public,
        ],
        &[],
    )
    .await;
    // 128 (the standard library's) overflowed under a proxy opening ~1,000 connections at once.
    let queued = backlog(notes.address);
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("somaxconn")
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(queued, somaxconn.min(4096), "accept backlog");
}
