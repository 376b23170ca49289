use std::time::Duration;

use e2e::assert_error;
use proto::gateway::SignUpRequest;
use proto::gateway::gateway_service_client::GatewayServiceClient;
use proto::notes::ListNotesRequest;
use proto::notes::notes_service_client::NotesServiceClient;
use tonic::Code;

/// A gateway whose backends are not running.
async fn gateway_without_backends() -> (shell::Spawned, token::Issuer) {
    // Bound and closed again: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let key = token::SigningKey::generate().expect("key");
    let config = gateway::GatewayConfig {
        default_deadline: Duration::from_secs(5),
        ..e2e::gateway_config(format!("http://{closed}"), format!("http://{closed}"))
    };
    let server = e2e::spawn_gateway(&config, &key).await;
    (server, token::Issuer::new(&key, Duration::from_secs(900)))
}

#[tokio::test]
async fn a_backend_that_is_down_is_unavailable_not_internal() {
    let (gateway, issuer) = gateway_without_backends().await;
    let channel = e2e::channel(gateway.address).await;

    let sign_up = GatewayServiceClient::new(channel.clone())
        .sign_up(SignUpRequest {
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            password: "correct horse battery".into(),
        })
        .await
        .expect_err("users is down");
    assert_error(&sign_up, Code::Unavailable, "BACKEND_UNAVAILABLE");

    let token = issuer
        .user_token("01900000-0000-7000-8000-000000000000")
        .expect("sign")
        .token;
    let forwarded = NotesServiceClient::new(channel)
        .list_notes(e2e::with_token(ListNotesRequest::default(), &token))
        .await
        .expect_err("notes is down");
    assert_error(&forwarded, Code::Unavailable, "BACKEND_UNAVAILABLE");
}
