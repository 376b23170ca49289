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

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    slots: Arc<Semaphore>,
    /// A real hash of a random password, verified against when an email is unknown so that
    /// unknown emails and wrong passwords take the same time.
    decoy_hash: Arc<str>,
}

impl PasswordHasher {
    pub async fn new(concurrency: usize) -> Result<Self, Error> {
        let decoy = tokio::task::spawn_blocking(|| {
            let mut random = [0u8; 32];
            getrandom_fill(&mut random);
            hash_blocking(&random)
        })
        .await??;
        Ok(Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            decoy_hash: decoy.into(),
        })
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
        let hash = stored_hash.unwrap_or_else(|| self.decoy_hash.to_string());
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

fn getrandom_fill(buffer: &mut [u8]) {
    // A decoy from a failed RNG is still a valid hash of *some* password; only its
    // unpredictability would suffer, and it never grants access.
    let _ = getrandom::fill(buffer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = PasswordHasher::new(2).await.expect("hasher");
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
    async fn unknown_account_never_verifies() {
        let hasher = PasswordHasher::new(1).await.expect("hasher");
        assert!(
            !hasher
                .verify("anything at all".into(), None)
                .await
                .expect("verify")
        );
    }
}
