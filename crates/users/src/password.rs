//! argon2id password hashing, off the async runtime and bounded.
//!
//! Each hash takes ~19 MiB and a core for tens of milliseconds (the argon2 crate's defaults,
//! OWASP's recommendation), so hashes run on the blocking pool, at most `concurrency` at a
//! time: a login storm queues briefly and then gets RESOURCE_EXHAUSTED instead of exhausting
//! memory.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;

use crate::domain::Password;
use crate::error::Error;

/// How long a hash request may wait for a free slot before it is refused.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// A real argon2id hash (the crate's default parameters, as for every account) of 32 random
/// bytes nobody kept. Verifying against it when an email is unknown makes unknown emails and
/// wrong passwords cost the same time. A constant rather than a hash computed at start-up:
/// that took ~30 ms and ~19 MiB on every start (see `decoy_matches_the_parameters_in_use`).
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$RkjoBeLJv/utg0RN2ljTTQ$gv7f8CvP38GcDXFGp5jLghDdgcULacXg6PocUkbpNKk";

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    slots: Arc<Semaphore>,
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// The PHC string (`$argon2id$v=19$...`) of `password` with a fresh random salt.
    pub async fn hash(&self, password: Password) -> Result<String, Error> {
        let _slot = self.slot().await?;
        tokio::task::spawn_blocking(move || hash_blocking(password.as_bytes())).await?
    }

    /// Whether `password` matches `stored_hash`; with `None` (unknown account) it does the same
    /// work against a decoy and answers `false`.
    pub async fn verify(
        &self,
        password: String,
        stored_hash: Option<String>,
    ) -> Result<bool, Error> {
        let _slot = self.slot().await?;
        let known = stored_hash.is_some();
        let hash = stored_hash.unwrap_or_else(|| DECOY_HASH.to_owned());
        let matches = tokio::task::spawn_blocking(move || {
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await?;
        Ok(known && matches)
    }

    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Error> {
        match tokio::time::timeout(MAX_QUEUE_WAIT, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a full queue all the same.
            Ok(Err(_)) | Err(_) => Err(Error::PasswordHashingBusy {
                retry_after: Duration::from_secs(1),
            }),
        }
    }
}

fn hash_blocking(password: &[u8]) -> Result<String, Error> {
    Argon2::default()
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|error| Error::PasswordHash(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = PasswordHasher::new(2);
        let password = Password::parse("correct horse battery".into()).expect("valid");
        let hash = hasher.hash(password).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("wrong horse battery".into(), Some(hash))
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn decoy_matches_the_parameters_in_use() {
        // If the parameters of new hashes change, the decoy must change with them, or unknown
        // emails would answer faster than wrong passwords.
        let hasher = PasswordHasher::new(1);
        let password = Password::parse("correct horse battery".into()).expect("valid");
        let hash = hasher.hash(password).await.expect("hash");
        let parameters = |phc: &str| phc.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(parameters(&hash), parameters(DECOY_HASH));
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        let hasher = PasswordHasher::new(1);
        assert!(
            !hasher
                .verify("anything at all".into(), None)
                .await
                .expect("verify")
        );
    }
}
