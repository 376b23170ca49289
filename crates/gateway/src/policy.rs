//! The gateway's serving policy: one table, keyed by method path, that says for every method
//! reachable at the gateway who may call it, how long it may last, whether it may be retried,
//! how large its request may be and which rate-limit class it counts against. The forwarder
//! and the gateway's own API read it; nothing else decides these things. A method missing from
//! the table is not served (a test checks that every method of the contracts has a row).

use std::time::Duration;

/// Who may call a method through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone: the method establishes who the caller is (SignUp, Login).
    Anonymous,
    /// A caller with a valid user token.
    User,
    /// Not reachable through the gateway (service credential only, on the backend itself).
    Internal,
}

/// How long a call may last when its client set no deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultDeadline {
    /// The gateway's `--default-deadline`.
    Configured,
    /// None: a watch is meant to stay open and an import answers only at its end. A client
    /// deadline still bounds the whole stream.
    None,
}

/// Whether a call may be sent again after it may have reached a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Sending it twice has the effect of sending it once (reads, credential checks).
    Always,
    /// Only when the request carries a `request_id` (CreateNote): the forwarder reads that one
    /// field off the wire, without decoding the note.
    WithRequestId,
    /// A second delivery could answer differently or act twice (updates, deletes, sign-up).
    Never,
}

/// The rate-limit class a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateClass {
    /// Password checks: the strictest (per email and per address).
    Credentials,
    Read,
    Write,
    Stream,
}

/// Whether the request and the answer are one message or a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Unary,
    Stream,
}

/// Everything the gateway decides about one method.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MethodPolicy {
    /// `/package.Service/Method`.
    pub(crate) path: &'static str,
    pub(crate) access: Access,
    pub(crate) shape: Shape,
    pub(crate) deadline: DefaultDeadline,
    pub(crate) idempotency: Idempotency,
    /// Largest request message (the gRPC frame's length) accepted.
    pub(crate) max_request_bytes: usize,
    pub(crate) rate_class: RateClass,
    /// The reason a client that stops reading the answer is told.
    pub(crate) stalled_reason: &'static str,
}

impl MethodPolicy {
    const fn unary(
        path: &'static str,
        access: Access,
        idempotency: Idempotency,
        rate_class: RateClass,
    ) -> Self {
        Self {
            path,
            access,
            shape: Shape::Unary,
            deadline: DefaultDeadline::Configured,
            idempotency,
            max_request_bytes: SMALL_REQUEST_BYTES,
            rate_class,
            stalled_reason: "CLIENT_TOO_SLOW",
        }
    }

    const fn internal(path: &'static str) -> Self {
        Self::unary(path, Access::Internal, Idempotency::Never, RateClass::Write)
    }

    /// Marks an internal method as a read: the gateway's own calls of it are retried.
    const fn read_only(mut self) -> Self {
        self.idempotency = Idempotency::Always;
        self
    }

    /// Marks an internal write as safe to repeat: the gateway's own calls of it are retried.
    const fn idempotent(self) -> Self {
        self.read_only()
    }

    const fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    const fn stream(
        path: &'static str,
        stalled_reason: &'static str,
        rate_class: RateClass,
    ) -> Self {
        Self {
            path,
            access: Access::User,
            shape: Shape::Stream,
            deadline: DefaultDeadline::None,
            idempotency: Idempotency::Never,
            max_request_bytes: NOTE_REQUEST_BYTES,
            rate_class,
            stalled_reason,
        }
    }

    /// Whether any call of this method may be sent again (the forwarder also retries a
    /// CreateNote that carries a request id).
    #[cfg(test)]
    fn retries_unavailable(&self) -> bool {
        self.shape == Shape::Unary && self.idempotency == Idempotency::Always
    }

    /// The default deadline for this method, given the gateway's configured one.
    pub(crate) fn default_deadline(&self, configured: Duration) -> Option<Duration> {
        match self.deadline {
            DefaultDeadline::Configured => Some(configured),
            DefaultDeadline::None => None,
        }
    }
}

/// Requests that carry no note: account fields, ids, page tokens.
const SMALL_REQUEST_BYTES: usize = 64 * 1024;
/// Requests that carry a note: 256 KiB of content, the title and the tags, with room to spare
/// for field framing (notes itself refuses anything above 1 MiB).
const NOTE_REQUEST_BYTES: usize = 320 * 1024;

const GATEWAY: &str = "/notesuite.gateway.v1.GatewayService/";

/// Every method reachable at the gateway's port besides health and reflection.
pub(crate) static TABLE: &[MethodPolicy] = {
    use Access::{Anonymous, User};
    use Idempotency::{Always, Never, WithRequestId};
    use RateClass::{Credentials, Read, Write};
    &[
        // The gateway's own API.
        MethodPolicy::unary(
            "/notesuite.gateway.v1.GatewayService/SignUp",
            Anonymous,
            Never,
            Credentials,
        ),
        MethodPolicy::unary(
            "/notesuite.gateway.v1.GatewayService/Login",
            Anonymous,
            Always,
            Credentials,
        ),
        MethodPolicy::unary(
            "/notesuite.gateway.v1.GatewayService/GetProfile",
            User,
            Always,
            Read,
        ),
        // users: the caller's own account.
        MethodPolicy::unary(
            "/notesuite.users.v1.UsersService/GetUser",
            User,
            Always,
            Read,
        ),
        MethodPolicy::unary(
            "/notesuite.users.v1.UsersService/UpdateUser",
            User,
            Never,
            Write,
        ),
        MethodPolicy::unary(
            "/notesuite.users.v1.UsersService/DeleteUser",
            User,
            Never,
            Write,
        ),
        MethodPolicy::internal("/notesuite.users.v1.UsersService/CreateUser"),
        MethodPolicy::internal("/notesuite.users.v1.UsersService/BatchGetUsers").read_only(),
        MethodPolicy::internal("/notesuite.users.v1.UsersService/ListUsers").read_only(),
        MethodPolicy::internal("/notesuite.users.v1.UsersService/VerifyCredentials").read_only(),
        MethodPolicy::internal("/notesuite.users.v1.UsersService/ListAccountDeletions").read_only(),
        MethodPolicy::internal("/notesuite.users.v1.UsersService/ConfirmAccountPurged")
            .idempotent(),
        // notes: the caller's own notes.
        MethodPolicy::unary(
            "/notesuite.notes.v1.NotesService/CreateNote",
            User,
            WithRequestId,
            Write,
        )
        .max_request_bytes(NOTE_REQUEST_BYTES),
        MethodPolicy::unary(
            "/notesuite.notes.v1.NotesService/GetNote",
            User,
            Always,
            Read,
        ),
        MethodPolicy::unary(
            "/notesuite.notes.v1.NotesService/ListNotes",
            User,
            Always,
            Read,
        ),
        MethodPolicy::unary(
            "/notesuite.notes.v1.NotesService/UpdateNote",
            User,
            Never,
            Write,
        )
        .max_request_bytes(NOTE_REQUEST_BYTES),
        MethodPolicy::unary(
            "/notesuite.notes.v1.NotesService/DeleteNote",
            User,
            Never,
            Write,
        ),
        MethodPolicy::stream(
            "/notesuite.notes.v1.NotesService/WatchNotes",
            "WATCH_TOO_SLOW",
            RateClass::Stream,
        ),
        // Each item is one message: the limit is per item, the stream may be any length.
        MethodPolicy::stream(
            "/notesuite.notes.v1.NotesService/ImportNotes",
            "CLIENT_TOO_SLOW",
            RateClass::Write,
        ),
        MethodPolicy::internal("/notesuite.notes.v1.NotesService/PurgeUserNotes").idempotent(),
    ]
};

/// The policy of the method at `path`, if the gateway serves it.
pub(crate) fn lookup(path: &str) -> Option<&'static MethodPolicy> {
    TABLE.iter().find(|method| method.path == path)
}

/// The gateway's own methods that take no token.
pub(crate) fn anonymous_gateway_methods() -> Vec<&'static str> {
    TABLE
        .iter()
        .filter(|method| method.access == Access::Anonymous)
        .filter_map(|method| method.path.strip_prefix(GATEWAY))
        .collect()
}

/// The largest request any of the gateway's own methods accepts.
pub(crate) fn max_gateway_request_bytes() -> usize {
    TABLE
        .iter()
        .filter(|method| method.path.starts_with(GATEWAY))
        .map(|method| method.max_request_bytes)
        .max()
        .unwrap_or(SMALL_REQUEST_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method of the three contracts has exactly one row: nothing is decided elsewhere
    /// or left undecided.
    #[test]
    fn every_method_of_the_contracts_has_one_row() {
        let methods = telemetry::MethodTable::from_descriptor_sets(&[proto::FILE_DESCRIPTOR_SET])
            .expect("descriptors decode");
        let mut contract: Vec<(String, bool)> = methods
            .iter()
            .filter(|method| method.path.starts_with("/notesuite."))
            .map(|method| (method.path.clone(), method.streaming))
            .collect();
        contract.sort();
        let mut table: Vec<(String, bool)> = TABLE
            .iter()
            .map(|method| (method.path.to_owned(), method.shape == Shape::Stream))
            .collect();
        table.sort();
        assert_eq!(table, contract);
    }

    #[test]
    fn only_sign_up_and_login_are_anonymous() {
        assert_eq!(anonymous_gateway_methods(), ["SignUp", "Login"]);
    }

    #[test]
    fn only_unary_idempotent_methods_retry_an_unavailable_answer() {
        let retried: Vec<&str> = TABLE
            .iter()
            .filter(|method| method.retries_unavailable())
            .map(|method| method.path.rsplit('/').next().unwrap_or_default())
            .collect();
        assert_eq!(
            retried,
            [
                "Login",
                "GetProfile",
                "GetUser",
                "BatchGetUsers",
                "ListUsers",
                "VerifyCredentials",
                "ListAccountDeletions",
                "ConfirmAccountPurged",
                "GetNote",
                "ListNotes",
                "PurgeUserNotes"
            ]
        );
    }
}
