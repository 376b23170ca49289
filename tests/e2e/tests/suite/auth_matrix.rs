//! Every kind of bad credential, at every door: through the gateway and straight at users and
//! notes. Each is denied with the right code and reason, the same everywhere; a deleted
//! account's token too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use database::testing::Backend;
use e2e::{TestSuite, assert_error};
use proto::notes::ListNotesRequest;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::users::users_service_client::UsersServiceClient;
use proto::users::{DeleteUserRequest, GetUserRequest, ListUsersRequest};
use sha2::Digest as _;
use tonic::{Code, Request};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn claims(audience: &str, subject: &str, issuer: &str, exp: u64) -> token::Claims {
    token::Claims {
        iss: issuer.into(),
        aud: audience.into(),
        sub: subject.into(),
        iat: now().saturating_sub(60),
        exp,
    }
}

/// A compact JWT with this header and these claims, signed by `sign`.
fn jwt(
    header: &serde_json::Value,
    claims: &token::Claims,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let signing_input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(serde_json::to_vec(claims).expect("claims"))
    );
    let signature = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(signature))
}

/// HMAC-SHA256 (RFC 2104), for a token signed HS256 with the public key as its secret.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// One bad credential, and how every door must answer it.
struct Case {
    name: &'static str,
    /// The `authorization` header, if any.
    authorization: Option<String>,
    code: Code,
    reason: &'static str,
}

fn case(name: &'static str, authorization: Option<String>, reason: &'static str) -> Case {
    Case {
        name,
        authorization,
        code: Code::Unauthenticated,
        reason,
    }
}

fn request<T>(message: T, authorization: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ascii"));
    }
    request
}

/// The answers of the three doors to `authorization`, as (door, status).
async fn knock(
    suite: &TestSuite,
    user_id: &str,
    authorization: Option<&str>,
) -> Vec<(&'static str, tonic::Status)> {
    let mut answers = Vec::new();
    let through_gateway = suite
        .notes()
        .list_notes(request(ListNotesRequest::default(), authorization))
        .await
        .expect_err("denied");
    answers.push(("gateway ListNotes", through_gateway));
    let notes = NotesServiceClient::new(e2e::channel(suite.notes_addr).await)
        .list_notes(request(ListNotesRequest::default(), authorization))
        .await
        .expect_err("denied");
    answers.push(("notes ListNotes", notes));
    let users = UsersServiceClient::new(e2e::channel(suite.users_addr).await)
        .get_user(request(
            GetUserRequest { id: user_id.into() },
            authorization,
        ))
        .await
        .expect_err("denied");
    answers.push(("users GetUser", users));
    answers
}

async fn every_bad_credential_is_denied_alike_at_every_door(backend: Backend) {
    let (suite, key, _keys) = e2e::spawn_suite_with_key(backend).await;
    let ada = suite.sign_up().await;
    let issuer = token::Issuer::new(&key, Duration::from_secs(900));
    let stranger = token::Issuer::new(
        &token::SigningKey::generate().expect("key"),
        Duration::from_secs(900),
    );
    let valid_claims = claims(token::USER_AUDIENCE, &ada.id, token::ISSUER, now() + 600);
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let signed = |claims: &token::Claims| bearer(issuer.sign(claims).expect("sign"));
    let public_pem = key.verifying_key().to_public_key_pem().expect("pem");

    let cases = [
        case("no token", None, "TOKEN_MISSING"),
        case("empty bearer", Some("Bearer ".into()), "TOKEN_MISSING"),
        case(
            "not a bearer",
            Some(format!("Basic {}", B64.encode("ada:pw"))),
            "TOKEN_MALFORMED",
        ),
        case("garbage", bearer("garbage".into()), "TOKEN_MALFORMED"),
        case(
            "alg none",
            bearer(jwt(
                &serde_json::json!({"alg": "none", "typ": "JWT"}),
                &valid_claims,
                |_| Vec::new(),
            )),
            // `none` is no algorithm a token here can name: it does not even parse.
            "TOKEN_MALFORMED",
        ),
        case(
            "HS256 keyed with the public key",
            bearer(jwt(
                &serde_json::json!({"alg": "HS256", "typ": "JWT"}),
                &valid_claims,
                |input| hmac_sha256(public_pem.as_bytes(), input),
            )),
            "TOKEN_INVALID",
        ),
        case(
            "wrong issuer",
            signed(&claims(
                token::USER_AUDIENCE,
                &ada.id,
                "someone-else",
                now() + 600,
            )),
            "TOKEN_INVALID",
        ),
        case(
            "wrong audience",
            signed(&claims("another-api", &ada.id, token::ISSUER, now() + 600)),
            "TOKEN_INVALID",
        ),
        case(
            "expired",
            signed(&claims(
                token::USER_AUDIENCE,
                &ada.id,
                token::ISSUER,
                now() - 3600,
            )),
            "TOKEN_EXPIRED",
        ),
        case(
            "another key",
            bearer(stranger.sign(&valid_claims).expect("sign")),
            "TOKEN_INVALID",
        ),
        case(
            "signature of another token",
            {
                let other = issuer
                    .sign(&claims(
                        token::USER_AUDIENCE,
                        "someone",
                        token::ISSUER,
                        now() + 600,
                    ))
                    .expect("sign");
                let mine = issuer.sign(&valid_claims).expect("sign");
                let (unsigned, _) = mine.rsplit_once('.').expect("jwt");
                let (_, signature) = other.rsplit_once('.').expect("jwt");
                bearer(format!("{unsigned}.{signature}"))
            },
            "TOKEN_INVALID",
        ),
    ];
    for case in &cases {
        for (door, status) in knock(&suite, &ada.id, case.authorization.as_deref()).await {
            assert_eq!(
                status.code(),
                case.code,
                "{}: {door}: {status:?}",
                case.name
            );
            assert_error(&status, case.code, case.reason);
        }
    }

    // A service token on a user method, and a user token on a service method.
    let service = issuer.service_token("gateway").expect("sign").token;
    let user_method = suite
        .notes()
        .list_notes(request(
            ListNotesRequest::default(),
            Some(&format!("Bearer {service}")),
        ))
        .await
        .expect_err("a service token acts for no user");
    assert_error(
        &user_method,
        Code::PermissionDenied,
        "USER_CREDENTIAL_REQUIRED",
    );
    let direct = NotesServiceClient::new(e2e::channel(suite.notes_addr).await)
        .list_notes(request(
            ListNotesRequest::default(),
            Some(&format!("Bearer {service}")),
        ))
        .await
        .expect_err("a service token acts for no user");
    assert_eq!(direct.code(), Code::PermissionDenied, "{direct:?}");
    let service_method = UsersServiceClient::new(e2e::channel(suite.users_addr).await)
        .list_users(ada.request(ListUsersRequest::default()))
        .await
        .expect_err("a user token on a service method");
    assert_error(
        &service_method,
        Code::PermissionDenied,
        "SERVICE_CREDENTIAL_REQUIRED",
    );

    // A deleted account's token: valid signature, no account.
    let gone = suite.sign_up().await;
    suite
        .users()
        .delete_user(gone.request(DeleteUserRequest {
            id: gone.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("delete");
    let gone_bearer = format!("Bearer {}", gone.token);
    for (door, status) in knock(&suite, &gone.id, Some(&gone_bearer)).await {
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "deleted account: {door}: {status:?}"
        );
        assert_error(&status, Code::Unauthenticated, "ACCOUNT_DELETED");
    }

    // The valid token still works everywhere: the matrix is not denying everything.
    suite
        .notes()
        .list_notes(ada.request(ListNotesRequest::default()))
        .await
        .expect("valid through the gateway");
    NotesServiceClient::new(e2e::channel(suite.notes_addr).await)
        .list_notes(ada.request(ListNotesRequest::default()))
        .await
        .expect("valid at notes");
}

database::backend_tests!(every_bad_credential_is_denied_alike_at_every_door);
