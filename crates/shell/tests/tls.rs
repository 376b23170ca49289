//! The shell served over TLS and mTLS on port 0: handshakes, refusals, the handshake deadline,
//! the peer's address, and certificates rotated on disk while connections stay open.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use shell::{ServeConfig, ServiceDefinition, TlsServeConfig};
use tls::testing::{SecretDir, TestCa};
use tls::{CertificateSummary, ClientTls};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_prost::ProstCodec;

const SERVICE: &str = "test.v1.PeerService";
const PEER_PATH: &str = "/test.v1.PeerService/Peer";
/// Upper bound for waits that must end; only a hang would reach it.
const PATIENCE: Duration = Duration::from_secs(20);
const RELOAD: Duration = Duration::from_millis(100);

/// Answers every call NOT_FOUND with the peer address the server saw as its message.
#[derive(Clone)]
struct PeerService;

impl NamedService for PeerService {
    const NAME: &'static str = SERVICE;
}

impl tower_service::Service<http::Request<Body>> for PeerService {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
            .map(|address| address.to_string())
            .unwrap_or_default();
        // In the status message: an error status needs no response message.
        Box::pin(async move { Ok(tonic::Status::not_found(peer).into_http()) })
    }
}

fn definition() -> ServiceDefinition {
    ServiceDefinition {
        name: SERVICE,
        routes: Routes::new(PeerService),
        advertised_services: vec![],
        descriptor_sets: vec![],
        readiness: None,
        capacity: None,
    }
}

/// A server with the certificate in `server`; with `client_ca`, clients need a certificate.
async fn spawn(server: &SecretDir, client_ca: bool, handshake_timeout: Duration) -> shell::Spawned {
    let config = ServeConfig {
        drain_delay: Duration::ZERO,
        shutdown_grace: Duration::from_secs(5),
        handshake_timeout,
        key_reload_interval: RELOAD,
        tls: TlsServeConfig {
            tls_cert: Some(server.cert()),
            tls_key: Some(server.key()),
            tls_client_ca: client_ca.then(|| server.ca()),
        },
        ..ServeConfig::default()
    };
    shell::spawn(definition(), config).await.expect("serve")
}

/// A client that trusts the CA bundle in `dir`, presenting `dir`'s certificate if `identity`.
fn client(dir: &SecretDir, identity: bool) -> ClientTls {
    let cert = dir.cert();
    let key = dir.key();
    ClientTls::load(
        &dir.ca(),
        identity.then_some((cert.as_path(), key.as_path())),
    )
    .expect("a client configuration")
}

/// A channel over TLS to `address`, checking the certificate names `localhost`.
async fn connect(address: SocketAddr, client: &ClientTls) -> Result<Channel, String> {
    let connector = tls::Connector::new(client.clone())
        .with_server_name(tls::server_name("localhost").expect("a name"));
    Endpoint::from_shared(format!("https://{address}"))
        .expect("a URI")
        .connect_timeout(PATIENCE)
        .connect_with_connector(connector)
        .await
        .map_err(|error| format!("{error:?}"))
}

/// Health of the server over a new connection. With TLS 1.3 a client's handshake ends before
/// the server has checked the client's certificate: a refusal shows on the first call.
async fn health(address: SocketAddr, client: &ClientTls) -> Result<ServingStatus, String> {
    let channel = connect(address, client).await?;
    check(&channel).await
}

async fn check(channel: &Channel) -> Result<ServingStatus, String> {
    let response = tokio::time::timeout(
        PATIENCE,
        HealthClient::new(channel.clone()).check(HealthCheckRequest::default()),
    )
    .await
    .map_err(|_| "no answer".to_owned())?
    .map_err(|status| format!("{status:?}"))?;
    Ok(response.into_inner().status())
}

/// The serial of the certificate the server presents to a new connection; an error when
/// `client` refuses it.
async fn presented_serial(address: SocketAddr, client: &ClientTls) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let stream = client
        .connector()
        .connect(tls::server_name("localhost").expect("a name"), tcp)
        .await
        .map_err(|error| error.to_string())?;
    let (_, connection) = stream.get_ref();
    let leaf = &connection.peer_certificates().expect("a certificate")[0];
    Ok(CertificateSummary::parse(leaf).expect("parse").serial)
}

/// Waits (a few reload intervals at most) until new connections get the certificate `serial`.
async fn until_presented(address: SocketAddr, client: &ClientTls, serial: &str) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while presented_serial(address, client).await.as_deref() != Ok(serial) {
            tokio::time::sleep(RELOAD / 2).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the new certificate was never served");
}

#[tokio::test]
async fn a_tls_port_serves_calls_with_the_peer_address_and_closes_plaintext_clients() {
    let ca = TestCa::new("test CA");
    let server_dir = SecretDir::new();
    server_dir.write(&[&ca], &ca.issue(&["localhost", "127.0.0.1"], 2031));
    let server = spawn(&server_dir, false, Duration::from_secs(10)).await;
    let trusting = client(&server_dir, false);

    let channel = connect(server.address, &trusting).await.expect("connect");
    assert_eq!(check(&channel).await, Ok(ServingStatus::Serving));
    // The peer's address reaches the service (and so telemetry) through TLS.
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let answer = grpc
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static(PEER_PATH),
            ProstCodec::<(), ()>::default(),
        )
        .await
        .expect_err("the peer service answers NOT_FOUND");
    assert_eq!(answer.code(), tonic::Code::NotFound, "{answer:?}");
    let peer: SocketAddr = answer
        .message()
        .parse()
        .expect("the server saw the peer's address");
    assert_eq!(peer.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_ne!(peer.port(), 0);

    // A client that trusts another CA refuses the server.
    let stranger = TestCa::new("another CA");
    let other_dir = SecretDir::new();
    other_dir.write(&[&stranger], &stranger.issue(&["localhost"], 2031));
    assert!(
        health(server.address, &client(&other_dir, false))
            .await
            .is_err()
    );

    // Plaintext HTTP/2 to a TLS port gets nowhere.
    let plaintext = Channel::from_shared(format!("http://{}", server.address))
        .expect("a URI")
        .connect_timeout(PATIENCE)
        .timeout(PATIENCE)
        .connect_lazy();
    assert!(check(&plaintext).await.is_err());
}

#[tokio::test]
async fn an_mtls_port_refuses_clients_without_a_certificate_or_with_one_of_another_ca() {
    let ca = TestCa::new("test CA");
    let server_dir = SecretDir::new();
    server_dir.write(&[&ca], &ca.issue(&["localhost"], 2031));
    let server = spawn(&server_dir, true, Duration::from_secs(10)).await;

    let client_dir = SecretDir::new();
    client_dir.write(&[&ca], &ca.issue(&["gateway"], 2031));
    assert_eq!(
        health(server.address, &client(&client_dir, true)).await,
        Ok(ServingStatus::Serving)
    );
    assert!(
        health(server.address, &client(&client_dir, false))
            .await
            .is_err(),
        "a client without a certificate was served"
    );
    // Trusts the server's CA, but presents a certificate of its own CA.
    let stranger = TestCa::new("another CA");
    let stranger_dir = SecretDir::new();
    stranger_dir.write(&[&ca], &stranger.issue(&["gateway"], 2031));
    assert!(
        health(server.address, &client(&stranger_dir, true))
            .await
            .is_err(),
        "a client with a certificate of another CA was served"
    );
}

#[tokio::test]
async fn rotated_certificates_serve_new_connections_while_open_ones_carry_on() {
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let server_dir = SecretDir::new();
    let first = old_ca.issue(&["localhost"], 2031);
    server_dir.write(&[&old_ca], &first);
    let server = spawn(&server_dir, true, Duration::from_secs(10)).await;
    let old_client_dir = SecretDir::new();
    old_client_dir.write(&[&old_ca], &old_ca.issue(&["gateway"], 2031));
    let old_client = client(&old_client_dir, true);
    assert_eq!(
        presented_serial(server.address, &old_client).await,
        Ok(first.serial)
    );
    let open = connect(server.address, &old_client).await.expect("connect");
    assert_eq!(check(&open).await, Ok(ServingStatus::Serving));

    // Renewed by the same CA: new connections get it.
    let renewed = old_ca.issue(&["localhost"], 2032);
    server_dir.write(&[&old_ca], &renewed);
    until_presented(server.address, &old_client, &renewed.serial).await;

    // A new CA: the server's certificate and the client CA bundle both move to it. A client
    // of the old CA can no longer connect, a client of the new one can...
    let moved = new_ca.issue(&["localhost"], 2033);
    server_dir.write(&[&new_ca], &moved);
    let new_client_dir = SecretDir::new();
    new_client_dir.write(&[&new_ca], &new_ca.issue(&["gateway"], 2033));
    let new_client = client(&new_client_dir, true);
    until_presented(server.address, &new_client, &moved.serial).await;
    assert_eq!(
        health(server.address, &new_client).await,
        Ok(ServingStatus::Serving)
    );
    assert!(health(server.address, &old_client).await.is_err());
    // ...and the connection opened under the old certificates carries on: it could not have
    // been opened again.
    for _ in 0..10 {
        assert_eq!(check(&open).await, Ok(ServingStatus::Serving));
    }

    // A broken file keeps the certificate in force.
    std::fs::write(server_dir.cert(), "-----BEGIN CERTIFICATE-----\nhalf").expect("write");
    tokio::time::sleep(RELOAD * 3).await;
    assert_eq!(
        presented_serial(server.address, &new_client).await,
        Ok(moved.serial)
    );
    assert_eq!(
        health(server.address, &new_client).await,
        Ok(ServingStatus::Serving)
    );
}

#[tokio::test]
async fn silent_connections_to_a_tls_port_are_closed_and_do_not_hold_up_others() {
    let ca = TestCa::new("test CA");
    let server_dir = SecretDir::new();
    server_dir.write(&[&ca], &ca.issue(&["localhost"], 2031));
    let server = spawn(&server_dir, false, Duration::from_millis(500)).await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(
            tokio::net::TcpStream::connect(server.address)
                .await
                .expect("connect"),
        );
    }
    // A handshake started and left: the start of a ClientHello.
    let mut halfway = tokio::net::TcpStream::connect(server.address)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut halfway, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    silent.push(halfway);
    // Served while they hang.
    assert_eq!(
        health(server.address, &client(&server_dir, false)).await,
        Ok(ServingStatus::Serving)
    );
    for socket in &mut silent {
        use tokio::io::AsyncReadExt as _;
        let mut buffer = [0u8; 64];
        let closed = loop {
            match tokio::time::timeout(PATIENCE, socket.read(&mut buffer)).await {
                Ok(Ok(0) | Err(_)) => break true,
                Ok(Ok(_)) => {}
                Err(_) => break false,
            }
        };
        assert!(
            closed,
            "a silent connection stays open past the handshake timeout"
        );
    }
}
