//! The real `notesuite` binary, run and called as operators and clients do.

mod lifecycle;
mod support;
mod telemetry;
