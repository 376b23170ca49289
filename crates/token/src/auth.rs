//! Who is calling, and the one place authentication failures become `tonic::Status`.

use std::sync::Arc;

use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::Verifier;

/// Longest `authorization` header accepted; real tokens are a few hundred bytes.
const MAX_AUTHORIZATION_LEN: usize = 4096;

/// The authenticated caller of a request, stored in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An end user, acting through a token the gateway issued to them.
    User { user_id: String },
    /// A notesuite service (the gateway) acting on its own behalf.
    Service { name: String },
}

/// Why a request is not authenticated. Each has a stable `ErrorInfo` reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `authorization: Bearer <token>`")]
    Missing,
    #[error("malformed bearer token")]
    Malformed,
    #[error("token expired: log in again")]
    Expired,
    #[error("invalid token")]
    Invalid,
    #[error("account deleted: its tokens no longer work")]
    AccountDeleted,
}

impl AuthError {
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "TOKEN_MISSING",
            AuthError::Malformed => "TOKEN_MALFORMED",
            AuthError::Expired => "TOKEN_EXPIRED",
            AuthError::Invalid => "TOKEN_INVALID",
            AuthError::AccountDeleted => "ACCOUNT_DELETED",
        }
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        Status::with_error_details(
            Code::Unauthenticated,
            error.to_string(),
            ErrorDetails::with_error_info(error.reason(), "notesuite", []),
        )
    }
}

/// Extracts the token from `authorization: Bearer <token>` (scheme case-insensitive).
pub(crate) fn bearer_token(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(AuthError::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    match token.trim() {
        "" => Err(AuthError::Missing),
        token => Ok(token),
    }
}

/// Wraps a tonic service so that every call except `anonymous_methods` (bare method names
/// such as `"Login"`) must carry a valid token; the [`Principal`] lands in the request's
/// extensions for the handlers. A tower service rather than a tonic interceptor, because
/// interceptors cannot see which method is called.
pub fn authenticated<S>(
    inner: S,
    verifier: Arc<Verifier>,
    anonymous_methods: &'static [&'static str],
) -> Authenticated<S> {
    Authenticated {
        inner,
        verifier,
        anonymous_methods,
    }
}

#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    verifier: Arc<Verifier>,
    anonymous_methods: &'static [&'static str],
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower_service::Service<http::Request<Body>> for Authenticated<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<http::Response<Body>, S::Error>>,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        if !self.anonymous_methods.contains(&method) {
            match self.verifier.authenticate(request.headers()) {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                }
                Err(error) => {
                    return Either::Left(std::future::ready(Ok(Status::from(error).into_http())));
                }
            }
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            value.parse().expect("valid header value"),
        );
        headers
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(&headers("bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(&headers("Bearer abc")), Ok("abc"));
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_rejected() {
        assert_eq!(
            bearer_token(&headers("Basic abc")),
            Err(AuthError::Malformed)
        );
        assert_eq!(bearer_token(&headers("Bearer ")), Err(AuthError::Missing));
        assert_eq!(
            bearer_token(&http::HeaderMap::new()),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn status_carries_a_stable_reason() {
        let status = Status::from(AuthError::Expired);
        assert_eq!(status.code(), Code::Unauthenticated);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "TOKEN_EXPIRED");
        assert_eq!(info.domain, "notesuite");
    }
}
