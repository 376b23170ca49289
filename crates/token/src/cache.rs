//! A cache of tokens already verified.
//!
//! An Ed25519 signature check costs tens of microseconds, more than everything else a call
//! through the gateway costs; clients send the same token on every call until it expires.
//! A token found here skips the signature check but never its expiry: an entry remembers
//! when its token stops being valid.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{LEEWAY_SECONDS, Principal};

/// Most tokens remembered; when full the cache starts over, which bounds memory and costs a
/// burst of signature checks at worst.
const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct VerifiedTokens {
    entries: Mutex<HashMap<Box<str>, Verified>>,
}

#[derive(Debug, Clone)]
struct Verified {
    principal: Principal,
    /// `exp` plus the tolerated clock skew, seconds since the Unix epoch.
    valid_until: u64,
}

impl VerifiedTokens {
    /// The principal of `token` if it was verified before and has not expired since.
    pub(crate) fn get(&self, token: &str, now: u64) -> Option<Principal> {
        let entries = self.entries.lock().ok()?;
        let verified = entries.get(token)?;
        (now < verified.valid_until).then(|| verified.principal.clone())
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, token: &str) -> bool {
        self.entries
            .lock()
            .is_ok_and(|entries| entries.contains_key(token))
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    pub(crate) fn insert(&self, token: &str, principal: &Principal, expires_at: u64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(
            token.into(),
            Verified {
                principal: principal.clone(),
                valid_until: valid_until(expires_at),
            },
        );
    }
}

/// Whether a token whose `exp` is `expires_at` is still accepted at `now`: RFC 7519 wants
/// `now` before `exp`, and the clock skew between the gateway and the services is tolerated.
pub(crate) fn still_valid(expires_at: u64, now: u64) -> bool {
    now < valid_until(expires_at)
}

fn valid_until(expires_at: u64) -> u64 {
    expires_at.saturating_add(LEEWAY_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_token_expires_with_its_claims() {
        let cache = VerifiedTokens::default();
        let principal = Principal::User {
            user_id: "u".into(),
        };
        cache.insert("token", &principal, 1_000);
        assert_eq!(cache.get("token", 1_000), Some(principal));
        assert_eq!(cache.get("token", 1_000 + LEEWAY_SECONDS), None);
        assert_eq!(cache.get("other", 10), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedTokens::default();
        let principal = Principal::Service { name: "s".into() };
        for index in 0..(CAPACITY + 5) {
            cache.insert(&index.to_string(), &principal, u64::MAX);
        }
        assert!(cache.entries.lock().expect("lock").len() <= CAPACITY);
    }
}
