//! Certificate authorities and certificates for tests, written where a service reads them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Serial numbers of the test certificates: distinct within a process, so that a test can tell
/// which certificate a server presented.
static SERIALS: AtomicU64 = AtomicU64::new(1000);

/// A certificate authority that issues certificates good for both servers and clients.
pub struct TestCa {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// The serial, as [`crate::CertificateSummary::serial`] writes it.
    pub serial: String,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("a test CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate = params.self_signed(&key).expect("a self-signed CA");
        Self { certificate, key }
    }

    pub fn cert_pem(&self) -> String {
        self.certificate.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses), valid for servers and clients
    /// until the end of `expiry_year`.
    pub fn issue(&self, names: &[&str], expiry_year: i32) -> Issued {
        let key = KeyPair::generate().expect("a test key");
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .expect("certificate parameters");
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        let serial = SERIALS.fetch_add(1, Ordering::Relaxed);
        params.serial_number = Some(serial.into());
        params.not_after = rcgen::date_time_ymd(expiry_year, 12, 31);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("a signed certificate");
        Issued {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            serial: serial_text(serial),
        }
    }
}

/// How [`crate::CertificateSummary`] writes the serial `value` (DER: minimal big-endian bytes,
/// with a leading zero when the top bit is set).
fn serial_text(value: u64) -> String {
    let bytes = value.to_be_bytes();
    let start = bytes.iter().position(|byte| *byte != 0).unwrap_or(7);
    let mut der = bytes[start..].to_vec();
    if der[0] & 0x80 != 0 {
        der.insert(0, 0);
    }
    der.iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A directory laid out as a cert-manager Secret mounts: `ca.crt`, `tls.crt`, `tls.key`.
#[derive(Debug)]
pub struct SecretDir {
    dir: tempfile::TempDir,
}

impl Default for SecretDir {
    fn default() -> Self {
        Self::new()
    }
}

impl SecretDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Writes the CA bundle (the concatenation of `cas`) and the identity, each file replaced
    /// whole (written aside, then renamed), as a Secret update swaps its files.
    pub fn write(&self, cas: &[&TestCa], identity: &Issued) {
        let bundle: String = cas.iter().map(|ca| ca.cert_pem()).collect();
        write_atomically(&self.ca(), &bundle);
        write_atomically(&self.cert(), &identity.cert_pem);
        write_atomically(&self.key(), &identity.key_pem);
    }
}

/// Writes `contents` to a file beside `path`, then renames it over `path`.
pub fn write_atomically(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).expect("write a test file");
    std::fs::rename(&aside, path).expect("rename a test file");
}
