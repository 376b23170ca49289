//! A long import through the gateway of a running `notesuite up`: every item is created, the
//! process's memory does not follow the stream's length, a second run creates nothing, and a
//! client that leaves mid-import leaves whole batches only.

use futures_util::StreamExt as _;
use proto::gateway::SignUpRequest;
use proto::gateway::gateway_service_client::GatewayServiceClient;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::{ImportNotesRequest, ImportNotesResponse, ListNotesRequest, Note};
use tonic::Request;
use tonic::transport::Channel;

use crate::support::{PATIENCE, Up};

const ITEMS: usize = 100_000;
/// Each item's content: the whole stream is about 100 MiB, far more than the process may grow.
const CONTENT_BYTES: usize = 1024;
/// What the process may grow by while importing (its peak over its size before).
const MAX_GROWTH_KIB: u64 = 48 * 1024;

async fn sign_up(channel: Channel, email: &str) -> String {
    GatewayServiceClient::new(channel)
        .sign_up(SignUpRequest {
            email: email.into(),
            display_name: "Importer".into(),
            password: "correct horse battery".into(),
        })
        .await
        .expect("sign up")
        .into_inner()
        .access_token
}

fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

fn item(n: usize, run: &str) -> ImportNotesRequest {
    ImportNotesRequest {
        note: Some(Note {
            title: format!("imported {n}"),
            content: "x".repeat(CONTENT_BYTES),
            ..Note::default()
        }),
        request_id: format!("01900000-{run}-7000-8000-{n:012x}"),
    }
}

async fn import(channel: Channel, token: &str, run: &'static str) -> ImportNotesResponse {
    let items = futures_util::stream::iter((0..ITEMS).map(move |n| item(n, run)));
    NotesServiceClient::new(channel)
        .import_notes(authorized(items, token))
        .await
        .expect("import")
        .into_inner()
}

async fn count(channel: Channel, token: &str) -> i32 {
    NotesServiceClient::new(channel)
        .list_notes(authorized(
            ListNotesRequest {
                page_size: 1,
                ..ListNotesRequest::default()
            },
            token,
        ))
        .await
        .expect("list")
        .into_inner()
        .total_size
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a memory field")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[allow(
    clippy::print_stdout,
    reason = "the memory measured is part of this test's report"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_note_import_takes_bounded_memory_and_runs_once() {
    let up = Up::start(&[]).await;
    let channel = up.channel().await;
    let token = sign_up(channel.clone(), "importer@example.com").await;
    // Warm up every path once, so the baseline includes what any call allocates.
    let _ = count(channel.clone(), &token).await;
    let (before, _) = memory_kib(up.pid());

    let first = tokio::time::timeout(PATIENCE * 20, import(channel.clone(), &token, "0001"))
        .await
        .expect("the import finishes");
    let (after, peak) = memory_kib(up.pid());
    println!(
        "import of {ITEMS} notes of {CONTENT_BYTES} B through the gateway: RSS before {before} \
         KiB, peak {peak} KiB, after {after} KiB"
    );
    assert_eq!(first.created_count as usize, ITEMS, "{:?}", first.errors);
    assert_eq!(first.error_count, 0);
    assert_eq!(first.revision, ITEMS as i64);
    assert!(
        peak.saturating_sub(before) < MAX_GROWTH_KIB,
        "the process grew by {} KiB importing ~{} MiB",
        peak - before,
        (ITEMS * CONTENT_BYTES) >> 20
    );

    let again = tokio::time::timeout(PATIENCE * 20, import(channel.clone(), &token, "0001"))
        .await
        .expect("the retried import finishes");
    assert_eq!(again.created_count, 0);
    assert_eq!(again.already_present_count as usize, ITEMS);
    assert_eq!(
        again.revision, ITEMS as i64,
        "the caller's revision, unchanged"
    );
    assert_eq!(count(channel, &token).await as usize, ITEMS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_import_leaves_whole_batches() {
    // Three whole batches of 256 (the server's batch for small items) and 232 items of a
    // fourth; then the client sends nothing more and leaves.
    const SENT: usize = 1000;
    const WHOLE_BATCHES: i32 = 3 * 256;
    let up = Up::start(&[]).await;
    let channel = up.channel().await;
    let token = sign_up(channel.clone(), "leaver@example.com").await;
    let items = futures_util::stream::iter((0..SENT).map(|n| item(n, "0002")))
        .chain(futures_util::stream::pending());
    let mut client = NotesServiceClient::new(channel.clone());
    let call = {
        let token = token.clone();
        tokio::spawn(async move { client.import_notes(authorized(items, &token)).await })
    };
    let written = tokio::time::timeout(PATIENCE, async {
        loop {
            let counted = count(channel.clone(), &token).await;
            if counted >= WHOLE_BATCHES {
                return counted;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the whole batches are written while the fourth waits for its items");
    assert_eq!(written, WHOLE_BATCHES);
    call.abort();
    // Once the server has seen the client leave, the count stays put: the fourth batch,
    // read in part, is never written.
    let settled = tokio::time::timeout(PATIENCE, async {
        loop {
            let counted = count(channel.clone(), &token).await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if count(channel.clone(), &token).await == counted {
                return counted;
            }
        }
    })
    .await
    .expect("the count settles");
    assert_eq!(settled, WHOLE_BATCHES, "a batch was cut or written in part");
}
