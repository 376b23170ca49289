//! Rate limits at the gateway, by the policy table's class of each method.
//!
//! - **Read, Write, Stream** (every call acting for a user): per user, so that one user's
//!   flood leaves everyone else's calls alone. Not per address: the gateway's clients are
//!   services calling for many users from one address.
//! - **Credentials** (Login, SignUp: each one costs the users service a password hash): per
//!   client address, and Login also per account (email), across addresses. An account's
//!   budget is larger than one address's, so a single attacker cannot spend it and lock the
//!   owner out; a botnet brute-forcing one account gets the account's budget, shared by all.
//!
//! A call over its limit is answered RESOURCE_EXHAUSTED, reason `RATE_LIMITED`, with a
//! `RetryInfo` giving the real wait until one more call is allowed. GCRA via `governor`.
//!
//! Memory is bounded whatever the number of distinct keys: keys are hashed (with a per-process
//! random seed) into a fixed number of buckets, each limiter holding at most [`BUCKETS`] small
//! states (about 24 bytes each), behind one lock; keys sharing a bucket share its budget, which only makes a limit
//! stricter, never looser. Idle buckets are dropped every minute.

use std::hash::{BuildHasher, Hash, RandomState};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use tonic::{Code, Status};

use crate::policy::RateClass;

/// Buckets per limiter: the most keys one limiter tracks.
const BUCKETS: u64 = 16_384;
const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);

/// Settings of the limits, each as `N/s`, `N/m` or `N/h` (N calls per period, and a burst of
/// N), or `off`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RateLimitConfig {
    /// Reads per user (GetNote, ListNotes, GetUser, GetProfile).
    #[arg(long, env = "NOTESUITE_RATE_LIMIT_READ", default_value = "200/s", value_parser = parse_rate)]
    pub rate_limit_read: Rate,

    /// Writes per user (CreateNote, UpdateNote, DeleteNote, UpdateUser, DeleteUser).
    #[arg(long, env = "NOTESUITE_RATE_LIMIT_WRITE", default_value = "50/s", value_parser = parse_rate)]
    pub rate_limit_write: Rate,

    /// Streams opened per user (WatchNotes, ImportNotes).
    #[arg(long, env = "NOTESUITE_RATE_LIMIT_STREAM", default_value = "5/s", value_parser = parse_rate)]
    pub rate_limit_stream: Rate,

    /// Logins per client address.
    #[arg(long, env = "NOTESUITE_RATE_LIMIT_LOGIN_ADDRESS", default_value = "10/m", value_parser = parse_rate)]
    pub rate_limit_login_address: Rate,

    /// Logins per account (email), from all addresses together: keep it above the per-address
    /// limit, so that one address cannot use it up.
    #[arg(long, env = "NOTESUITE_RATE_LIMIT_LOGIN_ACCOUNT", default_value = "30/m", value_parser = parse_rate)]
    pub rate_limit_login_account: Rate,

    /// Sign-ups per client address.
    #[arg(long, env = "NOTESUITE_RATE_LIMIT_SIGN_UP_ADDRESS", default_value = "5/m", value_parser = parse_rate)]
    pub rate_limit_sign_up_address: Rate,

    /// Unary calls one user may have in flight through the gateway at once (a number, or
    /// `off`): the bound on the memory one user's calls hold here (each buffers its request,
    /// up to 320 KiB, for retries).
    #[arg(long, env = "NOTESUITE_RATE_LIMIT_CALLS_IN_FLIGHT", default_value = "32", value_parser = parse_count)]
    pub rate_limit_calls_in_flight: Count,

    /// Streams (watches, imports) one user may have open through the gateway at once (a
    /// number, or `off`).
    #[arg(long, env = "NOTESUITE_RATE_LIMIT_STREAMS_OPEN", default_value = "32", value_parser = parse_count)]
    pub rate_limit_streams_open: Count,
}

/// A most-at-once; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(Option<u32>);

fn parse_count(raw: &str) -> Result<Count, String> {
    if raw == "off" {
        return Ok(Count(None));
    }
    match raw.trim().parse::<u32>() {
        Ok(count) if count > 0 => Ok(Count(Some(count))),
        _ => Err("must be a number from 1, or off".into()),
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let rate = |raw| parse_rate(raw).unwrap_or(Rate(None));
        Self {
            rate_limit_read: rate("200/s"),
            rate_limit_write: rate("50/s"),
            rate_limit_stream: rate("5/s"),
            rate_limit_login_address: rate("10/m"),
            rate_limit_login_account: rate("30/m"),
            rate_limit_sign_up_address: rate("5/m"),
            rate_limit_calls_in_flight: Count(Some(32)),
            rate_limit_streams_open: Count(Some(32)),
        }
    }
}

impl RateLimitConfig {
    /// No limit at all: for test harnesses that sign many accounts up from one address.
    pub fn off() -> Self {
        let off = Rate(None);
        Self {
            rate_limit_read: off,
            rate_limit_write: off,
            rate_limit_stream: off,
            rate_limit_login_address: off,
            rate_limit_login_account: off,
            rate_limit_sign_up_address: off,
            rate_limit_calls_in_flight: Count(None),
            rate_limit_streams_open: Count(None),
        }
    }
}

/// A limit: calls per period, with a burst of as many; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(Option<Quota>);

fn parse_rate(raw: &str) -> Result<Rate, String> {
    if raw == "off" {
        return Ok(Rate(None));
    }
    let usage = "must be N/s, N/m, N/h (N from 1) or off";
    let (count, period) = raw.split_once('/').ok_or(usage)?;
    let count: NonZeroU32 = count.trim().parse().map_err(|_| usage)?;
    let period = match period.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(usage.into()),
    };
    let quota = Quota::with_period(period / count.get())
        .ok_or(usage)?
        .allow_burst(count);
    Ok(Rate(Some(quota)))
}

/// governor's clock on Tokio's time, so that tests can pause and advance it.
#[derive(Debug, Clone, Copy, Default)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

type Buckets =
    RateLimiter<u64, HashMapStateStore<u64>, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// One limit over hashed keys.
#[derive(Debug)]
struct Limiter(Option<Buckets>);

impl Limiter {
    fn new(rate: Rate) -> Self {
        Self(
            rate.0
                .map(|quota| RateLimiter::hashmap_with_clock(quota, TokioClock)),
        )
    }

    /// The wait until a call is allowed, or `None` if it is allowed now (and counted).
    fn check(&self, seed: &RandomState, key: impl Hash) -> Option<Duration> {
        let limiter = self.0.as_ref()?;
        let bucket = seed.hash_one(key) % BUCKETS;
        limiter
            .check_key(&bucket)
            .err()
            .map(|not_until| not_until.wait_time_from(TokioClock.now()))
    }

    fn forget_idle(&self) {
        if let Some(limiter) = &self.0 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Every limit of the gateway.
#[derive(Debug)]
pub(crate) struct RateLimits {
    seed: RandomState,
    read: Limiter,
    write: Limiter,
    stream: Limiter,
    login_address: Limiter,
    login_account: Limiter,
    sign_up_address: Limiter,
    calls_in_flight: InFlight,
    streams_open: InFlight,
}

impl RateLimits {
    /// The limits, and a task that forgets idle keys; must be called within a Tokio runtime.
    pub(crate) fn start(config: &RateLimitConfig) -> Arc<Self> {
        let limits = Arc::new(Self {
            seed: RandomState::new(),
            read: Limiter::new(config.rate_limit_read),
            write: Limiter::new(config.rate_limit_write),
            stream: Limiter::new(config.rate_limit_stream),
            login_address: Limiter::new(config.rate_limit_login_address),
            login_account: Limiter::new(config.rate_limit_login_account),
            sign_up_address: Limiter::new(config.rate_limit_sign_up_address),
            calls_in_flight: InFlight::new(config.rate_limit_calls_in_flight),
            streams_open: InFlight::new(config.rate_limit_streams_open),
        });
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(CLEANUP_INTERVAL);
            loop {
                interval.tick().await;
                let Some(limits) = weak.upgrade() else { return };
                for limiter in limits.all() {
                    limiter.forget_idle();
                }
            }
        });
        limits
    }

    fn all(&self) -> [&Limiter; 6] {
        [
            &self.read,
            &self.write,
            &self.stream,
            &self.login_address,
            &self.login_account,
            &self.sign_up_address,
        ]
    }

    /// Counts a call of class `class` made for `user_id`.
    pub(crate) fn check_user(&self, class: RateClass, user_id: &str) -> Result<(), Status> {
        let limiter = match class {
            RateClass::Read => &self.read,
            RateClass::Write => &self.write,
            RateClass::Stream => &self.stream,
            // Password checks come anonymous, and are counted by `check_login`/`check_sign_up`.
            RateClass::Credentials => return Ok(()),
        };
        limited(limiter.check(&self.seed, user_id), "calls for this user")
    }

    /// Counts a call of `user_id` in flight (a stream while it is open) until the permit is
    /// dropped; RESOURCE_EXHAUSTED `TOO_MANY_CALLS` when the user already has the most.
    pub(crate) fn enter(
        self: &Arc<Self>,
        stream: bool,
        user_id: &str,
    ) -> Result<Option<InFlightPermit>, Status> {
        let counter = if stream {
            &self.streams_open
        } else {
            &self.calls_in_flight
        };
        let Some(max) = counter.max else {
            return Ok(None);
        };
        let key = self.seed.hash_one(("in-flight", user_id));
        {
            let mut counts = counter.counts();
            let count = counts.entry(key).or_insert(0);
            if *count < max {
                *count += 1;
            } else {
                drop(counts);
                let mut details = tonic_types::ErrorDetails::with_retry_info(Some(IN_FLIGHT_RETRY));
                details.set_error_info("TOO_MANY_CALLS", shell::ERROR_DOMAIN, []);
                let what = if stream {
                    "streams open"
                } else {
                    "calls in flight"
                };
                return Err(<Status as tonic_types::StatusExt>::with_error_details(
                    Code::ResourceExhausted,
                    format!(
                        "this user already has {max} {what} at the gateway, the most allowed; retry when one ends"
                    ),
                    details,
                ));
            }
        }
        Ok(Some(InFlightPermit {
            limits: self.clone(),
            stream,
            key,
        }))
    }

    /// Counts a Login for `email` from `address`: the address's budget first, so that calls
    /// refused for it do not spend the account's.
    pub(crate) fn check_login(
        &self,
        address: Option<std::net::IpAddr>,
        email: &str,
    ) -> Result<(), Status> {
        limited(
            self.login_address.check(&self.seed, ("login", address)),
            "logins from this address",
        )?;
        let account = email.trim().to_lowercase();
        limited(
            self.login_account.check(&self.seed, ("login", account)),
            "logins to this account",
        )
    }

    /// Counts a SignUp from `address`.
    pub(crate) fn check_sign_up(&self, address: Option<std::net::IpAddr>) -> Result<(), Status> {
        limited(
            self.sign_up_address.check(&self.seed, ("sign-up", address)),
            "sign-ups from this address",
        )
    }
}

/// The retry delay suggested to a user with too many calls in flight.
const IN_FLIGHT_RETRY: Duration = Duration::from_millis(100);

/// Calls in flight per user, by a 64-bit seeded hash of the user id (distinct users do not
/// share a count). An entry lives while its user has a call in flight, so the map holds at
/// most as many entries as the process admits calls (`--max-concurrent-calls` plus
/// `--max-open-streams`), whatever the number of users.
#[derive(Debug)]
struct InFlight {
    max: Option<u32>,
    counts: std::sync::Mutex<std::collections::HashMap<u64, u32>>,
}

impl InFlight {
    fn new(max: Count) -> Self {
        Self {
            max: max.0,
            counts: std::sync::Mutex::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, u32>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One call (or open stream) of a user, counted until dropped.
#[derive(Debug)]
pub(crate) struct InFlightPermit {
    limits: Arc<RateLimits>,
    stream: bool,
    key: u64,
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        let counter = if self.stream {
            &self.limits.streams_open
        } else {
            &self.limits.calls_in_flight
        };
        let mut counts = counter.counts();
        if let std::collections::hash_map::Entry::Occupied(mut entry) = counts.entry(self.key) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

fn limited(wait: Option<Duration>, what: &str) -> Result<(), Status> {
    let Some(wait) = wait else { return Ok(()) };
    // Whole milliseconds, rounded up: a client retrying after the delay given is allowed.
    let wait = Duration::from_millis(
        u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX),
    );
    let mut details = tonic_types::ErrorDetails::with_retry_info(Some(wait));
    details.set_error_info("RATE_LIMITED", shell::ERROR_DOMAIN, []);
    Err(<Status as tonic_types::StatusExt>::with_error_details(
        Code::ResourceExhausted,
        format!("too many {what}: retry after {} ms", wait.as_millis()),
        details,
    ))
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt as _;

    use super::*;

    fn limits(config: RateLimitConfig) -> Arc<RateLimits> {
        RateLimits::start(&config)
    }

    fn rate(raw: &str) -> Rate {
        parse_rate(raw).expect("valid rate")
    }

    fn retry_after(result: Result<(), Status>) -> Duration {
        let status = result.expect_err("limited");
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().map(|info| info.reason.as_str()),
            Some("RATE_LIMITED")
        );
        details
            .retry_info()
            .and_then(|info| info.retry_delay)
            .expect("a retry delay")
    }

    #[test]
    fn rates_read_as_calls_per_period() {
        assert_eq!(rate("off"), Rate(None));
        assert!(rate("10/s").0.is_some());
        for bad in ["", "10", "0/s", "-1/s", "10/d", "x/s", "10/"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_users_calls_in_flight_are_bounded_and_freed_when_they_end() {
        let limits = limits(RateLimitConfig {
            rate_limit_calls_in_flight: Count(Some(3)),
            rate_limit_streams_open: Count(Some(1)),
            ..RateLimitConfig::off()
        });
        let held: Vec<_> = (0..3)
            .map(|_| limits.enter(false, "ada").expect("under the bound"))
            .collect();
        let refused = limits.enter(false, "ada").expect_err("over the bound");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let details = refused.get_error_details();
        assert_eq!(
            details.error_info().map(|info| info.reason.as_str()),
            Some("TOO_MANY_CALLS")
        );
        assert!(details.retry_info().is_some(), "{refused:?}");
        // Another user, and the same user's streams, are counted apart.
        assert!(limits.enter(false, "bob").is_ok());
        let stream = limits.enter(true, "ada").expect("a stream");
        assert!(limits.enter(true, "ada").is_err());
        drop(stream);
        assert!(limits.enter(true, "ada").is_ok());
        // A call that ends frees its place.
        drop(held);
        assert!(limits.enter(false, "ada").is_ok());
        // Nobody has a call in flight: nothing is remembered.
        assert!(limits.calls_in_flight.counts().is_empty());
        assert!(limits.streams_open.counts().is_empty());
        // Off: no bound, no permit.
        let off = limits_off();
        assert!((0..1000).all(|_| off.enter(false, "ada").is_ok_and(|permit| permit.is_none())));
    }

    fn limits_off() -> Arc<RateLimits> {
        limits(RateLimitConfig::off())
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_over_the_limit_is_told_the_real_wait_and_others_are_not_limited() {
        let limits = limits(RateLimitConfig {
            rate_limit_read: rate("2/s"),
            ..RateLimitConfig::default()
        });
        limits.check_user(RateClass::Read, "ada").expect("first");
        limits.check_user(RateClass::Read, "ada").expect("second");
        let wait = retry_after(limits.check_user(RateClass::Read, "ada"));
        assert_eq!(wait, Duration::from_millis(500), "one call every 500 ms");
        // Others, and other classes, are untouched.
        limits
            .check_user(RateClass::Read, "grace")
            .expect("another user");
        limits
            .check_user(RateClass::Write, "ada")
            .expect("another class");
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(
            limits.check_user(RateClass::Read, "ada").is_err(),
            "not yet"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        limits
            .check_user(RateClass::Read, "ada")
            .expect("after the wait given");
    }

    #[tokio::test(start_paused = true)]
    async fn one_address_cannot_use_up_an_accounts_logins() {
        let limits = limits(RateLimitConfig {
            rate_limit_login_address: rate("10/m"),
            rate_limit_login_account: rate("30/m"),
            ..RateLimitConfig::default()
        });
        let attacker = Some("203.0.113.9".parse().expect("ip"));
        let owner = Some("198.51.100.7".parse().expect("ip"));
        // The attacker tries once a second for ten minutes: the burst of 10, then one every
        // 6 s; each refusal says how long to wait.
        let mut allowed = 0;
        for _ in 0..600 {
            match limits.check_login(attacker, "ada@example.com") {
                Ok(()) => allowed += 1,
                Err(status) => assert!(retry_after(Err(status)) <= Duration::from_secs(6)),
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert!((100..=10 + 600 / 6).contains(&allowed), "{allowed}");
        // The owner, from their own address, is never locked out.
        limits
            .check_login(owner, "ADA@example.com ")
            .expect("the owner logs in");
    }

    #[tokio::test(start_paused = true)]
    async fn many_addresses_share_one_accounts_budget() {
        let limits = limits(RateLimitConfig {
            rate_limit_login_account: rate("30/m"),
            ..RateLimitConfig::default()
        });
        let mut allowed = 0;
        for n in 0..1000u32 {
            let address = Some(std::net::IpAddr::from(n.to_be_bytes()));
            if limits.check_login(address, "ada@example.com").is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 30, "a botnet gets the account's burst, no more");
        limits
            .check_login(Some("192.0.2.1".parse().expect("ip")), "grace@example.com")
            .expect("other accounts are untouched");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_distinct_keys_holds_at_most_the_buckets() {
        let limits = limits(RateLimitConfig {
            rate_limit_read: rate("1/h"),
            ..RateLimitConfig::default()
        });
        for n in 0..100_000 {
            let _ = limits.check_user(RateClass::Read, &format!("user-{n}"));
        }
        let tracked = limits.read.0.as_ref().map_or(0, RateLimiter::len);
        assert!(tracked as u64 <= BUCKETS, "{tracked}");
    }
}
