//! Deadlines: the gateway gives every call one (the client's `grpc-timeout`, or a default)
//! and passes the *remaining* budget to the backends, so that no hop works for a caller who
//! has stopped waiting.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

pub(crate) use shell::GRPC_TIMEOUT;

/// A point in time after which nobody waits for the answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// The client's deadline, or `default` from now when it set none (or a malformed one).
    pub(crate) fn from_headers(headers: &HeaderMap, default: Duration) -> Self {
        Self::from_grpc_timeout(
            headers
                .get(&GRPC_TIMEOUT)
                .and_then(|value| value.to_str().ok()),
            default,
        )
    }

    /// The client's own deadline, if it set a valid one.
    pub(crate) fn from_client(headers: &HeaderMap) -> Option<Self> {
        headers
            .get(&GRPC_TIMEOUT)
            .and_then(|value| value.to_str().ok())
            .and_then(shell::parse_grpc_timeout)
            .map(|timeout| Self(Instant::now() + timeout))
    }

    /// The deadline a `grpc-timeout` value sets, or `default` from now without one.
    pub(crate) fn from_grpc_timeout(grpc_timeout: Option<&str>, default: Duration) -> Self {
        let timeout = grpc_timeout
            .and_then(shell::parse_grpc_timeout)
            .unwrap_or(default);
        Self(Instant::now() + timeout)
    }

    pub(crate) fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    pub(crate) fn instant(self) -> Instant {
        self.0
    }

    /// Writes the remaining budget as this call's `grpc-timeout`. Marked never to be indexed
    /// by HPACK: its value is new on every call, and adding it to the connection's table would
    /// only push out the headers that repeat (which then go out as literals again).
    pub(crate) fn apply_to(self, headers: &mut HeaderMap) {
        if let Ok(mut value) = HeaderValue::from_str(&encode_grpc_timeout(self.remaining())) {
            value.set_sensitive(true);
            headers.insert(GRPC_TIMEOUT.clone(), value);
        }
    }
}

/// The most precise unit whose value fits in 8 digits.
fn encode_grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let micros = timeout.as_micros();
    if micros <= MAX {
        return format!("{micros}u");
    }
    let millis = timeout.as_millis();
    if millis <= MAX {
        return format!("{millis}m");
    }
    format!("{}S", timeout.as_secs().min(MAX as u64))
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_within_precision() {
        for timeout in [
            Duration::from_micros(1500),
            Duration::from_secs(250),
            Duration::from_secs(400_000),
        ] {
            let parsed = shell::parse_grpc_timeout(&encode_grpc_timeout(timeout)).expect("parses");
            assert!(
                parsed <= timeout && timeout - parsed < Duration::from_secs(1),
                "{timeout:?}"
            );
        }
    }
}
