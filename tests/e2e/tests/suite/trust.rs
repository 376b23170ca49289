use database::testing::Backend;
use e2e::{assert_error, spawn_suite, with_token};
use proto::gateway::GetProfileRequest;
use proto::notes::ListNotesRequest;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::users::users_service_client::UsersServiceClient;
use proto::users::{ListUsersRequest, VerifyCredentialsRequest};
use tonic::{Code, Request};

async fn wrong_password_and_unknown_email_fail_login_alike(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    let wrong = suite
        .login(&ada.email, "not the password")
        .await
        .expect_err("wrong");
    let unknown = suite
        .login("nobody@example.com", &ada.password)
        .await
        .expect_err("unknown");
    assert_error(&wrong, Code::Unauthenticated, "INVALID_CREDENTIALS");
    assert_eq!(
        (wrong.code(), wrong.message()),
        (unknown.code(), unknown.message())
    );
}

async fn forwarded_calls_need_a_valid_token(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let mut notes = suite.notes();
    let missing = notes
        .list_notes(Request::new(ListNotesRequest::default()))
        .await
        .expect_err("no token");
    assert_error(&missing, Code::Unauthenticated, "TOKEN_MISSING");

    let ada = suite.sign_up().await;
    let mut forged = ada.token.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let forged = notes
        .list_notes(with_token(ListNotesRequest::default(), &forged))
        .await
        .expect_err("forged");
    assert_error(&forged, Code::Unauthenticated, "TOKEN_INVALID");

    let profile = suite
        .gateway()
        .get_profile(Request::new(GetProfileRequest::default()))
        .await
        .expect_err("no token");
    assert_error(&profile, Code::Unauthenticated, "TOKEN_MISSING");
}

async fn a_token_from_another_deployment_is_invalid(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let other = spawn_suite(backend).await;
    let stranger = other.sign_up().await;
    let status = suite
        .notes()
        .list_notes(stranger.request(ListNotesRequest::default()))
        .await
        .expect_err("other key");
    assert_error(&status, Code::Unauthenticated, "TOKEN_INVALID");
}

async fn internal_methods_are_not_reachable_through_the_gateway(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    let mut users = suite.users();
    let list = users
        .list_users(ada.request(ListUsersRequest::default()))
        .await
        .expect_err("internal");
    assert_error(&list, Code::PermissionDenied, "METHOD_NOT_PUBLIC");
    let verify = users
        .verify_credentials(ada.request(VerifyCredentialsRequest {
            email: ada.email.clone(),
            password: ada.password.clone(),
        }))
        .await
        .expect_err("internal");
    assert_error(&verify, Code::PermissionDenied, "METHOD_NOT_PUBLIC");
}

async fn an_unknown_method_of_a_forwarded_service_is_unimplemented(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    let mut grpc = tonic::client::Grpc::new(suite.gateway_channel());
    grpc.ready().await.expect("ready");
    let status = grpc
        .unary::<(), (), _>(
            ada.request(()),
            http_path("/notesuite.notes.v1.NotesService/DropAllTables"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("unknown method");
    assert_eq!(status.code(), Code::Unimplemented);
}

async fn backends_refuse_direct_calls_without_a_credential(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let mut notes = NotesServiceClient::new(e2e::channel(suite.notes_addr).await);
    let status = notes
        .list_notes(Request::new(ListNotesRequest::default()))
        .await
        .expect_err("direct, no token");
    assert_error(&status, Code::Unauthenticated, "TOKEN_MISSING");

    let mut users = UsersServiceClient::new(e2e::channel(suite.users_addr).await);
    let status = users
        .list_users(Request::new(ListUsersRequest::default()))
        .await
        .expect_err("direct, no token");
    assert_error(&status, Code::Unauthenticated, "TOKEN_MISSING");

    // A user token straight to the users service still cannot reach internal methods.
    let ada = suite.sign_up().await;
    let status = users
        .list_users(ada.request(ListUsersRequest::default()))
        .await
        .expect_err("user token");
    assert_error(
        &status,
        Code::PermissionDenied,
        "SERVICE_CREDENTIAL_REQUIRED",
    );
}

fn http_path(path: &'static str) -> tonic::codegen::http::uri::PathAndQuery {
    tonic::codegen::http::uri::PathAndQuery::from_static(path)
}

database::backend_tests!(
    wrong_password_and_unknown_email_fail_login_alike,
    forwarded_calls_need_a_valid_token,
    a_token_from_another_deployment_is_invalid,
    internal_methods_are_not_reachable_through_the_gateway,
    an_unknown_method_of_a_forwarded_service_is_unimplemented,
    backends_refuse_direct_calls_without_a_credential,
);
