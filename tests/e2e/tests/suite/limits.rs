//! The gateway's rate limits, end to end: a gateway beside the suite's, with low limits, called
//! as an attacker and as bystanders would.

use std::time::Duration;

use database::testing::Backend;
use e2e::{TestSuite, assert_error};
use proto::gateway::LoginRequest;
use proto::gateway::gateway_service_client::GatewayServiceClient;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::{ListNotesRequest, WatchNotesRequest};
use tonic::Code;
use tonic_types::StatusExt as _;

/// A suite, and a gateway beside it over the same backends with `limits`.
async fn suite_and_limited_gateway(
    backend: Backend,
    limits: gateway::RateLimitConfig,
) -> (TestSuite, shell::Spawned, tempfile::TempDir) {
    let (suite, key, keys) = e2e::spawn_suite_with_key(backend).await;
    let config = gateway::GatewayConfig {
        rate_limits: limits,
        ..e2e::gateway_config(
            format!("http://{}", suite.users_addr),
            format!("http://{}", suite.notes_addr),
        )
    };
    let limited = e2e::spawn_gateway(&config, &key).await;
    (suite, limited, keys)
}

fn limits(args: &[&str]) -> gateway::RateLimitConfig {
    #[derive(clap::Parser)]
    struct Limits {
        #[command(flatten)]
        limits: gateway::RateLimitConfig,
    }
    let mut argv = vec!["limits"];
    argv.extend(args);
    <Limits as clap::Parser>::parse_from(argv).limits
}

/// The `RetryInfo` delay of a RATE_LIMITED answer.
fn retry_delay(status: &tonic::Status) -> Duration {
    assert_error(status, Code::ResourceExhausted, "RATE_LIMITED");
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a retry delay")
}

async fn a_login_flood_is_limited_and_says_when_to_retry(backend: Backend) {
    let (suite, limited, _keys) = suite_and_limited_gateway(
        backend,
        limits(&[
            "--rate-limit-login-address",
            "5/m",
            "--rate-limit-login-account",
            "8/m",
        ]),
    )
    .await;
    let victim = suite.sign_up().await;
    let mut gateway = GatewayServiceClient::new(e2e::channel(limited.address).await);
    let mut refused = 0;
    for _ in 0..12 {
        let answer = gateway
            .login(LoginRequest {
                email: victim.email.clone(),
                password: "not the password".into(),
            })
            .await
            .expect_err("wrong password");
        if answer.code() == Code::ResourceExhausted {
            let delay = retry_delay(&answer);
            assert!(
                delay > Duration::ZERO && delay <= Duration::from_secs(12),
                "{delay:?}"
            );
            refused += 1;
        } else {
            assert_eq!(answer.code(), Code::Unauthenticated, "{answer:?}");
        }
    }
    assert_eq!(refused, 12 - 5, "5 a minute from one address");
    // A bystander's calls through the same gateway are not limited by the flood.
    let bystander = suite.sign_up().await;
    let mut notes = NotesServiceClient::new(e2e::channel(limited.address).await);
    for _ in 0..20 {
        notes
            .list_notes(bystander.request(ListNotesRequest::default()))
            .await
            .expect("the bystander is served");
    }
}

async fn a_users_calls_are_limited_per_user(backend: Backend) {
    let (suite, limited, _keys) =
        suite_and_limited_gateway(backend, limits(&["--rate-limit-read", "5/m"])).await;
    let (busy, other) = (suite.sign_up().await, suite.sign_up().await);
    let mut notes = NotesServiceClient::new(e2e::channel(limited.address).await);
    for _ in 0..5 {
        notes
            .list_notes(busy.request(ListNotesRequest::default()))
            .await
            .expect("within the burst");
    }
    let over = notes
        .list_notes(busy.request(ListNotesRequest::default()))
        .await
        .expect_err("over the limit");
    assert!(retry_delay(&over) <= Duration::from_secs(12));
    notes
        .list_notes(other.request(ListNotesRequest::default()))
        .await
        .expect("another user is not limited");
}

async fn a_users_open_streams_and_calls_in_flight_are_bounded(backend: Backend) {
    let (suite, limited, _keys) = suite_and_limited_gateway(
        backend,
        limits(&[
            "--rate-limit-calls-in-flight",
            "2",
            "--rate-limit-streams-open",
            "2",
        ]),
    )
    .await;
    let (ada, bob) = (suite.sign_up().await, suite.sign_up().await);
    let mut notes = NotesServiceClient::new(e2e::channel(limited.address).await);
    // Calls that ended free their place: many in a row are all served.
    for _ in 0..10 {
        notes
            .list_notes(ada.request(ListNotesRequest::default()))
            .await
            .expect("one at a time");
    }
    let watcher = notes.clone();
    let watch = || {
        let mut notes = watcher.clone();
        let request = ada.request(WatchNotesRequest::default());
        async move {
            let mut stream = notes.watch_notes(request).await?.into_inner();
            stream.message().await?;
            Ok::<_, tonic::Status>(stream)
        }
    };
    let first = watch().await.expect("first stream");
    let _second = watch().await.expect("second stream");
    let third = watch().await.expect_err("a third stream is over the bound");
    assert_error(&third, Code::ResourceExhausted, "TOO_MANY_CALLS");
    assert!(third.get_details_retry_info().is_some(), "{third:?}");
    // Another user is not affected, and the bound holds streams only: unary calls still go.
    let mut bobs = notes
        .watch_notes(bob.request(WatchNotesRequest::default()))
        .await
        .expect("bob watches")
        .into_inner();
    bobs.message().await.expect("bob's heartbeat");
    notes
        .list_notes(ada.request(ListNotesRequest::default()))
        .await
        .expect("a unary call beside the streams");
    // A stream the client leaves frees its place.
    drop(first);
    let reopened = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch().await {
                Ok(stream) => return stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert!(
        reopened.is_ok(),
        "the place of a closed stream was never freed"
    );
}

database::backend_tests!(
    a_users_open_streams_and_calls_in_flight_are_bounded,
    a_login_flood_is_limited_and_says_when_to_retry,
    a_users_calls_are_limited_per_user,
);
