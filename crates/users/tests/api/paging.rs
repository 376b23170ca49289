use proto::users::ListUsersRequest;

use crate::helpers::{bad_fields, email, spawn_users};
use database::testing::Backend;

async fn list_pages_through_every_account_once_in_creation_order(backend: Backend) {
    let users = spawn_users(backend).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(users.create(&email(), "correct horse battery").await.id);
    }

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = users
            .client()
            .list_users(users.as_service(ListUsersRequest {
                page_size: 2,
                page_token: page_token.clone(),
            }))
            .await
            .expect("list")
            .into_inner();
        assert!(page.users.len() <= 2);
        seen.extend(page.users.into_iter().map(|user| user.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, created);
}

async fn bad_page_size_and_token_name_their_fields(backend: Backend) {
    let users = spawn_users(backend).await;
    let status = users
        .client()
        .list_users(users.as_service(ListUsersRequest {
            page_size: -1,
            page_token: "not-a-token".into(),
        }))
        .await
        .expect_err("invalid");
    assert_eq!(bad_fields(&status), ["page_size", "page_token"]);
}

database::backend_tests!(
    list_pages_through_every_account_once_in_creation_order,
    bad_page_size_and_token_name_their_fields,
);
