//! Secrets stay secret: with every log line on (debug), a suite that signs up, logs in, works
//! with notes and refuses bad tokens writes no password, token or private key anywhere in its
//! logs, and its error messages never echo a credential back.

use proto::gateway::gateway_service_client::GatewayServiceClient;
use proto::gateway::{LoginRequest, SignUpRequest};
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::{CreateNoteRequest, ListNotesRequest, Note};

use crate::support::{Up, keygen};

const PASSWORD: &str = "a-very-secret-passphrase-42";

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

#[tokio::test]
async fn no_password_token_or_key_reaches_the_logs_or_an_error_message() {
    let dir = tempfile::tempdir().expect("dir");
    let (private_key, _public_key) = keygen(dir.path());
    let key_body: Vec<String> = std::fs::read_to_string(&private_key)
        .expect("key")
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::to_owned)
        .collect();
    let mut up = Up::start_with_env(
        &["--jwt-private-key", &private_key],
        &[("RUST_LOG", "debug")],
    )
    .await;
    let channel = up.channel().await;
    let mut gateway = GatewayServiceClient::new(channel.clone());
    let email = format!("secret{}@example.com", std::process::id());
    let signed_up = gateway
        .sign_up(SignUpRequest {
            email: email.clone(),
            display_name: "Keeper".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("sign up")
        .into_inner()
        .access_token;
    let token = gateway
        .login(LoginRequest {
            email: email.clone(),
            password: PASSWORD.into(),
        })
        .await
        .expect("login")
        .into_inner()
        .access_token;
    let wrong = gateway
        .login(LoginRequest {
            email,
            password: format!("{PASSWORD}-wrong"),
        })
        .await
        .expect_err("wrong password");
    assert!(!wrong.message().contains(PASSWORD), "{wrong:?}");

    let mut notes = NotesServiceClient::new(channel);
    notes
        .create_note(with_token(
            CreateNoteRequest {
                note: Some(Note {
                    title: "kept".into(),
                    ..Note::default()
                }),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .expect("create");
    // A token with its signature changed, and garbage: refused without being echoed.
    let (unsigned, signature) = token.rsplit_once('.').expect("a JWT");
    let tampered = format!("{unsigned}.{}", signature.chars().rev().collect::<String>());
    for bad in [tampered.as_str(), "not.a.token", "garbage-credential-123"] {
        let refused = notes
            .list_notes(with_token(ListNotesRequest::default(), bad))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(!refused.message().contains(bad), "{refused:?}");
        assert!(!format!("{:?}", refused.metadata()).contains(bad));
    }

    up.terminate();
    up.exit_status().await;
    let logs = up.logs.all().await;
    assert!(
        logs.lines().count() > 10,
        "debug logging is on: {} lines",
        logs.lines().count()
    );
    let secrets = [
        ("the password", PASSWORD.to_owned()),
        ("a token", token.clone()),
        (
            "a token's signature",
            token.rsplit('.').next().unwrap_or_default().to_owned(),
        ),
        ("the sign-up token", signed_up.clone()),
        ("a tampered token", tampered.clone()),
        ("a garbage credential", "garbage-credential-123".to_owned()),
    ];
    for (what, secret) in secrets
        .into_iter()
        .chain(key_body.into_iter().map(|line| ("the private key", line)))
    {
        assert!(!logs.contains(&secret), "{what} is in the logs");
    }
}
