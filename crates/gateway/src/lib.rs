//! The gateway: the suite's only public entry point. It signs tokens (SignUp, Login),
//! verifies them on every call, serves the GetProfile fan-out, and forwards the public
//! methods of users and notes under their own service names.

mod api;
pub mod config;
mod deadline;
mod deletions;
pub mod error;
mod forward;
mod limits;
mod policy;
mod relay;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use proto::gateway::gateway_service_server::GatewayServiceServer;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::users::users_service_client::UsersServiceClient;
use shell::ServiceDefinition;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tower::Layer as _;

pub use config::GatewayConfig;
pub use error::Error;
pub use limits::RateLimitConfig;

use crate::api::GatewayApi;
use crate::forward::{Forward, ForwardSettings, NotesRoute, UsersRoute};
use crate::upstream::{Upstream, UpstreamConfig};

/// Full name of the gateway's own service: its health name.
pub const SERVICE_NAME: &str = "notesuite.gateway.v1.GatewayService";

/// A backend's replicas, for the gateway's own calls: every call on it is traced and measured.
pub(crate) type Backend = telemetry::ClientTelemetry<Upstream>;

/// How long connecting to a replica (TCP, HTTP/2 and a health check) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Assembles the gateway, ready for [`shell::serve`]; must be called within a Tokio runtime.
/// Backends are found and connected in the background, so the gateway starts (and reports
/// ready) while they come up; calls meanwhile wait for a replica, then get UNAVAILABLE.
pub fn build(
    config: &GatewayConfig,
    signing_key: &token::SigningKey,
) -> Result<ServiceDefinition, Error> {
    build_with_keys(
        config,
        signing_key.into(),
        (&signing_key.verifying_key()).into(),
    )
}

/// The TLS client for `https://` backends (`--backend-ca`, `--backend-cert`), reloaded from
/// disk for as long as the gateway runs, its certificate's expiry a metric.
fn backend_tls(config: &GatewayConfig) -> Result<Option<tls::ClientTls>, Error> {
    let Some(client) = config.backends.load_tls()? else {
        return Ok(None);
    };
    client.reload_every(config.serve.key_reload_interval);
    if let Some(expiry) = client.expiry() {
        telemetry::observe_certificate_expiry("client", move || expiry.unix_seconds());
    }
    Ok(Some(client))
}

/// [`build`] with keys read from files (and reloaded): it signs with `signing`'s newest key
/// and accepts tokens of every key in `verifying`.
pub fn build_with_keys(
    config: &GatewayConfig,
    signing: token::SigningKeys,
    verifying: token::VerifyingKeys,
) -> Result<ServiceDefinition, Error> {
    let methods = telemetry::MethodTable::from_descriptor_sets(&[proto::FILE_DESCRIPTOR_SET])
        .map_err(|error| Error::Descriptor(error.to_string()))?;
    let client_telemetry = telemetry::ClientLayer::new(&methods);
    let backend_tls = backend_tls(config)?;
    let upstream = |service: &'static str, url: &str, flag: &'static str| {
        let targets = upstream::Target::parse_list(url).map_err(|_| Error::BackendUrl {
            flag,
            url: url.to_owned(),
        })?;
        if backend_tls.is_none() && targets.iter().any(upstream::Target::is_tls) {
            return Err(Error::BackendCaMissing {
                flag,
                url: url.to_owned(),
            });
        }
        let options = &config.backends;
        // Client telemetry names the first target as the server: the replica differs per call.
        let telemetry = client_telemetry.for_server(&targets[0].to_string());
        let upstream = Upstream::new(UpstreamConfig {
            service,
            targets,
            connect_timeout: CONNECT_TIMEOUT,
            resolve_interval: options.resolve_interval,
            keepalive: options.backend_keepalive,
            dns_server: options.dns_server,
            tls: backend_tls.clone(),
        });
        Ok::<_, Error>((upstream, telemetry))
    };
    let (users, users_telemetry) =
        upstream(forward::USERS_SERVICE, &config.users_url, "--users-url")?;
    let (notes, notes_telemetry) =
        upstream(forward::NOTES_SERVICE, &config.notes_url, "--notes-url")?;
    // Deleted accounts' tokens are refused here too (see `deletions`).
    let revocations = token::Revocations::new();
    let verifier = Arc::new(token::Verifier::new(verifying).with_revocations(revocations.clone()));
    let limits = limits::RateLimits::start(&config.rate_limits);
    let users_client = UsersServiceClient::new(users_telemetry.layer(users.clone()));
    let notes_client = NotesServiceClient::new(notes_telemetry.layer(notes.clone()));
    let issuer = token::Issuer::new(signing, config.access_token_ttl);
    let account_deletions = deletions::AccountDeletions::start(deletions::Purger {
        users: users_client.clone(),
        notes: notes_client.clone(),
        issuer: issuer.clone(),
        revocations,
    });
    let api = GatewayApi {
        limits: limits.clone(),
        users: users_client,
        notes: notes_client,
        issuer,
        default_deadline: config.default_deadline,
    };
    let gateway = GatewayServiceServer::new(api)
        .max_decoding_message_size(policy::max_gateway_request_bytes())
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate);
    // Built once per gateway: the authentication layer keeps it for the process's life.
    let anonymous: &'static [&'static str] = policy::anonymous_gateway_methods().leak();
    let forward = Arc::new(ForwardSettings::new(
        verifier.clone(),
        config.default_deadline,
        config.stream_stall_timeout,
        limits,
        Some(account_deletions),
    ));
    let routes = Routes::new(token::authenticated(gateway, verifier, anonymous))
        .add_service(Forward::<UsersRoute>::new(
            users,
            users_telemetry,
            forward.clone(),
        ))
        .add_service(Forward::<NotesRoute>::new(notes, notes_telemetry, forward));
    Ok(ServiceDefinition {
        name: SERVICE_NAME,
        routes,
        advertised_services: vec![SERVICE_NAME, forward::USERS_SERVICE, forward::NOTES_SERVICE],
        descriptor_sets: vec![proto::FILE_DESCRIPTOR_SET],
        // The gateway has no database: it is ready unless draining. Backend outages show up
        // as UNAVAILABLE answers, not as the gateway leaving the load balancer.
        readiness: None,
        capacity: None,
    })
}
