//! `notesuite check`: a running deployment, checked the way a user would find it working or
//! not. Every step prints one line; the account the check signs up is deleted at the end,
//! whichever step failed.

use std::collections::BTreeSet;
use std::io::Write as _;

use anyhow::Context as _;

use proto::gateway::SignUpRequest;
use proto::gateway::gateway_service_client::GatewayServiceClient;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::{CreateNoteRequest, DeleteNoteRequest, GetNoteRequest, Note};
use proto::users::DeleteUserRequest;
use proto::users::users_service_client::UsersServiceClient;
use tonic::transport::Channel;

use crate::cli::CheckConfig;
use crate::client;

const GATEWAY: &str = "notesuite.gateway.v1.GatewayService";
const USERS: &str = "notesuite.users.v1.UsersService";
const NOTES: &str = "notesuite.notes.v1.NotesService";
/// What every notesuite port serves besides its own service.
const COMMON: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Runs every step, then fails when any of them did.
pub async fn run(config: &CheckConfig) -> anyhow::Result<()> {
    let mut report = Report::default();
    let gateway_tls = client::tls_connector(
        config.tls_ca.as_deref(),
        None,
        config.tls_server_name.as_deref(),
    )
    .context("--tls-ca, --tls-server-name")?;
    let identity = match (&config.backend_cert, &config.backend_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => None,
    };
    let backend_tls = client::tls_connector(config.backend_ca.as_deref(), identity, None)
        .context("--backend-ca, --backend-cert, --backend-key")?;
    let mut targets = vec![Target::new(
        "gateway",
        &config.gateway,
        GATEWAY,
        config,
        gateway_tls.as_ref(),
    )?];
    if let Some(users) = &config.users {
        targets.push(Target::new(
            "users",
            users,
            USERS,
            config,
            backend_tls.as_ref(),
        )?);
    }
    if let Some(notes) = &config.notes {
        targets.push(Target::new(
            "notes",
            notes,
            NOTES,
            config,
            backend_tls.as_ref(),
        )?);
    }
    report.line(format_args!(
        "notesuite check: {}",
        targets
            .iter()
            .map(|target| format!("{} {}", target.name, target.address))
            .collect::<Vec<_>>()
            .join(", ")
    ))?;

    let mut gateway_channel = None;
    for target in &targets {
        let channel = match client::connect(&target.endpoint, config.timeout).await {
            Ok(channel) => channel,
            Err(reason) => {
                report.step(&format!("{} reachable", target.name), Err(reason))?;
                continue;
            }
        };
        for health_name in ["", target.service, shell::LIVENESS] {
            let outcome = client::check_health(channel.clone(), health_name).await;
            report.step(
                &format!("{} health {health_name:?} SERVING", target.name),
                outcome,
            )?;
        }
        let expected = target.expected_services();
        let v1 = list_services_v1(channel.clone()).await;
        report.step(
            &format!("{} reflection v1 lists its services", target.name),
            v1.and_then(|listed| lists_all(&listed, &expected)),
        )?;
        let v1alpha = list_services_v1alpha(channel.clone()).await;
        report.step(
            &format!("{} reflection v1alpha lists its services", target.name),
            v1alpha.and_then(|listed| lists_all(&listed, &expected)),
        )?;
        if target.name == "gateway" {
            gateway_channel = Some(channel);
        }
    }

    match gateway_channel {
        Some(channel) => round_trip(channel, &mut report).await?,
        None => report.skip(
            "round trip through the gateway",
            "the gateway is unreachable",
        )?,
    }
    report.finish()
}

struct Target {
    name: &'static str,
    address: String,
    endpoint: client::Dial,
    service: &'static str,
}

impl Target {
    fn new(
        name: &'static str,
        address: &str,
        service: &'static str,
        config: &CheckConfig,
        tls: Option<&tls::Connector>,
    ) -> anyhow::Result<Self> {
        let endpoint = client::endpoint(address, config.timeout, tls)
            .map_err(|reason| anyhow::anyhow!("--{name}: {reason}"))?;
        Ok(Self {
            name,
            address: address.to_owned(),
            endpoint,
            service,
        })
    }

    fn expected_services(&self) -> BTreeSet<&'static str> {
        let mut expected: BTreeSet<_> = COMMON.into_iter().collect();
        expected.insert(self.service);
        // The gateway's reflection lists everything reachable through it.
        if self.service == GATEWAY {
            expected.extend([USERS, NOTES]);
        }
        expected
    }
}

fn lists_all(listed: &BTreeSet<String>, expected: &BTreeSet<&str>) -> Result<(), String> {
    let missing: Vec<_> = expected
        .iter()
        .filter(|name| !listed.contains(**name))
        .copied()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "missing {}; it lists {}",
        missing.join(", "),
        listed.iter().cloned().collect::<Vec<_>>().join(", ")
    ))
}

/// Reflection v1 and v1alpha are one protocol in two generated packages: one body for both.
macro_rules! list_services_with {
    ($name:ident, $version:ident) => {
        async fn $name(channel: Channel) -> Result<BTreeSet<String>, String> {
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, ServerReflectionResponse,
            };

            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut client = ServerReflectionClient::new(channel);
            let response: Option<ServerReflectionResponse> = client
                .server_reflection_info(tokio_stream::once(request))
                .await
                .map_err(|status| client::describe_status(&status))?
                .into_inner()
                .message()
                .await
                .map_err(|status| client::describe_status(&status))?;
            match response.and_then(|response| response.message_response) {
                Some(MessageResponse::ListServicesResponse(list)) => Ok(list
                    .service
                    .into_iter()
                    .map(|service| service.name)
                    .collect()),
                Some(MessageResponse::ErrorResponse(error)) => Err(error.error_message),
                _ => Err("no list of services in the answer".into()),
            }
        }
    };
}

list_services_with!(list_services_v1, v1);
list_services_with!(list_services_v1alpha, v1alpha);

/// Sign up, create, get, delete and look again, through the gateway as a client would; then
/// delete the account, also when a step in between failed. Every call carries one sampled W3C
/// trace context, so that the whole round trip is one trace wherever traces are exported.
async fn round_trip(channel: Channel, report: &mut Report) -> anyhow::Result<()> {
    let trace = TraceContext::new();
    report.line(format_args!("  round trip trace id {}", trace.trace_id))?;
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let email = format!("notesuite-check-{suffix}@example.com");
    let sign_up = GatewayServiceClient::new(channel.clone())
        .sign_up(trace.request(SignUpRequest {
            email: email.clone(),
            display_name: "notesuite check".into(),
            // A fresh random password: the account lives for the few calls of this check.
            password: format!("check-{}", random_hex::<16>()),
        }))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| client::describe_status(&status));
    let (user_id, token) = match sign_up {
        Ok(response) => {
            let user_id = response.user.map(|user| user.id).unwrap_or_default();
            report.step(&format!("sign up {email}"), Ok(()))?;
            (user_id, response.access_token)
        }
        Err(reason) => {
            report.step(&format!("sign up {email}"), Err(reason))?;
            report.skip("note round trip", "no account to make it with")?;
            return Ok(());
        }
    };
    let caller = Caller::new(&token, &trace)?;
    let mut notes = NotesServiceClient::new(channel.clone());

    let title = format!("notesuite check {suffix}");
    let created = notes
        .create_note(caller.request(CreateNoteRequest {
            note: Some(Note {
                title: title.clone(),
                content: "written by notesuite check, deleted right after".into(),
                tags: vec!["notesuite-check".into()],
                ..Note::default()
            }),
            request_id: uuid::Uuid::now_v7().to_string(),
        }))
        .await
        .map_err(|status| client::describe_status(&status))
        .and_then(|response| {
            response
                .into_inner()
                .note
                .ok_or_else(|| "the answer has no note".to_owned())
        });
    let note_id = match created {
        Ok(note) => {
            report.step("create a note", Ok(()))?;
            Some(note.id)
        }
        Err(reason) => {
            report.step("create a note", Err(reason))?;
            None
        }
    };

    if let Some(note_id) = &note_id {
        let fetched = notes
            .get_note(caller.request(GetNoteRequest {
                id: note_id.clone(),
            }))
            .await
            .map_err(|status| client::describe_status(&status))
            .and_then(|response| match response.into_inner().note {
                Some(note) if note.title == title => Ok(()),
                Some(note) => Err(format!("its title is {:?}, not {title:?}", note.title)),
                None => Err("the answer has no note".into()),
            });
        report.step("get the note back", fetched)?;

        let deleted = notes
            .delete_note(caller.request(DeleteNoteRequest {
                id: note_id.clone(),
                etag: String::new(),
            }))
            .await
            .map(drop)
            .map_err(|status| client::describe_status(&status));
        let was_deleted = deleted.is_ok();
        report.step("delete the note", deleted)?;

        if was_deleted {
            let gone = match notes
                .get_note(caller.request(GetNoteRequest {
                    id: note_id.clone(),
                }))
                .await
            {
                Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
                Err(status) => Err(client::describe_status(&status)),
                Ok(_) => Err("it is still there".to_owned()),
            };
            report.step("the deleted note is NOT_FOUND", gone)?;
        }
    }

    // Cleaning up: the account goes whatever happened above, so that a check run every few
    // minutes leaves nothing behind.
    let deleted_account = UsersServiceClient::new(channel)
        .delete_user(caller.request(DeleteUserRequest {
            id: user_id,
            etag: String::new(),
        }))
        .await
        .map(drop)
        .map_err(|status| client::describe_status(&status));
    report.step("delete the account (clean up)", deleted_account)
}

/// The W3C `traceparent` of the check's round trip: a random trace, sampled, so that
/// parent-based samplers keep every span of it.
struct TraceContext {
    trace_id: String,
    traceparent: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl TraceContext {
    fn new() -> Self {
        let trace_id = random_hex::<16>();
        let span_id = random_hex::<8>();
        let traceparent = format!("00-{trace_id}-{span_id}-01")
            .parse()
            .expect("hex digits and dashes are ASCII");
        Self {
            trace_id,
            traceparent,
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("traceparent", self.traceparent.clone());
        request
    }
}

/// N random bytes as hex. An all-zero trace id is invalid, which 16 random bytes never are
/// in practice; if the OS has no randomness the check still runs, with a fixed id.
fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = [0x5a; N];
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The signed-up caller's `authorization` header, and the round trip's trace context.
struct Caller {
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    traceparent: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Caller {
    fn new(token: &str, trace: &TraceContext) -> anyhow::Result<Self> {
        let authorization = format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow::anyhow!("the gateway's access token is not ASCII"))?;
        Ok(Self {
            authorization,
            traceparent: trace.traceparent.clone(),
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert("authorization", self.authorization.clone());
        metadata.insert("traceparent", self.traceparent.clone());
        request
    }
}

/// One line per step on stdout, as it happens: a check that hangs still shows how far it got.
#[derive(Debug, Default)]
struct Report {
    passed: usize,
    failed: Vec<String>,
    skipped: usize,
}

impl Report {
    fn line(&mut self, text: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
        out.flush()?;
        Ok(())
    }

    fn step(&mut self, name: &str, outcome: Result<(), String>) -> anyhow::Result<()> {
        match outcome {
            Ok(()) => {
                self.passed += 1;
                self.line(format_args!("  ok    {name}"))
            }
            Err(reason) => {
                self.failed.push(name.to_owned());
                self.line(format_args!("  FAIL  {name}: {reason}"))
            }
        }
    }

    fn skip(&mut self, name: &str, why: &str) -> anyhow::Result<()> {
        self.skipped += 1;
        self.line(format_args!("  skip  {name}: {why}"))
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if self.failed.is_empty() && self.skipped == 0 {
            let passed = self.passed;
            self.line(format_args!("check passed: {passed} steps"))?;
            return Ok(());
        }
        let (failed, skipped) = (self.failed.len(), self.skipped);
        let total = self.passed + failed;
        let first = self.failed.first().cloned().unwrap_or_default();
        let message = format!(
            "check failed: {failed} of {total} steps failed, {skipped} skipped (first: {first})"
        );
        self.line(format_args!("{message}"))?;
        anyhow::bail!(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_must_list_every_expected_service() {
        let listed: BTreeSet<String> = COMMON
            .iter()
            .chain(&[GATEWAY, USERS])
            .map(|name| (*name).to_owned())
            .collect();
        let gateway = BTreeSet::from_iter(COMMON.into_iter().chain([GATEWAY, USERS, NOTES]));
        let error = lists_all(&listed, &gateway).expect_err("notes is missing");
        assert!(
            error.starts_with("missing notesuite.notes.v1.NotesService;"),
            "{error}"
        );
        let users = BTreeSet::from_iter(COMMON.into_iter().chain([USERS]));
        assert_eq!(lists_all(&listed, &users), Ok(()));
    }
}
