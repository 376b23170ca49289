//! `notesuite health` and `notesuite check`, the tools a container without a shell runs:
//! their exit codes and what they say, when things work and when they do not.

use std::process::Command;

use crate::support::{BINARY, Service, Up, keygen};

const GATEWAY: &str = "notesuite.gateway.v1.GatewayService";

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn notesuite(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let output = Command::new(BINARY)
        .args(args)
        .env_remove("NOTESUITE_LISTEN")
        .envs(env.iter().copied())
        .output()
        .expect("run notesuite");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// An address nobody listens on: bound, then released.
fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    address.to_string()
}

#[tokio::test]
async fn health_exits_zero_for_every_name_a_service_serves() {
    let up = Up::start(&[]).await;
    let gateway = up.gateway.to_string();
    for name in ["", GATEWAY, "liveness"] {
        let outcome = notesuite(&["health", "--addr", &gateway, "--service", name], &[]);
        assert_eq!(outcome.code, Some(0), "{name:?}: {}", outcome.stderr);
        assert!(outcome.stdout.contains("SERVING"), "{}", outcome.stdout);
    }
}

#[tokio::test]
async fn health_reads_the_address_of_the_service_in_the_same_container() {
    let up = Up::start(&[]).await;
    let listen = format!("0.0.0.0:{}", up.gateway.port());
    let outcome = notesuite(&["health"], &[("NOTESUITE_LISTEN", &listen)]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);

    let outcome = notesuite(&["health"], &[]);
    assert_eq!(outcome.code, Some(1));
    assert!(
        outcome.stderr.contains("--addr") && outcome.stderr.contains("NOTESUITE_LISTEN"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn health_fails_readably_when_nothing_listens_at_the_address() {
    let address = closed_address();
    let outcome = notesuite(&["health", "--addr", &address, "--timeout", "2s"], &[]);
    assert_eq!(outcome.code, Some(1));
    assert!(
        outcome
            .stderr
            .starts_with(&format!("notesuite health: {address} \"\": cannot connect")),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stdout.is_empty(), "{}", outcome.stdout);
}

#[tokio::test]
async fn health_fails_for_a_name_the_service_does_not_serve() {
    let up = Up::start(&[]).await;
    let gateway = up.gateway.to_string();
    let service = "notesuite.notes.v1.NotesService";
    let outcome = notesuite(&["health", "--addr", &gateway, "--service", service], &[]);
    assert_eq!(outcome.code, Some(1));
    assert!(outcome.stderr.contains("NOT_FOUND"), "{}", outcome.stderr);
}

#[test]
fn health_rejects_a_malformed_address_naming_it() {
    let outcome = notesuite(&["health", "--addr", "https://gateway:50050"], &[]);
    assert_eq!(outcome.code, Some(1));
    assert!(
        outcome.stderr.contains("https://gateway:50050"),
        "{}",
        outcome.stderr
    );
}

#[tokio::test]
async fn health_says_not_serving_while_the_service_drains_but_liveness_stays_serving() {
    let mut up = Up::start(&["--drain-delay", "10s"]).await;
    let gateway = up.gateway.to_string();
    up.terminate();
    // The readiness flip is immediate on SIGTERM; the drain delay keeps the port open.
    let mut readiness = notesuite(&["health", "--addr", &gateway], &[]);
    for _ in 0..50 {
        if readiness.code != Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        readiness = notesuite(&["health", "--addr", &gateway], &[]);
    }
    assert_eq!(readiness.code, Some(1), "{}", readiness.stdout);
    assert!(
        readiness.stderr.contains("NOT_SERVING"),
        "{}",
        readiness.stderr
    );
    let liveness = notesuite(
        &["health", "--addr", &gateway, "--service", "liveness"],
        &[],
    );
    assert_eq!(liveness.code, Some(0), "{}", liveness.stderr);
    assert!(up.exit_status().await.success());
}

#[tokio::test]
async fn check_passes_against_a_running_suite_and_reports_every_step() {
    let up = Up::start(&[]).await;
    let outcome = notesuite(
        &[
            "check",
            "--gateway",
            &up.gateway.to_string(),
            "--users",
            &up.users.expect("users address").to_string(),
            "--notes",
            &up.notes.expect("notes address").to_string(),
        ],
        &[],
    );
    assert_eq!(
        outcome.code,
        Some(0),
        "{}\n{}",
        outcome.stdout,
        outcome.stderr
    );
    for step in [
        "ok    gateway health \"notesuite.gateway.v1.GatewayService\" SERVING",
        "ok    users health \"notesuite.users.v1.UsersService\" SERVING",
        "ok    notes reflection v1alpha lists its services",
        "ok    gateway reflection v1 lists its services",
        "ok    create a note",
        "ok    get the note back",
        "ok    the deleted note is NOT_FOUND",
        "ok    delete the account (clean up)",
    ] {
        assert!(
            outcome.stdout.contains(step),
            "no {step:?} in:\n{}",
            outcome.stdout
        );
    }
    assert!(!outcome.stdout.contains("FAIL"), "{}", outcome.stdout);
    assert!(
        outcome
            .stdout
            .trim_end()
            .ends_with("check passed: 21 steps"),
        "{}",
        outcome.stdout
    );
}

#[tokio::test]
async fn check_fails_naming_the_step_when_a_service_is_down_and_still_cleans_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (private_key, public_key) = keygen(dir.path());
    let database = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let (users_db, notes_db) = (database("users.db"), database("notes.db"));
    let common = [
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--drain-delay",
        "0s",
    ];
    let users = start_backend("users", &users_db, &public_key, &common).await;
    let notes = start_backend("notes", &notes_db, &public_key, &common).await;
    let (users_url, notes_url) = (users.url(), notes.url());
    let mut args = vec![
        "gateway",
        "--users-url",
        &users_url,
        "--notes-url",
        &notes_url,
        "--jwt-private-key",
        &private_key,
    ];
    args.extend(common);
    let gateway = Service::start(&args, &[]).await;
    let notes_address = notes.address.to_string();
    drop(notes);

    let outcome = notesuite(
        &[
            "check",
            "--gateway",
            &gateway.address.to_string(),
            "--notes",
            &notes_address,
            "--timeout",
            "3s",
        ],
        &[],
    );
    assert_eq!(outcome.code, Some(1), "{}", outcome.stdout);
    assert!(
        outcome.stdout.contains(&format!(
            "FAIL  notes reachable: cannot connect to http://{notes_address}/"
        )),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("FAIL  create a note: UNAVAILABLE"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("ok    sign up"),
        "{}",
        outcome.stdout
    );
    // The account is deleted although the round trip failed halfway.
    assert!(
        outcome
            .stdout
            .contains("ok    delete the account (clean up)"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stderr
            .starts_with("notesuite check: check failed: 2 of"),
        "{}",
        outcome.stderr
    );
}

async fn start_backend(name: &str, database: &str, public_key: &str, common: &[&str]) -> Service {
    let mut args = vec![
        name,
        "--database-url",
        database,
        "--jwt-public-key",
        public_key,
    ];
    args.extend(common);
    Service::start(&args, &[]).await
}

#[test]
fn check_fails_readably_on_a_wrong_gateway_address() {
    let address = closed_address();
    let outcome = notesuite(&["check", "--gateway", &address, "--timeout", "2s"], &[]);
    assert_eq!(outcome.code, Some(1));
    assert!(
        outcome
            .stdout
            .contains("FAIL  gateway reachable: cannot connect"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stdout
            .contains("skip  round trip through the gateway: the gateway is unreachable"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stderr.contains("check failed"),
        "{}",
        outcome.stderr
    );
}

#[tokio::test]
async fn up_serves_tls_on_the_gateway_port_when_given_a_certificate() {
    let ca = tls::testing::TestCa::new("up test CA");
    let secret = tls::testing::SecretDir::new();
    secret.write(&[&ca], &ca.issue(&["localhost", "127.0.0.1"], 2099));
    let (cert, key, ca_file) = (
        secret.cert().display().to_string(),
        secret.key().display().to_string(),
        secret.ca().display().to_string(),
    );
    let up = Up::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let gateway = up.gateway.to_string();
    let over_tls = notesuite(
        &[
            "health",
            "--addr",
            &gateway,
            "--tls-ca",
            &ca_file,
            "--tls-server-name",
            "localhost",
        ],
        &[],
    );
    assert_eq!(over_tls.code, Some(0), "{}", over_tls.stderr);
    let plaintext = notesuite(&["health", "--addr", &gateway, "--timeout", "2s"], &[]);
    assert_eq!(plaintext.code, Some(1), "a plaintext client is not served");
    // users and notes stay plaintext on loopback.
    let users = up.users.expect("users' address").to_string();
    let direct = notesuite(&["health", "--addr", &users], &[]);
    assert_eq!(direct.code, Some(0), "{}", direct.stderr);
}
