//! What the client subcommands (`health`, `check`) share: reading an address the way an
//! operator writes it, connecting under a deadline, and saying why a call failed.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A service to call: its address, and the TLS it is reached with, if any.
#[derive(Debug, Clone)]
pub(crate) struct Dial {
    endpoint: Endpoint,
    tls: Option<tls::Connector>,
}

#[cfg(test)]
impl Dial {
    pub(crate) fn uri(&self) -> &http::Uri {
        self.endpoint.uri()
    }
}

/// A service address: `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT` (HOST may be a
/// DNS name). With `tls` the connection is TLS (`HOST:PORT` reads as `https://`); an
/// `https://` address needs it, for the CA bundle to check the server with.
pub(crate) fn endpoint(
    raw: &str,
    timeout: Duration,
    tls: Option<&tls::Connector>,
) -> Result<Dial, String> {
    let url = match (raw.contains("://"), tls.is_some()) {
        (true, _) => raw.to_owned(),
        (false, false) => format!("http://{raw}"),
        (false, true) => format!("https://{raw}"),
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|error| format!("{raw:?} is not an address: {error}"))?;
    match (uri.scheme_str(), uri.authority(), tls) {
        (Some(_), Some(authority), _)
            if authority.port().is_none() || authority.host().is_empty() =>
        {
            return Err(format!(
                "{raw:?} must look like HOST:PORT, http://HOST:PORT or https://HOST:PORT"
            ));
        }
        (Some("http"), Some(_), None) | (Some("https"), Some(_), Some(_)) => {}
        (Some("https"), Some(_), None) => {
            return Err(format!(
                "{raw:?}: https needs a CA bundle to check the server with (--tls-ca)"
            ));
        }
        (Some("http"), Some(_), Some(_)) => {
            return Err(format!(
                "{raw:?}: TLS settings were given for a plaintext http:// address"
            ));
        }
        _ => {
            return Err(format!(
                "{raw:?} must look like HOST:PORT, http://HOST:PORT or https://HOST:PORT"
            ));
        }
    }
    Endpoint::from_shared(url)
        .map(|endpoint| Dial {
            endpoint: endpoint.connect_timeout(timeout).timeout(timeout),
            tls: tls.cloned(),
        })
        .map_err(|error| format!("{raw:?} is not an address: {}", chain(&error)))
}

/// How a client subcommand speaks TLS: the CA bundle to trust and, for a port that requires
/// client certificates (mTLS), the certificate to present.
pub(crate) fn tls_connector(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    server_name: Option<&str>,
) -> anyhow::Result<Option<tls::Connector>> {
    let Some(ca) = ca else {
        return Ok(None);
    };
    let client = tls::ClientTls::load(ca, identity)?;
    let mut connector = tls::Connector::new(client);
    if let Some(name) = server_name {
        connector = connector.with_server_name(tls::server_name(name).map_err(anyhow::Error::msg)?);
    }
    Ok(Some(connector))
}

/// Connects to `dial`, failing with the reason (refused, unknown host, timed out, a
/// certificate refused).
pub(crate) async fn connect(dial: &Dial, timeout: Duration) -> Result<Channel, String> {
    let address = dial.endpoint.uri();
    let connecting = async {
        match &dial.tls {
            None => dial.endpoint.connect().await,
            Some(connector) => {
                dial.endpoint
                    .connect_with_connector(connector.clone())
                    .await
            }
        }
    };
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(error)) => Err(format!("cannot connect to {address}: {}", chain(&error))),
        Err(_) => Err(format!(
            "cannot connect to {address}: no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Asks `channel` for the health of `service`; Ok only for SERVING.
pub(crate) async fn check_health(channel: Channel, service: &str) -> Result<(), String> {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(response) => match response.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            status => Err(status.as_str_name().to_owned()),
        },
        Err(status) if status.code() == tonic::Code::NotFound => {
            Err(format!("NOT_FOUND: it serves no health name {service:?}"))
        }
        Err(status) => Err(describe_status(&status)),
    }
}

/// `CODE: message`, as grpcurl prints a failed call.
pub(crate) fn describe_status(status: &tonic::Status) -> String {
    let code = format!("{:?}", status.code());
    let mut text = screaming_snake_case(&code);
    if !status.message().is_empty() {
        let _ = write!(text, ": {}", status.message());
    }
    text
}

/// An error and its causes, `outer: inner: innermost`: a transport error's own text is only
/// "transport error", the reason is in its sources.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn screaming_snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (index, character) in camel.chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(character.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_with_or_without_a_scheme() {
        let timeout = Duration::from_secs(1);
        assert_eq!(
            endpoint("127.0.0.1:50051", timeout, None)
                .expect("valid")
                .uri(),
            "http://127.0.0.1:50051/"
        );
        assert_eq!(
            endpoint("http://users.ns.svc:50051", timeout, None)
                .expect("valid")
                .uri(),
            "http://users.ns.svc:50051/"
        );
        for bad in ["users", "https://users:50051", "http://:50051", "a b:1"] {
            assert!(endpoint(bad, timeout, None).is_err(), "{bad} was accepted");
        }
        let ca = tls::testing::TestCa::new("test CA");
        let dir = tls::testing::SecretDir::new();
        dir.write(&[&ca], &ca.issue(&["users"], 2031));
        let connector = tls_connector(Some(&dir.ca()), None, None)
            .expect("a connector")
            .expect("TLS");
        for (raw, uri) in [
            ("users.ns.svc:50051", "https://users.ns.svc:50051/"),
            ("https://users.ns.svc:50051", "https://users.ns.svc:50051/"),
        ] {
            let dial = endpoint(raw, timeout, Some(&connector)).expect("valid");
            assert_eq!(dial.uri(), uri);
        }
        assert!(endpoint("http://users:1", timeout, Some(&connector)).is_err());
        assert!(endpoint("https://:1", timeout, Some(&connector)).is_err());
    }

    #[test]
    fn status_codes_read_as_grpc_names() {
        let status = tonic::Status::unavailable("draining");
        assert_eq!(describe_status(&status), "UNAVAILABLE: draining");
        let status = tonic::Status::deadline_exceeded("");
        assert_eq!(describe_status(&status), "DEADLINE_EXCEEDED");
        let status = tonic::Status::new(tonic::Code::Ok, "");
        assert_eq!(describe_status(&status), "OK");
    }
}
