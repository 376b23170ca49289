//! Deleting an account ends it: its tokens are refused at every door, its notes are purged,
//! its open watches end, and nobody else is touched.

use std::time::{Duration, Instant};

use database::testing::Backend;
use e2e::{TestSuite, User, assert_error};
use futures_util::StreamExt as _;
use proto::gateway::GetProfileRequest;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::{
    CreateNoteRequest, ListNotesRequest, Note, PurgeUserNotesRequest, WatchNotesRequest,
};
use proto::users::users_service_client::UsersServiceClient;
use proto::users::{DeleteUserRequest, GetUserRequest, ListAccountDeletionsRequest};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

/// How long a deletion made elsewhere may take to reach every door: users' deletions are read
/// every second by the gateway, which purges them at notes; each replica reads its own
/// database every second. Generous for a loaded CI machine.
const BOUND: Duration = Duration::from_secs(10);

fn draft(title: &str) -> Note {
    Note {
        title: title.into(),
        content: "to be purged".into(),
        ..Default::default()
    }
}

async fn create(notes: &mut NotesServiceClient<tonic::transport::Channel>, user: &User, n: usize) {
    for index in 0..n {
        notes
            .create_note(user.request(CreateNoteRequest {
                note: Some(draft(&format!("note {index}"))),
                request_id: uuid::Uuid::now_v7().to_string(),
            }))
            .await
            .expect("create");
    }
}

/// Every door's answer to `user`'s token, as (door, result).
async fn knock(suite: &TestSuite, user: &User) -> Vec<(&'static str, Result<(), Status>)> {
    let direct_notes = NotesServiceClient::new(e2e::channel(suite.notes_addr).await);
    let direct_users = UsersServiceClient::new(e2e::channel(suite.users_addr).await);
    let list = || user.request(ListNotesRequest::default());
    let create = || {
        user.request(CreateNoteRequest {
            note: Some(draft("after the deletion")),
            request_id: String::new(),
        })
    };
    vec![
        (
            "gateway ListNotes",
            suite.notes().list_notes(list()).await.map(drop),
        ),
        (
            "gateway CreateNote",
            suite.notes().create_note(create()).await.map(drop),
        ),
        (
            "gateway GetProfile",
            suite
                .gateway()
                .get_profile(user.request(GetProfileRequest::default()))
                .await
                .map(drop),
        ),
        (
            "notes ListNotes",
            direct_notes.clone().list_notes(list()).await.map(drop),
        ),
        (
            "notes CreateNote",
            direct_notes.clone().create_note(create()).await.map(drop),
        ),
        (
            "users GetUser",
            direct_users
                .clone()
                .get_user(user.request(GetUserRequest {
                    id: user.id.clone(),
                }))
                .await
                .map(drop),
        ),
    ]
}

fn assert_all_refused(answers: &[(&'static str, Result<(), Status>)]) {
    for (door, answer) in answers {
        let status = answer.as_ref().expect_err(&format!(
            "{door}: a deleted account's token must be refused"
        ));
        assert_error(status, Code::Unauthenticated, "ACCOUNT_DELETED");
    }
}

fn service_request<T>(issuer: &token::Issuer, message: T) -> Request<T> {
    let token = issuer.service_token("gateway").expect("sign").token;
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

async fn deleting_an_account_through_the_gateway_ends_it_at_once(backend: Backend) {
    let (suite, key, _keys) = e2e::spawn_suite_with_key(backend).await;
    let issuer = token::Issuer::new(&key, Duration::from_secs(900));
    let ada = suite.sign_up().await;
    let bob = suite.sign_up().await;
    let mut notes = suite.notes();
    create(&mut notes, &ada, 3).await;
    create(&mut notes, &bob, 2).await;
    let mut watch = notes
        .watch_notes(ada.request(WatchNotesRequest::default()))
        .await
        .expect("watch")
        .into_inner();
    watch.next().await.expect("a heartbeat").expect("live");

    suite
        .users()
        .delete_user(ada.request(DeleteUserRequest {
            id: ada.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("delete");

    // At once: DeleteUser answered after the purge reached notes.
    assert_all_refused(&knock(&suite, &ada).await);
    let login = suite
        .login(&ada.email, &ada.password)
        .await
        .expect_err("gone");
    assert_error(&login, Code::Unauthenticated, "INVALID_CREDENTIALS");

    // Purged: nothing left to purge, and users has it confirmed.
    let direct_notes = NotesServiceClient::new(e2e::channel(suite.notes_addr).await);
    let again = direct_notes
        .clone()
        .purge_user_notes(service_request(
            &issuer,
            PurgeUserNotesRequest {
                user_id: ada.id.clone(),
            },
        ))
        .await
        .expect("purge again")
        .into_inner();
    assert_eq!(
        again.purged_note_count, 0,
        "the first purge took every note"
    );
    let deletions = UsersServiceClient::new(e2e::channel(suite.users_addr).await)
        .list_account_deletions(service_request(
            &issuer,
            ListAccountDeletionsRequest::default(),
        ))
        .await
        .expect("deletions")
        .into_inner()
        .deletions;
    let ada_deletion = deletions
        .iter()
        .find(|deletion| deletion.user_id == ada.id)
        .expect("ada's deletion is recorded");
    assert!(ada_deletion.purge_time.is_some(), "{ada_deletion:?}");

    // The open watch ends, within a heartbeat.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    })
    .await
    .expect("the watch ends");
    let status = ended.expect("ends with a status");
    assert_error(&status, Code::Unauthenticated, "ACCOUNT_DELETED");

    // Nobody else is touched; the email can sign up again, as a new account.
    let bobs = notes
        .list_notes(bob.request(ListNotesRequest::default()))
        .await
        .expect("bob lists")
        .into_inner();
    assert_eq!(bobs.notes.len(), 2);
    let again = suite
        .gateway()
        .sign_up(proto::gateway::SignUpRequest {
            email: ada.email.clone(),
            display_name: "Ada again".into(),
            password: ada.password.clone(),
        })
        .await
        .expect("the email is free again")
        .into_inner();
    let new_ada = User {
        id: again.user.expect("user").id,
        token: again.access_token,
        ..ada.clone()
    };
    assert_ne!(new_ada.id, ada.id, "ids are never reused");
    let fresh = notes
        .list_notes(new_ada.request(ListNotesRequest::default()))
        .await
        .expect("the new account works")
        .into_inner();
    assert!(fresh.notes.is_empty(), "the old account's notes are gone");
    // And a PurgeUserNotes is for the gateway only.
    let denied = direct_notes
        .clone()
        .purge_user_notes(new_ada.request(PurgeUserNotesRequest {
            user_id: new_ada.id.clone(),
        }))
        .await
        .expect_err("users cannot purge");
    assert_error(
        &denied,
        Code::PermissionDenied,
        "SERVICE_CREDENTIAL_REQUIRED",
    );
}

#[allow(
    clippy::print_stdout,
    reason = "how long the deletion took to reach every door is this test's report"
)]
async fn a_deletion_made_straight_at_users_reaches_every_door(backend: Backend) {
    let suite = e2e::spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    create(&mut suite.notes(), &ada, 2).await;
    let started = Instant::now();
    UsersServiceClient::new(e2e::channel(suite.users_addr).await)
        .delete_user(ada.request(DeleteUserRequest {
            id: ada.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("delete at users");
    loop {
        let answers = knock(&suite, &ada).await;
        let refused = answers.iter().all(|(_, answer)| {
            answer.as_ref().is_err_and(|status| {
                status.code() == Code::Unauthenticated
                    && status
                        .get_details_error_info()
                        .is_some_and(|info| info.reason == "ACCOUNT_DELETED")
            })
        });
        if refused {
            break;
        }
        assert!(
            started.elapsed() < BOUND,
            "still accepted after {BOUND:?}: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "deletion straight at users: refused at every door after {:?}",
        started.elapsed()
    );
}

database::backend_tests!(
    deleting_an_account_through_the_gateway_ends_it_at_once,
    a_deletion_made_straight_at_users_reaches_every_door,
);
