//! The notes service served for real on port 0 and called through generated stubs.

mod concurrency;
mod helpers;
mod idempotency;
mod lifecycle;
mod paging;
mod validation;
