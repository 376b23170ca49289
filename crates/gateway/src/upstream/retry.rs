//! When and how a call is sent again: a bounded number of attempts, backing off with jitter,
//! drawing on a per-backend budget so that retries cannot multiply an outage.

use std::time::Duration;

use tower::retry::budget::TpsBudget;

/// Attempts of one call at most: the first and two retries.
pub(crate) const MAX_ATTEMPTS: u32 = 3;
/// The first retry's backoff ceiling; each later one doubles it (full jitter below it).
const FIRST_BACKOFF: Duration = Duration::from_millis(10);

/// Retries may add at most 20% to the calls sent (plus a trickle of 10 a second), over the
/// last 10 seconds: when a backend is down for everyone, retrying every call would only
/// double the load on whatever is left.
pub(super) fn budget() -> TpsBudget {
    TpsBudget::new(Duration::from_secs(10), 10, 0.2)
}

/// Full jitter below an exponentially growing ceiling.
pub(crate) fn backoff(attempts: u32) -> Duration {
    let ceiling = FIRST_BACKOFF * 2u32.saturating_pow(attempts.saturating_sub(1));
    ceiling.mul_f64(fastrand::f64())
}

/// A trailers-only answer of UNAVAILABLE: the backend did not act on the call.
pub(crate) fn is_unavailable<B>(response: &http::Response<B>) -> bool {
    response
        .headers()
        .get(tonic::Status::GRPC_STATUS)
        .is_some_and(|status| status.as_bytes() == b"14")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_doubling_ceiling() {
        for attempts in 1..=3 {
            let ceiling = FIRST_BACKOFF * 2u32.pow(attempts - 1);
            for _ in 0..100 {
                assert!(backoff(attempts) <= ceiling);
            }
        }
    }
}
