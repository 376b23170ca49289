use std::fmt;

use tonic::Status;

/// Turns an unexpected failure into the one INTERNAL status clients see: "internal error"
/// plus the call's trace id. The cause chain goes to the log line of the same trace, never
/// to the client.
pub fn internal_error(cause: &(dyn std::error::Error + 'static)) -> Status {
    let trace_id = telemetry::current_trace_id().unwrap_or_else(|| "unknown".to_owned());
    tracing::error!(trace_id = %trace_id, error = %ErrorChain(cause), "internal error");
    Status::internal(format!("internal error (trace id {trace_id})"))
}

/// Displays an error with all its sources: `outer: middle: root`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("query failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn client_sees_an_id_but_not_the_cause() {
        let cause = Outer(std::io::Error::other("disk on fire"));
        let status = internal_error(&cause);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().starts_with("internal error (trace id "));
        assert!(!status.message().contains("disk"));
    }

    #[test]
    fn chain_lists_every_source() {
        let cause = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(ErrorChain(&cause).to_string(), "query failed: disk on fire");
    }
}
