//! The users service's rules: who may do what, and what each operation means.

use token::Principal;

use crate::domain::{DisplayName, Email, Password, User, UserChanges, UserId, Version};
use crate::error::Error;
use crate::password::PasswordHasher;
use crate::store::{AccountDeletion, UserStore};
use std::time::SystemTime;

/// Most ids one BatchGetUsers may ask for.
pub const MAX_BATCH_GET: usize = 100;

/// Most deletions one ListAccountDeletions returns.
pub const MAX_DELETIONS_PAGE: u32 = 1000;

#[derive(Debug)]
pub struct Users<S> {
    store: S,
    passwords: PasswordHasher,
    /// Deleted accounts whose tokens this process refuses: this replica's deletions at once,
    /// other replicas' within [`token::revocations::REFRESH_INTERVAL`].
    revocations: token::Revocations,
}

/// A new account, validated.
#[derive(Debug)]
pub struct NewUser {
    pub email: Email,
    pub display_name: DisplayName,
    pub password: Password,
}

impl<S: UserStore> Users<S> {
    pub fn new(store: S, passwords: PasswordHasher, revocations: token::Revocations) -> Self {
        Self {
            store,
            passwords,
            revocations,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub async fn create(&self, caller: &Principal, new: NewUser) -> Result<User, Error> {
        require_service(caller)?;
        let password_hash = self.passwords.hash(new.password).await?;
        let now = crate::store::now();
        let user = User {
            id: UserId::new(),
            email: new.email,
            display_name: new.display_name,
            version: Version::FIRST,
            create_time: now,
            update_time: now,
        };
        self.store.insert(&user, &password_hash).await?;
        tracing::info!(user_id = %user.id, "user created");
        Ok(user)
    }

    pub async fn get(&self, caller: &Principal, id: UserId) -> Result<User, Error> {
        require_self_or_service(caller, id)?;
        self.store.get(id).await?.ok_or(Error::UserNotFound)
    }

    /// The accounts for `ids`, in the order asked; NOT_FOUND if any is missing.
    pub async fn batch_get(&self, caller: &Principal, ids: &[UserId]) -> Result<Vec<User>, Error> {
        require_service(caller)?;
        let found = self.store.get_many(ids).await?;
        ids.iter()
            .map(|id| {
                found
                    .iter()
                    .find(|user| user.id == *id)
                    .cloned()
                    .ok_or(Error::UserNotFound)
            })
            .collect()
    }

    pub async fn list(
        &self,
        caller: &Principal,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<User>, Error> {
        require_service(caller)?;
        self.store.list(after, limit).await
    }

    pub async fn update(
        &self,
        caller: &Principal,
        id: UserId,
        expected: Version,
        changes: UserChanges,
    ) -> Result<User, Error> {
        require_self_or_service(caller, id)?;
        let user = self
            .store
            .update(id, expected, &changes, crate::store::now())
            .await?;
        tracing::info!(user_id = %user.id, version = user.version.get(), "user updated");
        Ok(user)
    }

    pub async fn delete(
        &self,
        caller: &Principal,
        id: UserId,
        expected: Option<Version>,
    ) -> Result<(), Error> {
        require_self_or_service(caller, id)?;
        let now = crate::store::now();
        self.store.delete(id, expected, now).await?;
        self.revocations.revoke(id.to_string(), now);
        tracing::info!(user_id = %id, "user deleted: its tokens are refused, its notes purge pending");
        Ok(())
    }

    /// Recorded account deletions (see [`UserStore::deletions`]).
    pub async fn deletions(
        &self,
        caller: &Principal,
        since: Option<SystemTime>,
        pending_only: bool,
        limit: u32,
    ) -> Result<Vec<AccountDeletion>, Error> {
        require_service(caller)?;
        self.store
            .deletions(since, pending_only, limit.clamp(1, MAX_DELETIONS_PAGE))
            .await
    }

    /// Records that a deleted account's notes are purged.
    pub async fn confirm_purged(&self, caller: &Principal, id: UserId) -> Result<(), Error> {
        require_service(caller)?;
        self.store.confirm_purged(id, crate::store::now()).await?;
        tracing::info!(user_id = %id, "deleted account's notes purged");
        Ok(())
    }

    /// The account for `email` if `password` is right. Unknown emails and wrong passwords
    /// get the same error after the same amount of work.
    pub async fn verify_credentials(
        &self,
        caller: &Principal,
        email: &str,
        password: String,
    ) -> Result<User, Error> {
        require_service(caller)?;
        // An email that cannot exist is an unknown email: still pay for a hash.
        let found = match Email::parse(email) {
            Ok(email) => self.store.get_with_password_hash(&email).await?,
            Err(_) => None,
        };
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        match (self.passwords.verify(password, hash).await?, user) {
            (true, Some(user)) => Ok(user),
            _ => Err(Error::InvalidCredentials),
        }
    }
}

fn require_service(caller: &Principal) -> Result<(), Error> {
    match caller {
        Principal::Service { .. } => Ok(()),
        Principal::User { .. } => Err(Error::ServiceCredentialRequired),
    }
}

/// A user may act on their own account only. Any other account is NOT_FOUND, never
/// PERMISSION_DENIED: that would confirm the account exists.
fn require_self_or_service(caller: &Principal, id: UserId) -> Result<(), Error> {
    match caller {
        Principal::Service { .. } => Ok(()),
        Principal::User { user_id } if *user_id == id.to_string() => Ok(()),
        Principal::User { .. } => Err(Error::UserNotFound),
    }
}
