//! The notes service served for real on port 0 and called through generated stubs.

mod cancellation;
mod concurrency;
mod healing;
mod helpers;
mod idempotency;
mod lifecycle;
mod outage;
mod paging;
mod upgrade;
mod validation;
mod watch;
