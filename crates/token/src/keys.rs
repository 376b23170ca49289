//! Ed25519 key pairs, read from PEM files (PKCS#8 private key, SPKI public key) or generated.

use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{DecodingKey, EncodingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a PEM-encoded Ed25519 {expected}")]
    Parse {
        path: String,
        expected: &'static str,
    },
    #[error("no key found in {paths} (a key file, or a directory of .pem key files)")]
    NoKeys { paths: String },
    #[error("cannot encode the key as PEM")]
    Encode,
    #[error("the system random number generator failed: {0}")]
    Randomness(getrandom::Error),
}

/// The gateway's private signing key.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_tuple("SigningKey").field(&"<redacted>").finish()
    }
}

impl SigningKey {
    /// A fresh random key (for `notesuite up` and tests).
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(KeyError::Randomness)?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// Reads a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`), e.g. from
    /// `openssl genpkey -algorithm ed25519`.
    /// A file others may read gets a warning, not a refusal: a key copied in with the
    /// usual umask (0644) would otherwise stop a deployment that worked, while the warning
    /// names the fix.
    pub fn read_pem_file(path: &Path) -> Result<Self, KeyError> {
        let pem = read(path)?;
        warn_if_world_readable(path);
        ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
            .map(Self)
            .map_err(|_| KeyError::Parse {
                path: path.display().to_string(),
                expected: "private key (PKCS#8)",
            })
    }

    /// PKCS#8 v1 (RFC 8410's `PrivateKeyInfo`), the form OpenSSL, Python's `cryptography`
    /// and Go read: ed25519-dalek's own encoding is v2 with the public key inside, and OpenSSL
    /// 3.0 (`openssl pkey`) and `cryptography` refuse that one ("extra data"). The public key
    /// is derived from the private one when the file is read, so nothing is lost.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        ed25519_dalek::ed25519::pkcs8::KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|_| KeyError::Encode)
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    pub(crate) fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_ed_der(self.0.as_bytes())
    }
}

/// The public key every service verifies tokens with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// Reads an SPKI PEM file (`-----BEGIN PUBLIC KEY-----`), e.g. from
    /// `openssl pkey -pubout`.
    pub fn read_pem_file(path: &Path) -> Result<Self, KeyError> {
        let pem = read(path)?;
        ed25519_dalek::VerifyingKey::from_public_key_pem(&pem)
            .map(Self)
            .map_err(|_| KeyError::Parse {
                path: path.display().to_string(),
                expected: "public key (SPKI)",
            })
    }

    pub fn to_public_key_pem(&self) -> Result<String, KeyError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| KeyError::Encode)
    }

    /// The key from its 32 raw bytes (RFC 8032), as in a JWK's `x`.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyError::Parse {
                path: "raw bytes".into(),
                expected: "public key",
            })
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub(crate) fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ed_der(self.0.as_bytes())
    }
}

/// Logs a warning when `path` (a private key) is readable by users other than its owner and
/// group; whether it is is returned, for tests.
fn warn_if_world_readable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).map_or(0, |metadata| metadata.permissions().mode());
        if mode & 0o007 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the private key file is readable by every user on this machine: \
                 chmod o-rwx it (in Kubernetes, a Secret volume's defaultMode 0400 or 0440)"
            );
            return true;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    false
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = SigningKey::generate().expect("randomness");
        let private_path = dir.path().join("private.pem");
        let public_path = dir.path().join("public.pem");
        std::fs::write(&private_path, key.to_pkcs8_pem().expect("encode")).expect("write");
        std::fs::write(
            &public_path,
            key.verifying_key().to_public_key_pem().expect("encode"),
        )
        .expect("write");

        let read_back = SigningKey::read_pem_file(&private_path).expect("read private");
        assert_eq!(read_back.verifying_key(), key.verifying_key());
        assert_eq!(
            VerifyingKey::read_pem_file(&public_path).expect("read public"),
            key.verifying_key()
        );
    }

    #[test]
    fn keys_written_before_in_pkcs8_v2_are_still_read() {
        let key = SigningKey::generate().expect("key");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("v2.pem");
        // ed25519-dalek's own encoding: PKCS#8 v2, with the public key inside.
        let v2 = key.0.to_pkcs8_pem(LineEnding::LF).expect("encode");
        std::fs::write(&path, v2.as_bytes()).expect("write");
        let read_back = SigningKey::read_pem_file(&path).expect("read");
        assert_eq!(read_back.verifying_key(), key.verifying_key());
        assert!(
            !key.to_pkcs8_pem().expect("encode").contains(v2.as_str()),
            "new keys are written as v1"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_private_key_others_may_read_is_flagged() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("private.pem");
        let key = SigningKey::generate().expect("randomness");
        std::fs::write(&path, key.to_pkcs8_pem().expect("encode")).expect("write");
        for (mode, flagged) in [(0o600, false), (0o440, false), (0o644, true), (0o604, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(warn_if_world_readable(&path), flagged, "{mode:o}");
            SigningKey::read_pem_file(&path).expect("read anyway");
        }
    }

    #[test]
    fn a_public_key_is_not_accepted_as_a_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = SigningKey::generate().expect("randomness");
        let public_path = dir.path().join("public.pem");
        std::fs::write(
            &public_path,
            key.verifying_key().to_public_key_pem().expect("encode"),
        )
        .expect("write");
        let error = SigningKey::read_pem_file(&public_path).expect_err("must not parse");
        assert!(error.to_string().contains("public.pem"), "{error}");
    }
}
