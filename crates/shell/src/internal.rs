use std::fmt;

use tonic::Status;

/// Turns an unexpected failure into the one INTERNAL status clients see: "internal error"
/// plus an id. The cause chain goes to the log under the same id and never to the client.
pub fn internal_error(cause: &(dyn std::error::Error + 'static)) -> Status {
    let error_id = new_error_id();
    tracing::error!(error_id = %error_id, error = %ErrorChain(cause), "internal error");
    Status::internal(format!("internal error (error id {error_id})"))
}

fn new_error_id() -> String {
    let mut bytes = [0u8; 16];
    // Without randomness the id is all zeros: still an INTERNAL answer, just not correlatable.
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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
        assert!(status.message().starts_with("internal error (error id "));
        assert!(!status.message().contains("disk"));
    }

    #[test]
    fn chain_lists_every_source() {
        let cause = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(ErrorChain(&cause).to_string(), "query failed: disk on fire");
    }
}
