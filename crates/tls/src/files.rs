//! Reading the PEM files: all of a configuration's files at once (a snapshot, compared with
//! the last one to see whether anything changed), then parsing them.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;
use crate::summary::CertificateSummary;

/// A certificate file and its key file.
#[derive(Debug, Clone)]
pub(crate) struct IdentityPaths {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// The bytes of every file of a configuration, read one after the other. Paths are followed
/// through symbolic links each time: a Kubernetes Secret volume swaps its `..data` link on an
/// update, so the files read are always one version's.
#[derive(PartialEq, Eq)]
pub(crate) struct Snapshot {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Snapshot {
    pub(crate) fn read(paths: &[&Path]) -> Result<Self, TlsError> {
        let files = paths
            .iter()
            .map(|path| {
                std::fs::read(path)
                    .map(|bytes| (path.to_path_buf(), bytes))
                    .map_err(|source| TlsError::Read {
                        path: path.display().to_string(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { files })
    }

    /// The `index`th file's bytes (an index past the end reads as empty, which fails to parse).
    pub(crate) fn file(&self, index: usize) -> &[u8] {
        self.files
            .get(index)
            .map_or(&[][..], |(_, bytes)| bytes.as_slice())
    }
}

/// A certificate chain and its private key, parsed.
pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    pub(crate) summary: CertificateSummary,
    paths: IdentityPaths,
}

impl Identity {
    pub(crate) fn parse(paths: &IdentityPaths, cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let chain = certificates(&paths.cert, cert)?;
        let summary =
            CertificateSummary::parse(&chain[0]).map_err(|reason| TlsError::Certificate {
                path: paths.cert.display().to_string(),
                reason,
            })?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|error| TlsError::Pem {
            path: paths.key.display().to_string(),
            reason: error.to_string(),
        })?;
        Ok(Self {
            chain,
            key,
            summary,
            paths: paths.clone(),
        })
    }

    /// A key that rustls refused, or that is not the certificate's (a certificate renewed
    /// with a new key, copied over before its key).
    pub(crate) fn key_pair_error(&self, source: rustls::Error) -> TlsError {
        TlsError::KeyPair {
            cert: self.paths.cert.display().to_string(),
            key: self.paths.key.display().to_string(),
            source,
        }
    }
}

/// Every certificate in a PEM file, in order; at least one.
fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(chain)
}

/// A CA bundle: every certificate in it is trusted. During a CA rotation the bundle holds the
/// old and the new CA, so that certificates of either are accepted.
pub(crate) fn roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path, pem)? {
        roots.add(certificate).map_err(|error| TlsError::Roots {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
    }
    Ok(roots)
}
