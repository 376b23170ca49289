//! The database goes away under a running notes service, and comes back: calls fail fast
//! with UNAVAILABLE, readiness follows, liveness does not, and nothing needs a restart.
//! On a scratch PostgreSQL cluster of the test's own, never the shared server.

use std::time::{Duration, Instant};

use database::PoolConfig;
use database::testing::ScratchCluster;
use notes::store::PostgresNoteStore;
use proto::notes::{CreateNoteRequest, GetNoteRequest};
use shell::ServeConfig;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_types::StatusExt as _;

use crate::helpers::{assert_error, draft, with_token};

/// Nothing in this test may wait longer than this: a hang is a failure, not a slow pass.
const BOUND: Duration = Duration::from_secs(30);

/// Waits on a health Watch stream until it reports `wanted`.
async fn watch_until(
    stream: &mut tonic::Streaming<HealthCheckResponse>,
    wanted: ServingStatus,
) -> Duration {
    let started = Instant::now();
    tokio::time::timeout(BOUND, async {
        while let Some(message) = stream.next().await {
            if message.expect("watch").status == wanted as i32 {
                return;
            }
        }
        panic!("the health stream ended before {wanted:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("health did not turn {wanted:?} within {BOUND:?}"));
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_fails_calls_fast_flips_readiness_and_heals_without_a_restart() {
    // The service's logs go to the test's output, so that an unexpected answer shows its cause.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    let cluster = tokio::task::spawn_blocking(ScratchCluster::start)
        .await
        .expect("scratch cluster");
    let url = cluster.url("postgres");
    let pool = PoolConfig {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
    };
    let key = token::SigningKey::generate().expect("key");
    let store = PostgresNoteStore::open(&url, &pool).await.expect("open");
    let server = shell::spawn(
        notes::definition(store, &key.verifying_key()),
        ServeConfig {
            drain_delay: Duration::ZERO,
            readiness_interval: Duration::from_millis(250),
            ..ServeConfig::default()
        },
    )
    .await
    .expect("serve");
    let channel = tonic::transport::Channel::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let token = token::Issuer::new(&key, Duration::from_secs(900))
        .user_token("01900000-0000-7000-8000-00000000000a")
        .expect("sign")
        .token;
    let mut notes = proto::notes::notes_service_client::NotesServiceClient::new(channel.clone());
    let health = HealthClient::new(channel);
    let create = || {
        with_token(
            CreateNoteRequest {
                note: Some(draft("Outage", "", &[])),
                request_id: String::new(),
            },
            &token,
        )
    };
    let kept = notes
        .create_note(create())
        .await
        .expect("create before the outage")
        .into_inner()
        .note
        .expect("note");
    let mut readiness = health
        .clone()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch readiness")
        .into_inner();
    let mut service_readiness = health
        .clone()
        .watch(HealthCheckRequest {
            service: notes::SERVICE_NAME.into(),
        })
        .await
        .expect("watch service readiness")
        .into_inner();
    watch_until(&mut readiness, ServingStatus::Serving).await;

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .expect("stop the cluster");
    let stopped = Instant::now();
    watch_until(&mut readiness, ServingStatus::NotServing).await;
    watch_until(&mut service_readiness, ServingStatus::NotServing).await;
    eprintln!(
        "outage: readiness NOT_SERVING {:?} after the stop",
        stopped.elapsed()
    );

    // Calls fail, fast and clearly, with a delay to retry after.
    for attempt in 0..3 {
        let started = Instant::now();
        let status = tokio::time::timeout(BOUND, notes.create_note(create()))
            .await
            .expect("a call while the database is down does not hang")
            .expect_err("the database is down");
        let waited = started.elapsed();
        assert_error(&status, Code::Unavailable, "DATABASE_UNAVAILABLE");
        assert!(
            status.get_error_details().retry_info().is_some(),
            "UNAVAILABLE says when to retry"
        );
        eprintln!("outage: create {attempt} failed UNAVAILABLE after {waited:?}");
    }
    let status = tokio::time::timeout(
        BOUND,
        notes.get_note(with_token(
            GetNoteRequest {
                id: kept.id.clone(),
            },
            &token,
        )),
    )
    .await
    .expect("a read while the database is down does not hang")
    .expect_err("the database is down");
    assert_error(&status, Code::Unavailable, "DATABASE_UNAVAILABLE");

    let liveness = health
        .clone()
        .check(HealthCheckRequest {
            service: shell::LIVENESS.into(),
        })
        .await
        .expect("liveness answers")
        .into_inner();
    assert_eq!(
        liveness.status,
        ServingStatus::Serving as i32,
        "alive throughout"
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.resume();
        cluster
    })
    .await
    .expect("restart the cluster");
    let back = watch_until(&mut readiness, ServingStatus::Serving).await;
    eprintln!("outage: readiness SERVING again {back:?} after the database came back");
    let read = notes
        .get_note(with_token(
            GetNoteRequest {
                id: kept.id.clone(),
            },
            &token,
        ))
        .await
        .expect("reads work again, no restart")
        .into_inner()
        .note
        .expect("note");
    assert_eq!(read, kept, "nothing lost");
    notes
        .create_note(create())
        .await
        .expect("writes work again, no restart");
    drop(server);
    drop(cluster);
}
