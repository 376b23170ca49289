//! The gateway: the suite's only public entry point. It signs tokens (SignUp, Login),
//! verifies them on every call, serves the GetProfile fan-out, and forwards the public
//! methods of users and notes under their own service names.

mod api;
pub mod config;
mod deadline;
pub mod error;
mod forward;
mod policy;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use proto::gateway::gateway_service_server::GatewayServiceServer;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::users::users_service_client::UsersServiceClient;
use shell::ServiceDefinition;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};
use tower::Layer as _;

pub use config::GatewayConfig;
pub use error::Error;

use crate::api::GatewayApi;
use crate::forward::{Forward, ForwardSettings, NotesRoute, StreamPool, UsersRoute};

/// Full name of the gateway's own service: its health name.
pub const SERVICE_NAME: &str = "notesuite.gateway.v1.GatewayService";

/// A channel to a backend: every call on it is traced and measured.
pub(crate) type Backend = telemetry::ClientTelemetry<Channel>;

/// Flow-control window of each forwarded call on a backend connection: what the backend may
/// send that the gateway's client has not read yet.
const BACKEND_STREAM_WINDOW: u32 = 64 * 1024;

/// Calls one backend connection carries at once: the backends' `--max-concurrent-streams`
/// default, which they announce in their HTTP/2 settings.
const BACKEND_STREAMS: u32 = 1024;

/// Connections to notes for relayed streams, apart from the one unary calls share.
const STREAM_CONNECTIONS: usize = 4;

/// Streams relayed on one of those at once: below the backend's limit, so that a stream is
/// never queued by HTTP/2 waiting for a slot (a watch would wait for hours); past it, a new
/// stream is refused at once with RESOURCE_EXHAUSTED.
const STREAMS_PER_CONNECTION: usize = 1000;

/// Assembles the gateway, ready for [`shell::serve`]. Backends are connected lazily, so the
/// gateway starts (and reports ready) while they come up; calls meanwhile get UNAVAILABLE.
pub fn build(
    config: &GatewayConfig,
    signing_key: &token::SigningKey,
) -> Result<ServiceDefinition, Error> {
    let methods = telemetry::MethodTable::from_descriptor_sets(&[proto::FILE_DESCRIPTOR_SET])
        .map_err(|error| Error::Descriptor(error.to_string()))?;
    let client_telemetry = telemetry::ClientLayer::new(&methods);
    let users_channel = client_telemetry
        .for_server(&config.users_url)
        .layer(backend(&config.users_url, "--users-url")?);
    let notes_channel = client_telemetry
        .for_server(&config.notes_url)
        .layer(backend(&config.notes_url, "--notes-url")?);
    // Streams (watches, imports) get connections of their own: open for hours, they would
    // otherwise take the stream slots unary calls need on the shared connection.
    let notes_streams = (0..STREAM_CONNECTIONS)
        .map(|_| {
            backend(&config.notes_url, "--notes-url").map(|channel| {
                client_telemetry
                    .for_server(&config.notes_url)
                    .layer(channel)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let verifier = Arc::new(token::Verifier::new(&signing_key.verifying_key()));
    let api = GatewayApi {
        users: UsersServiceClient::new(users_channel.clone()),
        notes: NotesServiceClient::new(notes_channel.clone()),
        issuer: token::Issuer::new(signing_key, config.access_token_ttl),
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
    ));
    let routes = Routes::new(token::authenticated(gateway, verifier, anonymous))
        .add_service(Forward::<UsersRoute>::new(users_channel, forward.clone()))
        .add_service(
            Forward::<NotesRoute>::new(notes_channel, forward)
                .with_streams(StreamPool::new(notes_streams, STREAMS_PER_CONNECTION)),
        );
    Ok(ServiceDefinition {
        name: SERVICE_NAME,
        routes,
        advertised_services: vec![SERVICE_NAME, forward::USERS_SERVICE, forward::NOTES_SERVICE],
        descriptor_sets: vec![proto::FILE_DESCRIPTOR_SET],
        // The gateway has no database: it is ready unless draining. Backend outages show up
        // as UNAVAILABLE answers, not as the gateway leaving the load balancer.
        readiness: None,
    })
}

fn backend(url: &str, flag: &'static str) -> Result<Channel, Error> {
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|_| Error::BackendUrl {
        flag,
        url: url.to_owned(),
    })?;
    Ok(endpoint
        .connect_timeout(Duration::from_secs(2))
        // Every forwarded call shares this connection, and unread bytes hold its window: with
        // room for every stream's full window, clients that stop reading can never use up the
        // window the others need (6 stalled ~1 MiB ListNotes used to freeze every user). The
        // window is a bound, not an allocation: bytes are held only while a client stalls.
        .initial_stream_window_size(BACKEND_STREAM_WINDOW)
        .initial_connection_window_size(BACKEND_STREAM_WINDOW * BACKEND_STREAMS)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}
