//! What the client subcommands (`health`, `check`) share: reading an address the way an
//! operator writes it, connecting under a deadline, and saying why a call failed.

use std::fmt::Write as _;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A service address: `HOST:PORT` or `http://HOST:PORT` (HOST may be a DNS name).
pub(crate) fn endpoint(raw: &str, timeout: Duration) -> Result<Endpoint, String> {
    let url = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|error| format!("{raw:?} is not an address: {error}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority))
            if authority.port().is_some() && !authority.host().is_empty() => {}
        (Some("https"), _) => return Err(format!("{raw:?}: TLS is not supported yet")),
        _ => {
            return Err(format!(
                "{raw:?} must look like HOST:PORT or http://HOST:PORT"
            ));
        }
    }
    Endpoint::from_shared(url)
        .map(|endpoint| endpoint.connect_timeout(timeout).timeout(timeout))
        .map_err(|error| format!("{raw:?} is not an address: {}", chain(&error)))
}

/// Connects to `endpoint`, failing with the reason (refused, unknown host, timed out).
pub(crate) async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Channel, String> {
    let address = endpoint.uri();
    match tokio::time::timeout(timeout, endpoint.connect()).await {
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
            endpoint("127.0.0.1:50051", timeout).expect("valid").uri(),
            "http://127.0.0.1:50051/"
        );
        assert_eq!(
            endpoint("http://users.ns.svc:50051", timeout)
                .expect("valid")
                .uri(),
            "http://users.ns.svc:50051/"
        );
        for bad in ["users", "https://users:50051", "http://:50051", "a b:1"] {
            assert!(endpoint(bad, timeout).is_err(), "{bad} was accepted");
        }
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
