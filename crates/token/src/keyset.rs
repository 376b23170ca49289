//! Key rotation: the keys a verifier accepts and the key the gateway signs with, read from
//! files or directories and read again while the process runs.
//!
//! Every token names its key in `kid`: the key's JWK thumbprint (RFC 7638), so that the same
//! key has the same id everywhere, with nothing to configure. A verifier holds a set of public
//! keys; the gateway signs with the newest of its private keys (latest modification time, then
//! greatest file name — a Kubernetes Secret gives all its files one time, so name keys to sort,
//! e.g. `jwt-2026-12.pem`).
//!
//! Rotating without a failed call: (1) add the new public key where every service reads its
//! public keys and wait one reload interval; (2) add the new private key to the gateway's key
//! directory: it signs with it from its next reload, and every service already accepts it;
//! (3) once the longest token lifetime has passed, remove the old keys.
//!
//! A file that does not read or parse keeps the previous set in force (a key half written when
//! the reload looks, say) and is reported; the next reload tries again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::Digest as _;

use crate::keys::{KeyError, SigningKey, VerifyingKey};

/// A key's id: the base64url SHA-256 of its RFC 7638 JWK (`crv`, `kty`, `x`, in that order).
pub(crate) fn key_id(key: &VerifyingKey) -> String {
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes());
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(jwk.as_bytes()))
}

/// The public keys tokens are checked against, by id.
pub(crate) struct KeySet {
    keys: Vec<(String, DecodingKey)>,
}

impl KeySet {
    fn of(keys: &[VerifyingKey]) -> Self {
        let mut keys: Vec<(String, DecodingKey)> = keys
            .iter()
            .map(|key| (key_id(key), key.decoding_key()))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys.dedup_by(|a, b| a.0 == b.0);
        Self { keys }
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys
            .iter()
            .find(|(id, _)| id == kid)
            .map(|(_, key)| key)
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &DecodingKey> {
        self.keys.iter().map(|(_, key)| key)
    }

    fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }
}

/// Where a verifier's keys come from.
#[derive(Debug, Clone)]
enum Source {
    Fixed(Vec<VerifyingKey>),
    Files {
        /// Files or directories of public keys (SPKI PEM).
        public: Vec<PathBuf>,
        /// Files or directories of private keys (PKCS#8 PEM), whose public halves count.
        private: Vec<PathBuf>,
    },
}

/// The public keys a service accepts tokens signed with; cheap to clone, shared by every
/// verifier built from it, and replaced whole by [`VerifyingKeys::reload`].
#[derive(Clone)]
pub struct VerifyingKeys {
    source: Arc<Source>,
    current: Arc<RwLock<Arc<KeySet>>>,
    /// Bumped on every change, so that verifiers forget tokens checked with removed keys.
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKeys")
            .field("source", &self.source)
            .field("ids", &self.snapshot().ids())
            .finish()
    }
}

impl From<&VerifyingKey> for VerifyingKeys {
    fn from(key: &VerifyingKey) -> Self {
        Self::fixed(std::slice::from_ref(key))
    }
}

impl VerifyingKeys {
    /// These keys, for good.
    pub fn fixed(keys: &[VerifyingKey]) -> Self {
        Self::new(Source::Fixed(keys.to_vec()), KeySet::of(keys))
    }

    /// The public keys in `public` (files, or directories of `.pem` files) and the public
    /// halves of the private keys in `private`; at least one key must be found.
    pub fn read(public: &[PathBuf], private: &[PathBuf]) -> Result<Self, KeyError> {
        let source = Source::Files {
            public: public.to_vec(),
            private: private.to_vec(),
        };
        let keys = read_source(&source)?;
        Ok(Self::new(source, KeySet::of(&keys)))
    }

    fn new(source: Source, keys: KeySet) -> Self {
        Self {
            source: Arc::new(source),
            current: Arc::new(RwLock::new(Arc::new(keys))),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The ids of the keys accepted now.
    pub fn ids(&self) -> Vec<String> {
        self.snapshot()
            .ids()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Reads the files again; whether the set changed. On an error the set in force stays.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let keys = KeySet::of(&read_source(&self.source)?);
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.ids() == keys.ids() {
            return Ok(false);
        }
        tracing::info!(
            before = ?current.ids(),
            after = ?keys.ids(),
            "token verification keys changed"
        );
        *current = Arc::new(keys);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// Reloads every `interval` for as long as the process runs (nothing to do for fixed
    /// keys); must be called within a Tokio runtime.
    pub fn reload_every(&self, interval: Duration) {
        if matches!(*self.source, Source::Fixed(_)) {
            return;
        }
        let keys = self.clone();
        reload_every(interval, "token verification keys", move || keys.reload());
    }
}

/// Calls `reload` every `interval` for as long as the process runs, logging a failure (the
/// keys in force stay).
fn reload_every(
    interval: Duration,
    what: &'static str,
    reload: impl Fn() -> Result<bool, KeyError> + Send + 'static,
) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(error) = reload() {
                tracing::warn!(%error, "{what} not reloaded; those in force stay");
            }
        }
    });
}

fn read_source(source: &Source) -> Result<Vec<VerifyingKey>, KeyError> {
    let (public, private) = match source {
        Source::Fixed(keys) => return Ok(keys.clone()),
        Source::Files { public, private } => (public, private),
    };
    let mut keys = Vec::new();
    for path in pem_files(public)? {
        keys.push(VerifyingKey::read_pem_file(&path)?);
    }
    for path in pem_files(private)? {
        keys.push(SigningKey::read_pem_file(&path)?.verifying_key());
    }
    if keys.is_empty() {
        return Err(KeyError::NoKeys {
            paths: public
                .iter()
                .chain(private)
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(keys)
}

/// Each path that is a file, and the `.pem` files directly in each directory (hidden entries
/// skipped: a Kubernetes Secret volume keeps its versions in `..data` folders), with their
/// modification times.
fn pem_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, KeyError> {
    Ok(pem_files_with_times(paths)?
        .into_iter()
        .map(|(path, _)| path)
        .collect())
}

fn pem_files_with_times(paths: &[PathBuf]) -> Result<Vec<(PathBuf, SystemTime)>, KeyError> {
    let read_error = |path: &Path, source| KeyError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).map_err(|error| read_error(path, error))?;
        if !metadata.is_dir() {
            files.push((
                path.clone(),
                metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
            continue;
        }
        let entries = std::fs::read_dir(path).map_err(|error| read_error(path, error))?;
        for entry in entries {
            let entry = entry.map_err(|error| read_error(path, error))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".pem") {
                continue;
            }
            let file = entry.path();
            let metadata = std::fs::metadata(&file).map_err(|error| read_error(&file, error))?;
            if metadata.is_file() {
                files.push((file, metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The key tokens are signed with now, and its id.
pub(crate) struct Signing {
    pub(crate) kid: String,
    pub(crate) key: EncodingKey,
}

/// The gateway's private keys: it signs with the newest. Cheap to clone.
#[derive(Clone)]
pub struct SigningKeys {
    source: Option<PathBuf>,
    current: Arc<RwLock<Arc<Signing>>>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material: the id says which key it is.
        f.debug_struct("SigningKeys")
            .field("source", &self.source)
            .field("kid", &self.current().kid)
            .finish()
    }
}

impl From<&SigningKey> for SigningKeys {
    fn from(key: &SigningKey) -> Self {
        Self {
            source: None,
            current: Arc::new(RwLock::new(Arc::new(signing(key)))),
        }
    }
}

fn signing(key: &SigningKey) -> Signing {
    Signing {
        kid: key_id(&key.verifying_key()),
        key: key.encoding_key(),
    }
}

impl SigningKeys {
    /// The newest private key at `path` (a file, or a directory of `.pem` files).
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let key = newest(path)?;
        Ok(Self {
            source: Some(path.to_owned()),
            current: Arc::new(RwLock::new(Arc::new(signing(&key)))),
        })
    }

    pub(crate) fn current(&self) -> Arc<Signing> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The id of the key tokens are signed with now.
    pub fn kid(&self) -> String {
        self.current().kid.clone()
    }

    /// Reads the files again; whether the signing key changed. On an error the key in force
    /// stays.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let Some(path) = &self.source else {
            return Ok(false);
        };
        let key = signing(&newest(path)?);
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.kid == key.kid {
            return Ok(false);
        }
        tracing::info!(
            before = current.kid,
            after = key.kid,
            "token signing key changed"
        );
        *current = Arc::new(key);
        Ok(true)
    }

    /// Reloads every `interval` for as long as the process runs; must be called within a
    /// Tokio runtime.
    pub fn reload_every(&self, interval: Duration) {
        if self.source.is_none() {
            return;
        }
        let keys = self.clone();
        reload_every(interval, "token signing keys", move || keys.reload());
    }
}

/// The newest private key at `path`: latest modification time, then greatest name.
fn newest(path: &Path) -> Result<SigningKey, KeyError> {
    let files = pem_files_with_times(&[path.to_owned()])?;
    let newest = files
        .iter()
        .max_by(|(a_path, a_time), (b_path, b_time)| a_time.cmp(b_time).then(a_path.cmp(b_path)))
        .ok_or_else(|| KeyError::NoKeys {
            paths: path.display().to_string(),
        })?;
    SigningKey::read_pem_file(&newest.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthError, Issuer, Principal, Verifier};

    fn write_private(dir: &Path, name: &str, key: &SigningKey) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, key.to_pkcs8_pem().expect("pem")).expect("write");
        path
    }

    fn write_public(dir: &Path, name: &str, key: &SigningKey) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, key.verifying_key().to_public_key_pem().expect("pem"))
            .expect("write");
        path
    }

    fn token(key: &SigningKey) -> String {
        Issuer::new(key, Duration::from_secs(600))
            .user_token("u1")
            .expect("sign")
            .token
    }

    fn kid(token: &str) -> Option<String> {
        jsonwebtoken::decode_header(token).expect("header").kid
    }

    #[test]
    fn a_key_id_is_its_rfc_7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .expect("base64");
        let bytes: [u8; 32] = x.try_into().expect("32 bytes");
        let key = VerifyingKey::from_bytes(&bytes).expect("a public key");
        assert_eq!(key_id(&key), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn tokens_name_their_key_and_verifiers_use_that_key() {
        let (old, new) = (
            SigningKey::generate().expect("key"),
            SigningKey::generate().expect("key"),
        );
        let keys = VerifyingKeys::fixed(&[old.verifying_key(), new.verifying_key()]);
        let verifier = Verifier::new(keys);
        for key in [&old, &new] {
            let token = token(key);
            assert_eq!(kid(&token), Some(key_id(&key.verifying_key())));
            assert!(matches!(
                verifier.verify(&token),
                Ok(Principal::User { .. })
            ));
        }
        let stranger = SigningKey::generate().expect("key");
        assert_eq!(verifier.verify(&token(&stranger)), Err(AuthError::Invalid));
    }

    #[test]
    fn a_token_naming_one_key_is_not_checked_against_another() {
        let (accepted, other) = (
            SigningKey::generate().expect("key"),
            SigningKey::generate().expect("key"),
        );
        let verifier = Verifier::new(&accepted.verifying_key());
        // Signed by the accepted key but naming another one: refused, not tried with each.
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key_id(&other.verifying_key()));
        let claims = crate::Claims {
            iss: crate::ISSUER.into(),
            aud: crate::USER_AUDIENCE.into(),
            sub: "u1".into(),
            iat: crate::unix_seconds(SystemTime::now()),
            exp: crate::unix_seconds(SystemTime::now()) + 600,
        };
        crate::crypto::install();
        let token = jsonwebtoken::encode(&header, &claims, &accepted.encoding_key()).expect("sign");
        assert_eq!(verifier.verify(&token), Err(AuthError::Invalid));
        // A token without a key id (from before rotation) is checked against every key.
        let legacy = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            &accepted.encoding_key(),
        )
        .expect("sign");
        assert!(verifier.verify(&legacy).is_ok());
    }

    #[test]
    fn a_rotation_read_from_files_adds_then_removes_a_key() {
        let dir = tempfile::tempdir().expect("dir");
        let (old, new) = (
            SigningKey::generate().expect("key"),
            SigningKey::generate().expect("key"),
        );
        let old_public = write_public(dir.path(), "jwt-1.pem", &old);
        std::fs::write(dir.path().join("README"), "not a key").expect("write");
        let keys = VerifyingKeys::read(&[dir.path().to_owned()], &[]).expect("read");
        let verifier = Verifier::new(keys.clone());
        let (old_token, new_token) = (token(&old), token(&new));
        assert!(verifier.verify(&old_token).is_ok());
        assert_eq!(verifier.verify(&new_token), Err(AuthError::Invalid));

        write_public(dir.path(), "jwt-2.pem", &new);
        assert!(keys.reload().expect("reload"));
        assert!(
            verifier.verify(&new_token).is_ok(),
            "the new key is accepted"
        );
        assert!(verifier.verify(&old_token).is_ok(), "and the old one still");
        assert!(!keys.reload().expect("reload"), "nothing changed");

        std::fs::remove_file(&old_public).expect("remove");
        assert!(keys.reload().expect("reload"));
        assert_eq!(
            verifier.verify(&old_token),
            Err(AuthError::Invalid),
            "a removed key's tokens are refused at once, cached or not"
        );
        assert!(verifier.verify(&new_token).is_ok());
    }

    #[test]
    fn a_key_file_that_does_not_parse_keeps_the_keys_in_force() {
        let dir = tempfile::tempdir().expect("dir");
        let key = SigningKey::generate().expect("key");
        write_public(dir.path(), "jwt-1.pem", &key);
        let keys = VerifyingKeys::read(&[dir.path().to_owned()], &[]).expect("read");
        std::fs::write(
            dir.path().join("jwt-2.pem"),
            "-----BEGIN PUBLIC KEY-----\nhalf",
        )
        .expect("write");
        let error = keys.reload().expect_err("a half-written key");
        assert!(error.to_string().contains("jwt-2.pem"), "{error}");
        assert!(Verifier::new(keys).verify(&token(&key)).is_ok());
        let empty = tempfile::tempdir().expect("dir");
        let error = VerifyingKeys::read(&[empty.path().to_owned()], &[]).expect_err("no keys");
        assert!(matches!(error, KeyError::NoKeys { .. }), "{error}");
    }

    #[test]
    fn the_gateway_signs_with_its_newest_key_and_accepts_all_of_them() {
        let dir = tempfile::tempdir().expect("dir");
        let (first, second) = (
            SigningKey::generate().expect("key"),
            SigningKey::generate().expect("key"),
        );
        let first_path = write_private(dir.path(), "jwt-2026-01.pem", &first);
        let second_path = write_private(dir.path(), "jwt-2026-02.pem", &second);
        // Same modification time, as in a Kubernetes Secret: the greater name is the newer.
        let time = std::fs::metadata(&first_path)
            .expect("metadata")
            .modified()
            .expect("mtime");
        for path in [&first_path, &second_path] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .expect("open")
                .set_modified(time)
                .expect("set time");
        }
        let signing = SigningKeys::read(dir.path()).expect("read");
        assert_eq!(signing.kid(), key_id(&second.verifying_key()));
        let verifying = VerifyingKeys::read(&[], &[dir.path().to_owned()]).expect("read");
        assert_eq!(verifying.ids().len(), 2);

        // A third key written later is newer by time, whatever its name.
        let third = SigningKey::generate().expect("key");
        let third_path = write_private(dir.path(), "a-later-key.pem", &third);
        std::fs::File::options()
            .write(true)
            .open(&third_path)
            .expect("open")
            .set_modified(time + Duration::from_secs(60))
            .expect("set time");
        assert!(signing.reload().expect("reload"));
        let issuer = Issuer::new(signing.clone(), Duration::from_secs(600));
        let token = issuer.user_token("u1").expect("sign").token;
        assert_eq!(kid(&token), Some(key_id(&third.verifying_key())));
        assert!(format!("{signing:?}").contains(&key_id(&third.verifying_key())));
        assert!(!format!("{signing:?}").contains("PRIVATE"));
    }
}
