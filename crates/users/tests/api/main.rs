//! The users service served for real on port 0 and called through generated stubs.

mod accounts;
mod credentials;
mod helpers;
mod paging;
