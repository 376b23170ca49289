//! End-to-end: the whole suite, called through the gateway as a client would.

mod auth_matrix;
mod availability;
mod deadlines;
mod deletion;
mod discovery;
mod flow;
mod limits;
mod streaming;
mod trust;
