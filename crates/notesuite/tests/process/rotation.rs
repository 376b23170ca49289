//! Signing-key rotation under load, as an operator does it, with files: the new public key
//! first (every service reloads it), then the new private key in the gateway's key directory
//! (it signs with it), then the old keys go. No call fails; old tokens work until their key
//! is removed, and are refused after.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use proto::gateway::gateway_service_client::GatewayServiceClient;
use proto::gateway::{LoginRequest, SignUpRequest};
use proto::notes::ListNotesRequest;
use proto::notes::notes_service_client::NotesServiceClient;
use tonic::transport::Channel;

use crate::support::{PATIENCE, Service, keygen, start_backend, start_gateway};

const RELOAD: &str = "200ms";
const PASSWORD: &str = "correct horse battery";

fn kid(token: &str) -> String {
    let header = token.split('.').next().expect("a JWT");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let header: serde_json::Value = serde_json::from_slice(&json).expect("JSON header");
    header["kid"].as_str().expect("a kid").to_owned()
}

async fn login(channel: Channel, email: &str) -> String {
    GatewayServiceClient::new(channel)
        .login(LoginRequest {
            email: email.into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("login")
        .into_inner()
        .access_token
}

async fn list(channel: Channel, token: &str) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(ListNotesRequest::default());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    NotesServiceClient::new(channel)
        .list_notes(request)
        .await
        .map(drop)
}

/// Waits until `service` logs `message`.
async fn logged(service: &Service, message: &str) {
    let found = service
        .logs
        .wait_for_entry(|entry| entry["message"] == message)
        .await;
    assert!(found.is_some(), "{message:?} never logged");
}

#[allow(
    clippy::print_stdout,
    reason = "the calls made and failed during the rotation are this test's report"
)]
#[tokio::test]
async fn a_key_rotation_under_load_fails_no_call() {
    let dir = tempfile::tempdir().expect("dir");
    let (private_dir, public_dir) = (dir.path().join("private"), dir.path().join("public"));
    std::fs::create_dir_all(&private_dir).expect("mkdir");
    std::fs::create_dir_all(&public_dir).expect("mkdir");
    let first = dir.path().join("first");
    let (first_private, first_public) = keygen(&{
        std::fs::create_dir_all(&first).expect("mkdir");
        first
    });
    std::fs::copy(&first_private, private_dir.join("jwt-1.pem")).expect("copy");
    std::fs::copy(&first_public, public_dir.join("jwt-1.pem")).expect("copy");
    let public = public_dir.display().to_string();
    let private = private_dir.display().to_string();
    let database = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let (users_db, notes_db) = (database("users.db"), database("notes.db"));
    let reload = ["--key-reload-interval", RELOAD];
    let users = start_backend("users", "127.0.0.1:0", &users_db, &public, &reload).await;
    let notes = start_backend("notes", "127.0.0.1:0", &notes_db, &public, &reload).await;
    let gateway = start_gateway(
        &users.url(),
        &notes.url(),
        &private,
        &["--jwt-public-key", &public, "--key-reload-interval", RELOAD],
    )
    .await;
    let channel = gateway.channel().await;
    let email = format!("rotate-{}@example.com", std::process::id());
    let first_token = GatewayServiceClient::new(channel.clone())
        .sign_up(SignUpRequest {
            email: email.clone(),
            display_name: "Rotor".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("sign up")
        .into_inner()
        .access_token;
    let first_kid = kid(&first_token);

    // The load: clients calling with the freshest token they got, logging in again now and
    // then, as long-running clients do.
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (stop_clients, stop) = tokio::sync::watch::channel(false);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (channel, email) = (channel.clone(), email.clone());
            let (failures, calls, stop) = (failures.clone(), calls.clone(), stop.clone());
            let mut token = first_token.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !*stop.borrow() {
                    n += 1;
                    if n.is_multiple_of(25) {
                        token = login(channel.clone(), &email).await;
                    }
                    if let Err(status) = list(channel.clone(), &token).await {
                        failures
                            .lock()
                            .expect("failures")
                            .push(format!("{status:?}"));
                    }
                    calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    let wait_for_calls = |more: u64| {
        let calls = calls.clone();
        async move {
            let target = calls.load(std::sync::atomic::Ordering::Relaxed) + more;
            tokio::time::timeout(PATIENCE, async {
                while calls.load(std::sync::atomic::Ordering::Relaxed) < target {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the load goes on");
        }
    };
    wait_for_calls(100).await;

    // (1) The new public key, everywhere.
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).expect("mkdir");
    let (second_private, second_public) = keygen(&second);
    std::fs::copy(&second_public, public_dir.join("jwt-2.pem")).expect("copy");
    for service in [&users, &notes, &gateway] {
        logged(service, "token verification keys changed").await;
    }
    wait_for_calls(100).await;

    // (2) The new private key: the gateway signs with it from its next reload.
    std::fs::copy(&second_private, private_dir.join("jwt-2.pem")).expect("copy");
    logged(&gateway, "token signing key changed").await;
    let second_token = login(channel.clone(), &email).await;
    let second_kid = kid(&second_token);
    assert_ne!(second_kid, first_kid, "new tokens name the new key");
    wait_for_calls(200).await;
    list(channel.clone(), &first_token)
        .await
        .expect("a token of the old key still works until the key is removed");

    let _ = stop_clients.send(true);
    for client in clients {
        client.await.expect("client");
    }
    let failures = failures.lock().expect("failures").clone();
    println!(
        "key rotation under load: {} calls, {} failed",
        calls.load(std::sync::atomic::Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");

    // (3) The old keys go: their tokens are refused everywhere, the new ones still work.
    std::fs::remove_file(private_dir.join("jwt-1.pem")).expect("remove");
    std::fs::remove_file(public_dir.join("jwt-1.pem")).expect("remove");
    tokio::time::timeout(PATIENCE, async {
        while list(channel.clone(), &first_token).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the old key's tokens are refused once it is removed");
    // Each process reloads on its own timer: notes may take one interval more.
    let direct = notes.channel().await;
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            match list(direct.clone(), &first_token).await {
                Err(status) => return status,
                Ok(()) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("refused by notes directly");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let details = tonic_types::StatusExt::get_error_details(&refused);
    assert_eq!(
        details.error_info().map(|info| info.reason.as_str()),
        Some("TOKEN_INVALID")
    );
    list(channel, &second_token)
        .await
        .expect("the new key's tokens work");
}
