//! Users' domain types. Each is parsed once, at the edge, and cannot hold an invalid value.

use std::fmt;
use std::time::SystemTime;

use uuid::Uuid;

/// A user's identifier: a UUIDv7, so that sorting by id sorts by creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Uuid);

impl UserId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() {
            return Err("is required");
        }
        Uuid::try_parse(raw)
            .map(Self)
            .map_err(|_| "must be a user id (a UUID)")
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Uuid::from_slice(bytes).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub(crate) fn as_uuid(&self) -> Uuid {
        self.0
    }

    pub(crate) fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// An email address as typed (trimmed), with the lowercased key that makes it unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    address: String,
    key: String,
}

const MAX_EMAIL_LEN: usize = 254;

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let address = raw.trim();
        if address.is_empty() {
            return Err("is required");
        }
        if address.len() > MAX_EMAIL_LEN {
            return Err("must be at most 254 characters");
        }
        if !email_address::EmailAddress::is_valid(address) || !address.contains('.') {
            return Err("must be an email address such as ada@example.com");
        }
        Ok(Self {
            address: address.to_owned(),
            key: address.to_lowercase(),
        })
    }

    /// Rebuilds an email read back from our own database.
    pub(crate) fn from_stored(address: String) -> Self {
        let key = address.to_lowercase();
        Self { address, key }
    }

    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The case-insensitive uniqueness key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A display name: 1 to 100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("is required");
        }
        if name.chars().count() > 100 {
            return Err("must be at most 100 characters");
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(name.to_owned()))
    }

    pub(crate) fn from_stored(name: String) -> Self {
        Self(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 8 to 128 characters, taken as given (never trimmed).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub fn parse(raw: String) -> Result<Self, &'static str> {
        match raw.chars().count() {
            0 => Err("is required"),
            1..8 => Err("must be at least 8 characters"),
            8..=128 => Ok(Self(raw)),
            _ => Err("must be at most 128 characters"),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The optimistic-concurrency version of an account, sent to clients as its etag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(i64);

impl Version {
    pub const FIRST: Self = Self(1);

    pub(crate) fn from_stored(version: i64) -> Self {
        Self(version)
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn etag(self) -> String {
        format!("u{}", self.0)
    }

    pub fn parse_etag(etag: &str) -> Result<Self, &'static str> {
        etag.strip_prefix('u')
            .and_then(|digits| digits.parse::<i64>().ok())
            .filter(|version| *version > 0)
            .map(Self)
            .ok_or("is not an etag this service issued")
    }
}

/// A stored account (without its password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub display_name: DisplayName,
    pub version: Version,
    pub create_time: SystemTime,
    pub update_time: SystemTime,
}

/// The changes an update applies; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    pub email: Option<Email>,
    pub display_name: Option<DisplayName>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_keyed_case_insensitively() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "Ada.Lovelace@Example.COM");
        assert_eq!(email.key(), "ada.lovelace@example.com");
    }

    #[test]
    fn bad_emails_are_rejected() {
        for raw in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@@example.com",
            "ada example@x.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} should be rejected");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn display_name_rules() {
        assert_eq!(DisplayName::parse("  Ada ").expect("valid").as_str(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("Ada\nLovelace").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn password_length_counts_characters() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("exactly8".into()).is_ok());
        assert!(Password::parse("ü".repeat(128)).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn etags_round_trip_and_reject_garbage() {
        assert_eq!(
            Version::parse_etag(&Version::from_stored(42).etag()),
            Ok(Version::from_stored(42))
        );
        for raw in ["", "42", "u", "u-1", "u0", "uabc"] {
            assert!(Version::parse_etag(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn user_ids_parse_only_uuids() {
        let id = UserId::new();
        assert_eq!(UserId::parse(&id.to_string()), Ok(id));
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("42").is_err());
    }
}
