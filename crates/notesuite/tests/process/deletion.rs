//! An account deleted while notes is down: the deletion succeeds, the account's token is
//! refused at once where it can be, and the purge of its notes waits, durably, until notes
//! is back, then runs by itself — no orphan, no restart of anything else.

use std::time::{Duration, Instant};

use proto::gateway::SignUpRequest;
use proto::gateway::gateway_service_client::GatewayServiceClient;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::{CreateNoteRequest, ListNotesRequest, Note, PurgeUserNotesRequest};
use proto::users::users_service_client::UsersServiceClient;
use proto::users::{DeleteUserRequest, ListAccountDeletionsRequest};
use tonic::Request;
use tonic_types::StatusExt as _;

use crate::support::{PATIENCE, keygen, start_backend, start_gateway};

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// A port nobody listens at now, for a service that must come back at the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

#[allow(
    clippy::print_stdout,
    reason = "how long the pending purge took once notes was back is this test's report"
)]
#[tokio::test]
async fn a_deletion_while_notes_is_down_is_purged_once_it_is_back() {
    let dir = tempfile::tempdir().expect("dir");
    let (private, public) = keygen(dir.path());
    let issuer = token::Issuer::new(
        &token::SigningKey::read_pem_file(std::path::Path::new(&private)).expect("key"),
        Duration::from_secs(900),
    );
    let database = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let (users_db, notes_db) = (database("users.db"), database("notes.db"));
    let notes_listen = format!("127.0.0.1:{}", free_port());
    let users = start_backend("users", "127.0.0.1:0", &users_db, &public, &[]).await;
    let notes = start_backend("notes", &notes_listen, &notes_db, &public, &[]).await;
    let gateway = start_gateway(
        &users.url(),
        &format!("http://{notes_listen}"),
        &private,
        &[],
    )
    .await;
    let channel = gateway.channel().await;
    let signed_up = GatewayServiceClient::new(channel.clone())
        .sign_up(SignUpRequest {
            email: format!("gone-{}@example.com", std::process::id()),
            display_name: "Gone".into(),
            password: "correct horse battery".into(),
        })
        .await
        .expect("sign up")
        .into_inner();
    let (user_id, token) = (signed_up.user.expect("user").id, signed_up.access_token);
    for index in 0..3 {
        NotesServiceClient::new(channel.clone())
            .create_note(with_token(
                CreateNoteRequest {
                    note: Some(Note {
                        title: format!("note {index}"),
                        ..Note::default()
                    }),
                    request_id: String::new(),
                },
                &token,
            ))
            .await
            .expect("create");
    }

    // notes goes down; the account is deleted meanwhile.
    notes.signal("-KILL");
    notes.exited().await;
    let deleting = Instant::now();
    UsersServiceClient::new(channel.clone())
        .delete_user(with_token(
            DeleteUserRequest {
                id: user_id.clone(),
                etag: String::new(),
            },
            &token,
        ))
        .await
        .expect("the deletion does not wait for notes");
    let delete_took = deleting.elapsed();
    let through_gateway = NotesServiceClient::new(channel.clone())
        .list_notes(with_token(ListNotesRequest::default(), &token))
        .await
        .expect_err("refused at the gateway at once");
    assert_eq!(
        reason(&through_gateway),
        "ACCOUNT_DELETED",
        "{through_gateway:?}"
    );
    let users_direct = UsersServiceClient::new(users.channel().await);
    let pending = |users: UsersServiceClient<tonic::transport::Channel>| {
        let service = issuer.service_token("gateway").expect("sign").token;
        async move {
            users
                .clone()
                .list_account_deletions(with_token(
                    ListAccountDeletionsRequest {
                        pending_only: true,
                        ..Default::default()
                    },
                    &service,
                ))
                .await
                .expect("list deletions")
                .into_inner()
                .deletions
        }
    };
    let waiting = pending(users_direct.clone()).await;
    assert!(
        waiting.iter().any(|deletion| deletion.user_id == user_id),
        "the purge waits, recorded: {waiting:?}"
    );

    // notes comes back: the purge runs by itself.
    let notes = start_backend("notes", &notes_listen, &notes_db, &public, &[]).await;
    let back = Instant::now();
    let notes_direct = NotesServiceClient::new(notes.channel().await);
    loop {
        let listed = notes_direct
            .clone()
            .list_notes(with_token(ListNotesRequest::default(), &token))
            .await;
        let refused = listed
            .as_ref()
            .is_err_and(|status| reason(status) == "ACCOUNT_DELETED");
        if refused && pending(users_direct.clone()).await.is_empty() {
            break;
        }
        assert!(
            back.elapsed() < PATIENCE,
            "the pending purge never ran: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "notes down: DeleteUser answered OK in {delete_took:?}; the pending purge ran {:?} after notes was back",
        back.elapsed()
    );
    let again = notes_direct
        .clone()
        .purge_user_notes(with_token(
            PurgeUserNotesRequest {
                user_id: user_id.clone(),
            },
            &issuer.service_token("gateway").expect("sign").token,
        ))
        .await
        .expect("purge again")
        .into_inner();
    assert_eq!(
        again.purged_note_count, 0,
        "every note went with the first purge"
    );
    let logged = gateway
        .logs
        .wait_for(|lines| {
            lines
                .iter()
                .any(|line| line.contains("deleted account's notes purged"))
        })
        .await;
    assert!(logged.is_some(), "{}", gateway.logs.all().await);
}
