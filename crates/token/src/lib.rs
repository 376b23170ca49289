//! Access tokens for notesuite.
//!
//! The gateway signs short-lived JWTs with an Ed25519 key; users and notes verify them on every
//! call with the public key only (no service trusts the network). Two kinds exist, told apart
//! by their audience: a *user* token (`aud` = [`USER_AUDIENCE`], `sub` = the user id) that
//! the gateway hands to clients, and a *service* token (`aud` = [`SERVICE_AUDIENCE`], `sub` =
//! the calling service) for gateway-only methods such as verifying credentials.
//!
//! The algorithm is pinned to EdDSA: a token whose header names anything else is rejected
//! before any signature check. Tokens name their key (`kid`); keys rotate without a restart
//! ([`keyset`]).

mod auth;
mod cache;
mod crypto;
mod keys;
pub mod keyset;
pub mod revocations;

pub use auth::{AuthError, Authenticated, Principal, authenticated};
pub use keys::{KeyError, SigningKey, VerifyingKey};
pub use keyset::{SigningKeys, VerifyingKeys};
pub use revocations::Revocations;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Issuer of every notesuite token.
pub const ISSUER: &str = "notesuite-gateway";
/// Audience of tokens that act for a user.
pub const USER_AUDIENCE: &str = "notesuite";
/// Audience of tokens that act for a notesuite service.
pub const SERVICE_AUDIENCE: &str = "notesuite-internal";
/// Service tokens are minted per use; a minute covers any call plus clock skew.
const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Clock skew tolerated between the gateway and the services.
pub(crate) const LEEWAY_SECONDS: u64 = 30;

/// The registered claims notesuite uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

/// A freshly signed token and the moment it stops being accepted.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expire_time: SystemTime,
}

#[derive(Debug, thiserror::Error)]
#[error("could not sign a token: {0}")]
pub struct SignError(#[from] jsonwebtoken::errors::Error);

/// Signs tokens. Only the gateway holds one.
#[derive(Clone)]
pub struct Issuer {
    keys: SigningKeys,
    user_token_ttl: Duration,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("user_token_ttl", &self.user_token_ttl)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Signs with `keys` (one [`SigningKey`], or [`SigningKeys`] read from files): always
    /// with the one in force when a token is made.
    pub fn new(keys: impl Into<SigningKeys>, user_token_ttl: Duration) -> Self {
        crypto::install();
        Self {
            keys: keys.into(),
            user_token_ttl,
        }
    }

    /// A token that acts for `user_id`, as handed to clients by SignUp and Login.
    pub fn user_token(&self, user_id: &str) -> Result<IssuedToken, SignError> {
        self.issue(USER_AUDIENCE, user_id, self.user_token_ttl)
    }

    /// A token that acts for the service `service_name` on gateway-only methods.
    pub fn service_token(&self, service_name: &str) -> Result<IssuedToken, SignError> {
        self.issue(SERVICE_AUDIENCE, service_name, SERVICE_TOKEN_TTL)
    }

    /// Signs arbitrary claims (tests use it for expired or mis-addressed tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        let signing = self.keys.current();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signing.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &signing.key)?)
    }

    fn issue(
        &self,
        audience: &str,
        subject: &str,
        ttl: Duration,
    ) -> Result<IssuedToken, SignError> {
        let now = SystemTime::now();
        let expire_time = now + ttl;
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: audience.to_owned(),
            sub: subject.to_owned(),
            iat: unix_seconds(now),
            exp: unix_seconds(expire_time),
        };
        Ok(IssuedToken {
            token: self.sign(&claims)?,
            expire_time,
        })
    }
}

/// Checks tokens. Every service holds one, built from public keys alone.
pub struct Verifier {
    keys: VerifyingKeys,
    validation: Validation,
    verified: cache::VerifiedTokens,
    /// The key set's generation the cache was filled under: a change empties it, so that a
    /// token signed with a removed key is refused at once.
    cached_generation: std::sync::atomic::AtomicU64,
    /// Seconds since the Unix epoch. The system clock, except in tests that move time on.
    /// Both paths read expiry against it: a token served from the cache and one checked anew
    /// expire at the same moment.
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Deleted accounts: their tokens are refused whatever their signature.
    revocations: Revocations,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// Accepts tokens signed with `keys` (one [`VerifyingKey`], or [`VerifyingKeys`] read
    /// from files and reloaded).
    pub fn new(keys: impl Into<VerifyingKeys>) -> Self {
        Self::with_clock(keys, || unix_seconds(SystemTime::now()))
    }

    fn with_clock(
        keys: impl Into<VerifyingKeys>,
        clock: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        crypto::install();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[USER_AUDIENCE, SERVICE_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // `exp` is checked in `verify`, against `clock`: jsonwebtoken reads the system clock.
        validation.validate_exp = false;
        let keys = keys.into();
        Self {
            cached_generation: std::sync::atomic::AtomicU64::new(keys.generation()),
            keys,
            validation,
            verified: cache::VerifiedTokens::default(),
            clock: Box::new(clock),
            revocations: Revocations::new(),
        }
    }

    /// Refuses the tokens of every subject in `revocations` (deleted accounts), as that set
    /// changes.
    #[must_use]
    pub fn with_revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    /// The deleted accounts this verifier refuses.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Refuses a deleted account's token, checked on every call (cached or not).
    fn not_revoked(&self, principal: Principal) -> Result<Principal, AuthError> {
        match &principal {
            Principal::User { user_id } if self.revocations.is_revoked(user_id) => {
                Err(AuthError::AccountDeleted)
            }
            _ => Ok(principal),
        }
    }

    /// Verifies a compact JWT and says whom it acts for.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let now = (self.clock)();
        let generation = self.keys.generation();
        if self
            .cached_generation
            .swap(generation, std::sync::atomic::Ordering::AcqRel)
            != generation
        {
            self.verified.clear();
        }
        if let Some(principal) = self.verified.get(token, now) {
            return self.not_revoked(principal);
        }
        let (principal, expires_at) = self.verify_signature(token)?;
        if !cache::still_valid(expires_at, now) {
            return Err(AuthError::Expired);
        }
        self.verified.insert(token, &principal, expires_at);
        self.not_revoked(principal)
    }

    fn verify_signature(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let classify = |error: jsonwebtoken::errors::Error| match error.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => AuthError::Malformed,
            _ => AuthError::Invalid,
        };
        let header = jsonwebtoken::decode_header(token).map_err(classify)?;
        let keys = self.keys.snapshot();
        let decode =
            |key: &DecodingKey| jsonwebtoken::decode::<Claims>(token, key, &self.validation);
        let data = match header.kid {
            // The key it names, and no other: a key not (or no longer) accepted fails.
            Some(kid) => decode(keys.get(&kid).ok_or(AuthError::Invalid)?).map_err(classify)?,
            // Tokens from before keys had ids: each key in turn (a set holds a few).
            None => {
                let mut outcome = Err(AuthError::Invalid);
                for key in keys.all() {
                    outcome = decode(key).map_err(classify);
                    if outcome.is_ok() {
                        break;
                    }
                }
                outcome?
            }
        };
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid);
        }
        let principal = match claims.aud.as_str() {
            USER_AUDIENCE => Principal::User {
                user_id: claims.sub,
            },
            SERVICE_AUDIENCE => Principal::Service { name: claims.sub },
            _ => return Err(AuthError::Invalid),
        };
        Ok((principal, claims.exp))
    }

    /// Reads `authorization: Bearer <token>` from request headers and verifies it.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        self.verify(auth::bearer_token(headers)?)
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn key_pair() -> (Issuer, Verifier) {
        let signing_key = SigningKey::generate().expect("system randomness");
        (
            Issuer::new(&signing_key, Duration::from_secs(900)),
            Verifier::new(&signing_key.verifying_key()),
        )
    }

    fn claims(audience: &str, exp_offset_seconds: i64) -> Claims {
        let now = unix_seconds(SystemTime::now());
        Claims {
            iss: ISSUER.into(),
            aud: audience.into(),
            sub: "0190c5a0-0000-7000-8000-000000000001".into(),
            iat: now,
            exp: now.saturating_add_signed(exp_offset_seconds),
        }
    }

    #[test]
    fn user_token_verifies_as_that_user() {
        let (issuer, verifier) = key_pair();
        let issued = issuer.user_token("user-1").expect("sign");
        assert_eq!(
            verifier.verify(&issued.token).expect("verify"),
            Principal::User {
                user_id: "user-1".into()
            }
        );
    }

    #[test]
    fn service_token_verifies_as_that_service() {
        let (issuer, verifier) = key_pair();
        let issued = issuer.service_token("gateway").expect("sign");
        assert_eq!(
            verifier.verify(&issued.token).expect("verify"),
            Principal::Service {
                name: "gateway".into()
            }
        );
    }

    #[test]
    fn a_deleted_accounts_token_is_refused_even_from_the_cache() {
        let (issuer, verifier) = key_pair();
        let revocations = Revocations::new();
        let verifier = verifier.with_revocations(revocations.clone());
        let deleted = issuer.user_token("user-1").expect("sign");
        let other = issuer.user_token("user-2").expect("sign");
        // Verified once: now in the cache.
        verifier
            .verify(&deleted.token)
            .expect("valid before the deletion");
        revocations.revoke("user-1", SystemTime::now());
        assert_eq!(
            verifier.verify(&deleted.token),
            Err(AuthError::AccountDeleted)
        );
        assert!(verifier.verify(&other.token).is_ok());
        // Services are not accounts: a subject named like a revoked user still passes.
        let service = issuer.service_token("user-1").expect("sign");
        assert!(verifier.verify(&service.token).is_ok());
    }

    #[test]
    fn token_signed_by_another_key_is_invalid() {
        let (issuer, _) = key_pair();
        let (_, other_verifier) = key_pair();
        let issued = issuer.user_token("user-1").expect("sign");
        assert_eq!(
            other_verifier.verify(&issued.token),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn expired_token_is_rejected_as_expired() {
        let (issuer, verifier) = key_pair();
        let token = issuer.sign(&claims(USER_AUDIENCE, -3600)).expect("sign");
        assert_eq!(verifier.verify(&token), Err(AuthError::Expired));
    }

    #[test]
    fn token_within_clock_skew_is_still_accepted() {
        let (issuer, verifier) = key_pair();
        let token = issuer.sign(&claims(USER_AUDIENCE, -5)).expect("sign");
        assert!(verifier.verify(&token).is_ok());
    }

    #[test]
    fn unknown_audience_is_rejected() {
        let (issuer, verifier) = key_pair();
        let token = issuer.sign(&claims("someone-else", 600)).expect("sign");
        assert_eq!(verifier.verify(&token), Err(AuthError::Invalid));
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let (issuer, verifier) = key_pair();
        let token = issuer.user_token("user-1").expect("sign").token;
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            br#"{"iss":"notesuite-gateway","aud":"notesuite","sub":"user-2","iat":1,"exp":99999999999}"#,
        );
        parts[1] = &forged_payload;
        assert_eq!(verifier.verify(&parts.join(".")), Err(AuthError::Invalid));
    }

    #[test]
    fn other_algorithms_are_rejected_before_any_signature_check() {
        let (_, verifier) = key_pair();
        // {"alg":"none","typ":"JWT"} . {"sub":"x"} . (no signature)
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
        assert!(verifier.verify(token).is_err());
        // HS256 header with a made-up signature.
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        assert_eq!(verifier.verify(token), Err(AuthError::Invalid));
    }

    /// A verifier whose clock starts at `start` (Unix seconds) and moves with tokio's clock,
    /// so a paused test decides when time passes.
    fn verifier_on_tokio_time(signing_key: &SigningKey, start: u64) -> Verifier {
        let started = tokio::time::Instant::now();
        Verifier::with_clock(&signing_key.verifying_key(), move || {
            start + started.elapsed().as_secs()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_token_is_still_checked_for_expiry() {
        const NOW: u64 = 1_800_000_000;
        const TTL: u64 = 600;
        let signing_key = SigningKey::generate().expect("system randomness");
        let issuer = Issuer::new(&signing_key, Duration::from_secs(TTL));
        let verifier = verifier_on_tokio_time(&signing_key, NOW);
        let signed_at = |iat: u64| {
            issuer
                .sign(&Claims {
                    iss: ISSUER.into(),
                    aud: USER_AUDIENCE.into(),
                    sub: "user-1".into(),
                    iat,
                    exp: iat + TTL,
                })
                .expect("sign")
        };
        let token = signed_at(NOW);
        let user = Principal::User {
            user_id: "user-1".into(),
        };

        assert_eq!(verifier.verify(&token), Ok(user.clone()), "checked anew");
        assert!(verifier.verified.contains(&token), "and remembered");

        // The last second of validity, clock skew included: still served from the cache.
        tokio::time::advance(Duration::from_secs(TTL + LEEWAY_SECONDS - 1)).await;
        assert_eq!(verifier.verify(&token), Ok(user));

        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(verifier.verify(&token), Err(AuthError::Expired));

        // A tampered copy is a different token: never served from the cache.
        let valid = signed_at(NOW + TTL + LEEWAY_SECONDS);
        let mut tampered = valid.clone();
        tampered.push('A');
        assert!(verifier.verify(&valid).is_ok());
        assert!(verifier.verify(&tampered).is_err());
    }

    #[test]
    fn garbage_is_malformed() {
        let (_, verifier) = key_pair();
        assert_eq!(verifier.verify("not a token"), Err(AuthError::Malformed));
        assert_eq!(verifier.verify(""), Err(AuthError::Malformed));
    }
}
