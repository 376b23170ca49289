//! Deadlines answered right at every hop: a call whose deadline passes is DEADLINE_EXCEEDED
//! (reason DEADLINE_EXCEEDED), directly at notes and through the gateway, never CANCELLED,
//! UNAVAILABLE or a reset stream; and a write whose deadline passed before it arrived is not
//! made at all.

use database::testing::Backend;
use e2e::{assert_error, spawn_suite};
use proto::gateway::SignUpRequest;
use proto::notes::{CreateNoteRequest, ListNotesRequest, Note};
use tonic::Code;

fn note(title: &str) -> Option<Note> {
    Some(Note {
        title: title.into(),
        ..Note::default()
    })
}

async fn a_write_whose_deadline_passed_on_arrival_is_not_made(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    let path = "/notesuite.notes.v1.NotesService/CreateNote";
    let create = CreateNoteRequest {
        note: note("Too late"),
        request_id: String::new(),
    };
    for (hop, address) in [("gateway", suite.gateway_addr), ("notes", suite.notes_addr)] {
        for _ in 0..10 {
            let status = raw::call(address, path, &create, Some(&ada.token), "1n")
                .await
                .status;
            assert_eq!(status.code(), Code::DeadlineExceeded, "{hop}: {status:?}");
            assert_error(&status, Code::DeadlineExceeded, "DEADLINE_EXCEEDED");
        }
    }
    let listed = suite
        .notes()
        .list_notes(ada.request(ListNotesRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total_size, 0, "none of the late writes was stored");
}

async fn a_deadline_that_passes_mid_call_is_deadline_exceeded(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let path = "/notesuite.gateway.v1.GatewayService/SignUp";
    // A sign-up hashes a password: longer than 2 ms, so the deadline passes inside the call,
    // at the gateway or at users, whichever notices first.
    for _ in 0..5 {
        let sign_up = SignUpRequest {
            email: e2e::unique_email(),
            display_name: "Late".into(),
            password: "correct horse battery".into(),
        };
        let status = raw::call(suite.gateway_addr, path, &sign_up, None, "2m")
            .await
            .status;
        assert_error(&status, Code::DeadlineExceeded, "DEADLINE_EXCEEDED");
    }
}

database::backend_tests!(
    servers_answer_deadline_exceeded_themselves_at_every_hop,
    a_write_whose_deadline_passed_on_arrival_is_not_made,
    a_deadline_that_passes_mid_call_is_deadline_exceeded,
);

/// What a server answered a unary call, read off the wire: a gRPC client would race the
/// server with its own deadline timer and report its own DEADLINE_EXCEEDED instead.
mod raw {
    use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
    use http_body_util::{BodyExt as _, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tonic::Code;

    pub(super) struct Answer {
        pub(super) status: tonic::Status,
    }

    pub(super) async fn call(
        address: std::net::SocketAddr,
        path: &str,
        message: &impl prost::Message,
        token: Option<&str>,
        grpc_timeout: &str,
    ) -> Answer {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        let encoded = message.encode_to_vec();
        let mut frame = BytesMut::with_capacity(5 + encoded.len());
        frame.put_u8(0);
        frame.put_u32(u32::try_from(encoded.len()).expect("small"));
        frame.put_slice(&encoded);
        let mut request = http::Request::post(format!("http://{address}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", grpc_timeout);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(frame.freeze())).expect("request");
        let response = sender
            .send_request(request)
            .await
            .expect("a response, not a reset");
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.expect("the whole answer, not a reset");
        let trailers = collected.trailers().cloned();
        let mut data: Bytes = collected.to_bytes();
        // A trailers-only answer carries its status in the headers.
        let headers = trailers.unwrap_or(parts.headers);
        let status = tonic::Status::from_header_map(&headers).unwrap_or_else(|| {
            if data.len() >= 5 {
                data.advance(5);
            }
            tonic::Status::new(Code::Ok, "")
        });
        Answer { status }
    }
}

async fn servers_answer_deadline_exceeded_themselves_at_every_hop(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    let path = "/notesuite.notes.v1.NotesService/ListNotes";
    for (hop, address) in [("gateway", suite.gateway_addr), ("notes", suite.notes_addr)] {
        for grpc_timeout in ["1n", "1u", "100u", "1m"] {
            for _ in 0..25 {
                let answer = raw::call(
                    address,
                    path,
                    &ListNotesRequest::default(),
                    Some(&ada.token),
                    grpc_timeout,
                )
                .await;
                let status = answer.status;
                if status.code() == Code::Ok {
                    assert!(
                        matches!(grpc_timeout, "100u" | "1m"),
                        "{hop}: {grpc_timeout} leaves no time to answer"
                    );
                    continue;
                }
                assert_eq!(
                    status.code(),
                    Code::DeadlineExceeded,
                    "{hop}, grpc-timeout {grpc_timeout}: {status:?}"
                );
                assert_error(&status, Code::DeadlineExceeded, "DEADLINE_EXCEEDED");
            }
        }
    }
}
