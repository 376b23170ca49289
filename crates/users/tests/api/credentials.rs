use proto::users::VerifyCredentialsRequest;
use tonic::Code;

use crate::helpers::{assert_error, bad_fields, email, spawn_users};
use database::testing::Backend;

async fn right_credentials_return_the_account_whatever_the_email_case(backend: Backend) {
    let users = spawn_users(backend).await;
    let address = email();
    let created = users.create(&address, "correct horse battery").await;
    let verified = users
        .client()
        .verify_credentials(users.as_service(VerifyCredentialsRequest {
            email: address.to_uppercase(),
            password: "correct horse battery".into(),
        }))
        .await
        .expect("verified")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(verified.id, created.id);
}

async fn unknown_email_and_wrong_password_get_the_same_answer(backend: Backend) {
    let users = spawn_users(backend).await;
    let address = email();
    users.create(&address, "correct horse battery").await;
    let verify = |email: String, password: &str| {
        users.as_service(VerifyCredentialsRequest {
            email,
            password: password.into(),
        })
    };
    let mut client = users.client();
    let wrong_password = client
        .verify_credentials(verify(address, "incorrect horse battery"))
        .await
        .expect_err("wrong");
    let unknown_email = client
        .verify_credentials(verify(email(), "correct horse battery"))
        .await
        .expect_err("unknown");
    assert_error(
        &wrong_password,
        Code::Unauthenticated,
        "INVALID_CREDENTIALS",
    );
    assert_eq!(wrong_password.code(), unknown_email.code());
    assert_eq!(wrong_password.message(), unknown_email.message());
    assert_eq!(wrong_password.details(), unknown_email.details());
}

async fn empty_credentials_are_invalid_arguments(backend: Backend) {
    let users = spawn_users(backend).await;
    let status = users
        .client()
        .verify_credentials(users.as_service(VerifyCredentialsRequest::default()))
        .await
        .expect_err("empty");
    assert_eq!(bad_fields(&status), ["email", "password"]);
}

async fn only_a_service_may_verify_credentials(backend: Backend) {
    let users = spawn_users(backend).await;
    let address = email();
    let user = users.create(&address, "correct horse battery").await;
    let status = users
        .client()
        .verify_credentials(users.as_user(
            &user.id,
            VerifyCredentialsRequest {
                email: address,
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

database::backend_tests!(
    right_credentials_return_the_account_whatever_the_email_case,
    unknown_email_and_wrong_password_get_the_same_answer,
    empty_credentials_are_invalid_arguments,
    only_a_service_may_verify_credentials,
);
