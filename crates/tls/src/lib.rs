//! TLS for notesuite: certificates, keys and CA bundles read from PEM files, and read again
//! while the process runs, so that a rotated certificate (a Kubernetes Secret updated by
//! cert-manager) is used without a restart.
//!
//! - [`ServerTls`]: a server's certificate and key, and optionally a CA bundle whose
//!   certificates clients must present (mTLS). Each handshake takes the configuration in
//!   force when it starts: a reload changes new connections, never an open one.
//! - [`ClientTls`]: the CA bundle a client verifies servers with, and optionally its own
//!   certificate and key (mTLS), for the gateway's backends and the `health`/`check` clients.
//!
//! Files are read again every reload interval. Nothing is swapped unless every file read and
//! parsed and the key matches the certificate: a Secret half-way through an update, or a bad
//! file, keeps the configuration in force and is logged, and serving goes on. Each certificate
//! loaded is logged with its subject, names, serial and expiry; [`Expiry`] holds the expiry for
//! a metric. Both sides speak ALPN `h2` only: gRPC is HTTP/2.

mod files;
mod summary;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

pub use rustls;
pub use rustls::pki_types::ServerName;
pub use summary::CertificateSummary;
pub use tokio_rustls;

use crate::files::{Identity, Snapshot};

/// Why a TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read it: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not PEM this can use: {reason}")]
    Pem { path: String, reason: String },
    #[error("{path}: holds no certificate")]
    NoCertificate { path: String },
    #[error("{path}: not a certificate this can read: {reason}")]
    Certificate { path: String, reason: String },
    #[error("{path}: no CA certificate in it can be used: {reason}")]
    Roots { path: String, reason: String },
    #[error("{cert} and {key}: {source}")]
    KeyPair {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{path}: {reason}")]
    Verifier { path: String, reason: String },
}

/// The crypto of every configuration: ring, with rustls's default suites and key exchanges.
/// rustls 0.23.48 deprecates ring's provider for its lack of a post-quantum key exchange
/// (X25519MLKEM768), which only aws-lc-rs offers; aws-lc-rs needs cmake and minutes of C
/// build. Moving to it is a provider swap here when post-quantum matters more than that.
#[allow(deprecated, reason = "ring on purpose: see above")]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// gRPC is HTTP/2: both sides say so in ALPN (grpc-go, for one, refuses a server that does
/// not).
const ALPN_H2: &[u8] = b"h2";

/// The unix time (seconds) a certificate stops being valid, kept current across reloads: what
/// the expiry metric reports.
#[derive(Debug, Clone)]
pub struct Expiry(Arc<AtomicI64>);

impl Expiry {
    fn new(summary: &CertificateSummary) -> Self {
        Self(Arc::new(AtomicI64::new(summary.not_after_unix)))
    }

    /// notAfter of the certificate in force, in seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, summary: &CertificateSummary) {
        self.0.store(summary.not_after_unix, Ordering::Relaxed);
    }
}

/// What a reloadable configuration is made from, and how.
trait Source: Send + Sync + 'static {
    type Config: Send + Sync + 'static;
    /// What this configuration is, in logs: "server certificate", "backend client".
    fn what(&self) -> &'static str;
    fn read(&self) -> Result<Snapshot, TlsError>;
    fn build(&self, snapshot: &Snapshot) -> Result<Built<Self::Config>, TlsError>;
}

struct Built<C> {
    config: Arc<C>,
    /// The certificate presented, if any (a client without one has none).
    summary: Option<CertificateSummary>,
}

struct State<S: Source> {
    source: S,
    current: RwLock<Current<S::Config>>,
    expiry: Option<Expiry>,
}

struct Current<C> {
    config: Arc<C>,
    /// The files it was built from: a reload that reads the same bytes changes nothing.
    snapshot: Snapshot,
}

impl<S: Source> State<S> {
    fn load(source: S) -> Result<Arc<Self>, TlsError> {
        let snapshot = source.read()?;
        let built = source.build(&snapshot)?;
        if let Some(summary) = &built.summary {
            log_loaded(source.what(), summary);
        }
        let expiry = built.summary.as_ref().map(Expiry::new);
        Ok(Arc::new(Self {
            source,
            current: RwLock::new(Current {
                config: built.config,
                snapshot,
            }),
            expiry,
        }))
    }

    fn config(&self) -> Arc<S::Config> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .config
            .clone()
    }

    fn reload(&self) -> Result<bool, TlsError> {
        let snapshot = self.source.read()?;
        let unchanged = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .snapshot
            == snapshot;
        if unchanged {
            return Ok(false);
        }
        let built = self.source.build(&snapshot)?;
        if let Some(summary) = &built.summary {
            log_loaded(self.source.what(), summary);
            if let Some(expiry) = &self.expiry {
                expiry.set(summary);
            }
        } else {
            tracing::info!(what = self.source.what(), "tls configuration reloaded");
        }
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Current {
            config: built.config,
            snapshot,
        };
        Ok(true)
    }
}

fn log_loaded(what: &'static str, summary: &CertificateSummary) {
    tracing::info!(
        what,
        subject = %summary.subject,
        names = ?summary.names,
        serial = %summary.serial,
        not_after = %summary.not_after,
        "tls certificate loaded"
    );
}

/// Reads the files of `state` every `interval` for as long as something else holds the state:
/// the loop ends with the server or client that used it.
fn reload_every<S: Source>(weak: Weak<State<S>>, interval: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(state) = weak.upgrade() else {
                return;
            };
            if let Err(error) = state.reload() {
                tracing::error!(
                    what = state.source.what(),
                    %error,
                    "tls files not reloaded; the configuration in force stays"
                );
            }
        }
    });
}

/// A server's certificate and key, and the CA bundle its clients' certificates must chain to
/// when client certificates are required. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    state: Arc<State<ServerSource>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.state.source.identity.cert)
            .field("client_ca", &self.state.source.client_ca)
            .finish_non_exhaustive()
    }
}

struct ServerSource {
    identity: files::IdentityPaths,
    client_ca: Option<PathBuf>,
}

impl Source for ServerSource {
    type Config = ServerConfig;

    fn what(&self) -> &'static str {
        "server"
    }

    fn read(&self) -> Result<Snapshot, TlsError> {
        let mut paths = vec![self.identity.cert.as_path(), self.identity.key.as_path()];
        paths.extend(self.client_ca.as_deref());
        Snapshot::read(&paths)
    }

    fn build(&self, snapshot: &Snapshot) -> Result<Built<ServerConfig>, TlsError> {
        let identity = Identity::parse(&self.identity, snapshot.file(0), snapshot.file(1))?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| identity.key_pair_error(source))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = files::roots(path, snapshot.file(2))?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|error| TlsError::Verifier {
                            path: path.display().to_string(),
                            reason: error.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let summary = identity.summary.clone();
        let mut config = builder
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|source| identity.key_pair_error(source))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Built {
            config: Arc::new(config),
            summary: Some(summary),
        })
    }
}

impl ServerTls {
    /// Reads `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 or SEC1); with
    /// `client_ca`, clients must present a certificate one of its CAs signed.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        let state = State::load(ServerSource {
            identity: files::IdentityPaths {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            client_ca: client_ca.map(Path::to_owned),
        })?;
        Ok(Self { state })
    }

    /// The configuration a handshake starting now uses.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.state.config()
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config())
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.state.source.client_ca.is_some()
    }

    /// Reads the files again; whether the configuration changed. On an error the one in force
    /// stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        self.state.reload()
    }

    /// Reloads every `interval` until every clone of this is dropped; must be called within a
    /// Tokio runtime.
    pub fn reload_every(&self, interval: Duration) {
        reload_every(Arc::downgrade(&self.state), interval);
    }

    /// The expiry of the certificate in force.
    pub fn expiry(&self) -> Expiry {
        // A server always has a certificate: `load` fails without one.
        self.state
            .expiry
            .clone()
            .unwrap_or_else(|| Expiry(Arc::new(AtomicI64::new(0))))
    }
}

/// The CA bundle a client verifies servers with, and the certificate it presents when the
/// server asks for one (mTLS). Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    state: Arc<State<ClientSource>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.state.source.ca)
            .field(
                "cert",
                &self.state.source.identity.as_ref().map(|paths| &paths.cert),
            )
            .finish_non_exhaustive()
    }
}

struct ClientSource {
    ca: PathBuf,
    identity: Option<files::IdentityPaths>,
}

impl Source for ClientSource {
    type Config = ClientConfig;

    fn what(&self) -> &'static str {
        "client"
    }

    fn read(&self) -> Result<Snapshot, TlsError> {
        let mut paths = vec![self.ca.as_path()];
        if let Some(identity) = &self.identity {
            paths.push(&identity.cert);
            paths.push(&identity.key);
        }
        Snapshot::read(&paths)
    }

    fn build(&self, snapshot: &Snapshot) -> Result<Built<ClientConfig>, TlsError> {
        let roots = files::roots(&self.ca, snapshot.file(0))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Verifier {
                path: self.ca.display().to_string(),
                reason: source.to_string(),
            })?
            .with_root_certificates(roots);
        let (mut config, summary) = match &self.identity {
            None => (builder.with_no_client_auth(), None),
            Some(paths) => {
                let identity = Identity::parse(paths, snapshot.file(1), snapshot.file(2))?;
                let config = builder
                    .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
                    .map_err(|source| identity.key_pair_error(source))?;
                (config, Some(identity.summary))
            }
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Built {
            config: Arc::new(config),
            summary,
        })
    }
}

impl ClientTls {
    /// Reads `ca` (PEM, one or more CA certificates; servers must chain to one) and, for
    /// mTLS, the client's `identity` (certificate chain and key files).
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let state = State::load(ClientSource {
            ca: ca.to_owned(),
            identity: identity.map(|(cert, key)| files::IdentityPaths {
                cert: cert.to_owned(),
                key: key.to_owned(),
            }),
        })?;
        Ok(Self { state })
    }

    /// The configuration a connection opened now uses.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.state.config()
    }

    /// A connector with the configuration in force now.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config())
    }

    /// Reads the files again; whether the configuration changed. On an error the one in force
    /// stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        self.state.reload()
    }

    /// Reloads every `interval` until every clone of this is dropped; must be called within a
    /// Tokio runtime.
    pub fn reload_every(&self, interval: Duration) {
        reload_every(Arc::downgrade(&self.state), interval);
    }

    /// The expiry of the client certificate in force, if it presents one.
    pub fn expiry(&self) -> Option<Expiry> {
        self.state.expiry.clone()
    }
}

/// The name a server's certificate must carry for a URL's host: a DNS name, or an IP address
/// (matched against the certificate's IP SANs).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|error| format!("{host:?} cannot be checked against a certificate: {error}"))
}

#[cfg(test)]
mod tests;

/// Connects to `https://` URIs for a tonic `Endpoint::connect_with_connector`: TCP, then TLS
/// with the [`ClientTls`] configuration in force, checking the server's certificate against
/// the URI's host, or against the name given with [`Connector::with_server_name`].
#[derive(Debug, Clone)]
pub struct Connector {
    tls: ClientTls,
    server_name: Option<ServerName<'static>>,
}

impl Connector {
    pub fn new(tls: ClientTls) -> Self {
        Self {
            tls,
            server_name: None,
        }
    }

    /// Checks the server's certificate for `name` whatever host the URI names: a probe that
    /// connects to `127.0.0.1` of a pod whose certificate names its Service.
    pub fn with_server_name(mut self, name: ServerName<'static>) -> Self {
        self.server_name = Some(name);
        self
    }
}

type Connecting = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = std::io::Result<
                    hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
                >,
            > + Send,
    >,
>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = self.tls.connector();
        let fixed_name = self.server_name.clone();
        Box::pin(async move {
            let invalid =
                |reason: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, reason);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri}: no host")))?;
            let port = uri.port_u16().unwrap_or(443);
            let server_name = match fixed_name {
                Some(name) => name,
                None => server_name(host).map_err(invalid)?,
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = tokio::net::TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let stream = connector.connect(server_name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}
