//! The real `notesuite` binary, run and called as operators and clients do.

mod client_tools;
mod deletion;
mod faults;
mod import;
mod lifecycle;
mod rotation;
mod secrets;
mod support;
mod telemetry;
mod tls;
mod watch;
