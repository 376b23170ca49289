use proto::users::{
    BatchGetUsersRequest, CreateUserRequest, DeleteUserRequest, GetUserRequest, UpdateUserRequest,
    User,
};
use tonic::{Code, Request};

use crate::helpers::{assert_error, bad_fields, email, spawn_users};
use database::testing::Backend;

async fn service_creates_an_account_and_reads_it_back(backend: Backend) {
    let users = spawn_users(backend).await;
    let created = users
        .create("Ada@Example.com", "correct horse battery")
        .await;
    assert_eq!(created.email, "Ada@Example.com");
    assert_eq!(created.display_name, "Test User");
    assert!(!created.etag.is_empty());
    assert!(created.create_time.is_some());

    let read = users
        .client()
        .get_user(users.as_service(GetUserRequest {
            id: created.id.clone(),
        }))
        .await
        .expect("get")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(read, created);
}

async fn a_call_without_a_token_is_unauthenticated(backend: Backend) {
    let users = spawn_users(backend).await;
    let status = users
        .client()
        .get_user(Request::new(GetUserRequest { id: "x".into() }))
        .await
        .expect_err("no token");
    assert_error(&status, Code::Unauthenticated, "TOKEN_MISSING");
}

async fn an_expired_token_is_unauthenticated(backend: Backend) {
    let users = spawn_users(backend).await;
    let user = users.create(&email(), "correct horse battery").await;
    let status = users
        .client()
        .get_user(users.as_expired_user(
            &user.id,
            GetUserRequest {
                id: user.id.clone(),
            },
        ))
        .await
        .expect_err("expired");
    assert_error(&status, Code::Unauthenticated, "TOKEN_EXPIRED");
}

async fn a_user_reads_their_own_account_and_no_other(backend: Backend) {
    let users = spawn_users(backend).await;
    let ada = users.create(&email(), "correct horse battery").await;
    let bob = users.create(&email(), "correct horse battery").await;

    let own = users
        .client()
        .get_user(users.as_user(&ada.id, GetUserRequest { id: ada.id.clone() }))
        .await
        .expect("own account");
    assert_eq!(own.into_inner().user.expect("user").id, ada.id);

    // Another account is NOT_FOUND, exactly like one that does not exist.
    let other = users
        .client()
        .get_user(users.as_user(&ada.id, GetUserRequest { id: bob.id.clone() }))
        .await
        .expect_err("someone else's account");
    assert_error(&other, Code::NotFound, "USER_NOT_FOUND");
}

async fn a_user_token_cannot_call_service_only_methods(backend: Backend) {
    let users = spawn_users(backend).await;
    let ada = users.create(&email(), "correct horse battery").await;
    let status = users
        .client()
        .create_user(users.as_user(
            &ada.id,
            CreateUserRequest {
                email: email(),
                display_name: "Mallory".into(),
                password: "correct horse battery".into(),
            },
        ))
        .await
        .expect_err("user token");
    assert_error(
        &status,
        Code::PermissionDenied,
        "SERVICE_CREDENTIAL_REQUIRED",
    );
}

async fn emails_are_unique_ignoring_case(backend: Backend) {
    let users = spawn_users(backend).await;
    let address = email();
    users.create(&address, "correct horse battery").await;
    let status = users
        .client()
        .create_user(users.as_service(CreateUserRequest {
            email: address.to_uppercase(),
            display_name: "Twin".into(),
            password: "correct horse battery".into(),
        }))
        .await
        .expect_err("same email, other case");
    assert_error(&status, Code::AlreadyExists, "EMAIL_TAKEN");
}

async fn create_names_every_invalid_field(backend: Backend) {
    let users = spawn_users(backend).await;
    let status = users
        .client()
        .create_user(users.as_service(CreateUserRequest {
            email: "not-an-email".into(),
            display_name: "  ".into(),
            password: "short".into(),
        }))
        .await
        .expect_err("invalid");
    assert_eq!(bad_fields(&status), ["email", "display_name", "password"]);
}

async fn passwords_are_stored_only_as_argon2id_hashes(backend: Backend) {
    let users = spawn_users(backend).await;
    let user = users.create(&email(), "correct horse battery").await;
    let stored = users.stored_password_hash(&user.id).await;
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("correct horse battery"));
}

async fn update(
    users: &crate::helpers::TestUsers,
    caller: &str,
    user: User,
    paths: &[&str],
) -> Result<User, tonic::Status> {
    users
        .client()
        .update_user(users.as_user(
            caller,
            UpdateUserRequest {
                user: Some(user),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|path| path.to_string()).collect(),
                }),
            },
        ))
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

async fn update_changes_masked_fields_and_needs_the_current_etag(backend: Backend) {
    let users = spawn_users(backend).await;
    let original = users.create(&email(), "correct horse battery").await;

    let renamed = update(
        &users,
        &original.id,
        User {
            display_name: "Ada Lovelace".into(),
            email: "ignored-because-not-in-mask@example.com".into(),
            ..original.clone()
        },
        &["display_name"],
    )
    .await
    .expect("update");
    assert_eq!(renamed.display_name, "Ada Lovelace");
    assert_eq!(
        renamed.email, original.email,
        "fields outside the mask do not change"
    );
    assert_ne!(renamed.etag, original.etag);

    // The first read's etag is stale now: a lost update is refused.
    let stale = update(
        &users,
        &original.id,
        User {
            display_name: "Someone Else".into(),
            ..original.clone()
        },
        &["display_name"],
    )
    .await
    .expect_err("stale etag");
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");
}

async fn update_rejects_unknown_and_output_only_mask_paths_and_a_missing_etag(backend: Backend) {
    let users = spawn_users(backend).await;
    let user = users.create(&email(), "correct horse battery").await;
    let status = update(
        &users,
        &user.id,
        User {
            etag: String::new(),
            ..user.clone()
        },
        &["nickname", "create_time"],
    )
    .await
    .expect_err("invalid mask");
    assert_eq!(
        bad_fields(&status),
        ["user.etag", "update_mask.paths[0]", "update_mask.paths[1]"]
    );
}

async fn changing_to_a_taken_email_is_already_exists(backend: Backend) {
    let users = spawn_users(backend).await;
    let taken = users.create(&email(), "correct horse battery").await;
    let user = users.create(&email(), "correct horse battery").await;
    let status = update(
        &users,
        &user.id,
        User {
            email: taken.email.to_uppercase(),
            ..user.clone()
        },
        &["email"],
    )
    .await
    .expect_err("taken");
    assert_error(&status, Code::AlreadyExists, "EMAIL_TAKEN");
}

async fn delete_with_a_stale_etag_is_aborted_and_with_the_current_one_deletes(backend: Backend) {
    let users = spawn_users(backend).await;
    let user = users.create(&email(), "correct horse battery").await;
    let delete = |etag: &str| {
        users.as_user(
            &user.id,
            DeleteUserRequest {
                id: user.id.clone(),
                etag: etag.into(),
            },
        )
    };
    let stale = users
        .client()
        .delete_user(delete("u99"))
        .await
        .expect_err("stale etag");
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");
    users
        .client()
        .delete_user(delete(&user.etag))
        .await
        .expect("delete");
    let gone = users
        .client()
        .get_user(users.as_service(GetUserRequest {
            id: user.id.clone(),
        }))
        .await
        .expect_err("deleted");
    assert_error(&gone, Code::NotFound, "USER_NOT_FOUND");
}

async fn batch_get_keeps_the_request_order_and_fails_on_a_missing_account(backend: Backend) {
    let users = spawn_users(backend).await;
    let first = users.create(&email(), "correct horse battery").await;
    let second = users.create(&email(), "correct horse battery").await;
    let found = users
        .client()
        .batch_get_users(users.as_service(BatchGetUsersRequest {
            ids: vec![second.id.clone(), first.id.clone()],
        }))
        .await
        .expect("batch get")
        .into_inner()
        .users;
    let ids: Vec<&str> = found.iter().map(|user| user.id.as_str()).collect();
    assert_eq!(ids, [second.id.as_str(), first.id.as_str()]);

    let missing = users
        .client()
        .batch_get_users(users.as_service(BatchGetUsersRequest {
            ids: vec![
                first.id.clone(),
                "01900000-0000-7000-8000-000000000000".into(),
            ],
        }))
        .await
        .expect_err("one missing");
    assert_error(&missing, Code::NotFound, "USER_NOT_FOUND");

    let invalid = users
        .client()
        .batch_get_users(users.as_service(BatchGetUsersRequest {
            ids: vec![first.id.clone(), "nope".into()],
        }))
        .await
        .expect_err("bad id");
    assert_eq!(bad_fields(&invalid), ["ids[1]"]);
}

async fn racing_sign_ups_with_one_email_make_one_account(backend: Backend) {
    let users = spawn_users(backend).await;
    let address = email();
    let attempts = (0..6).map(|attempt| {
        let mut client = users.client();
        // The same address in different cases: one account, case-insensitively.
        let typed = if attempt % 2 == 0 {
            address.clone()
        } else {
            address.to_uppercase()
        };
        let request = users.as_service(CreateUserRequest {
            email: typed,
            display_name: format!("Racer {attempt}"),
            password: "correct horse battery".into(),
        });
        async move { client.create_user(request).await }
    });
    let results = futures_util::future::join_all(attempts).await;
    let (created, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(created.len(), 1, "one account for one email");
    for status in refused.into_iter().filter_map(Result::err) {
        assert_error(&status, Code::AlreadyExists, "EMAIL_TAKEN");
    }
}

database::backend_tests!(
    racing_sign_ups_with_one_email_make_one_account,
    service_creates_an_account_and_reads_it_back,
    a_call_without_a_token_is_unauthenticated,
    an_expired_token_is_unauthenticated,
    a_user_reads_their_own_account_and_no_other,
    a_user_token_cannot_call_service_only_methods,
    emails_are_unique_ignoring_case,
    create_names_every_invalid_field,
    passwords_are_stored_only_as_argon2id_hashes,
    update_changes_masked_fields_and_needs_the_current_etag,
    update_rejects_unknown_and_output_only_mask_paths_and_a_missing_etag,
    changing_to_a_taken_email_is_already_exists,
    delete_with_a_stale_etag_is_aborted_and_with_the_current_one_deletes,
    batch_get_keeps_the_request_order_and_fails_on_a_missing_account,
);
