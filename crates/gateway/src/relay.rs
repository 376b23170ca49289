//! Relaying a backend's response body to the client, one stream's backpressure kept on that
//! stream.
//!
//! Every forwarded call to a backend shares one HTTP/2 connection. Bytes the backend sent
//! and nobody took hold that connection's flow-control window, so a few clients that stop
//! reading large responses used to freeze every other user's calls (6 stalled ListNotes of
//! ~1 MiB were enough). Two things keep that from happening:
//!
//! - the backend connection's windows are sized so that the streams it may carry at once,
//!   each holding at most its stream window, cannot use up the connection's window
//!   ([`crate::BACKEND_STREAM_WINDOW`]);
//! - a relay task per call moves the body through a one-frame buffer, and ends the upstream
//!   call when the client has not taken a frame for the stall timeout. The backend's
//!   resources (a watch slot, the stream) are freed at once; the client learns why
//!   (RESOURCE_EXHAUSTED) as soon as it reads again.
//!
//! The task also turns what only the gateway sees into gRPC answers rather than stream
//! resets: a client's deadline passing mid-stream is DEADLINE_EXCEEDED, a backend that goes
//! away mid-stream is UNAVAILABLE (resume elsewhere). A client that leaves drops the relay,
//! which cancels the upstream call.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::{Code, Status};

use shell::error_status;

/// How a relayed body may end besides its own trailers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelayPolicy {
    /// The client's deadline, if the call has one.
    pub(crate) deadline: Option<Instant>,
    /// How long a frame may wait for the client to take it.
    pub(crate) stall_timeout: Duration,
    /// The reason a stalled client is told (e.g. `WATCH_TOO_SLOW` for a watch).
    pub(crate) stalled_reason: &'static str,
    /// The backend service, for messages.
    pub(crate) backend: &'static str,
}

/// Starts relaying `upstream`; the returned body is what the client reads.
pub(crate) fn relay(upstream: Body, policy: RelayPolicy) -> Body {
    let (frames, receiver) = mpsc::channel(1);
    tokio::spawn(pump(upstream, frames, policy));
    Body::new(RelayBody { receiver })
}

/// Moves frames from `upstream` to the client's buffer until the body ends, the client
/// leaves, the deadline passes or the client stalls.
async fn pump(mut upstream: Body, frames: mpsc::Sender<Frame<Bytes>>, policy: RelayPolicy) {
    let deadline = async {
        match policy.deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        let frame = tokio::select! {
            frame = upstream.frame() => frame,
            // The client left: returning drops `upstream`, which cancels the backend call.
            () = frames.closed() => return,
            () = &mut deadline => return end(&frames, deadline_exceeded(&policy)).await,
        };
        let frame = match frame {
            None => return,
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                tracing::warn!(backend = policy.backend, %error, "backend stream broke");
                let status = error_status(
                    Code::Unavailable,
                    "BACKEND_UNAVAILABLE",
                    format!(
                        "{} went away mid-call; retry (a stream resumes from its last revision)",
                        policy.backend
                    ),
                );
                return end(&frames, status).await;
            }
        };
        let last = frame.is_trailers();
        let room = tokio::select! {
            room = tokio::time::timeout(policy.stall_timeout, frames.reserve()) => room,
            () = &mut deadline => return end(&frames, deadline_exceeded(&policy)).await,
        };
        match room {
            Ok(Ok(room)) => room.send(frame),
            // The client left.
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!(
                    backend = policy.backend,
                    stall_timeout = ?policy.stall_timeout,
                    "client stopped reading: ending its upstream call"
                );
                drop(upstream);
                let status = error_status(
                    Code::ResourceExhausted,
                    policy.stalled_reason,
                    format!(
                        "the client did not read for {:?}: the call was ended; call again (a \
                         stream resumes from its last revision)",
                        policy.stall_timeout
                    ),
                );
                return end(&frames, status).await;
            }
        }
        if last {
            return;
        }
    }
}

/// Ends the client's body with `status` once the client takes it (or leaves).
async fn end(frames: &mpsc::Sender<Frame<Bytes>>, status: Status) {
    let mut trailers = http::HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        return;
    }
    let _ = frames.send(Frame::trailers(trailers)).await;
}

fn deadline_exceeded(policy: &RelayPolicy) -> Status {
    error_status(
        Code::DeadlineExceeded,
        "DEADLINE_EXCEEDED",
        format!("{} did not finish before the deadline", policy.backend),
    )
}

/// The client's side of a relay.
struct RelayBody {
    receiver: mpsc::Receiver<Frame<Bytes>>,
}

impl http_body::Body for RelayBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.receiver.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use tokio_stream::wrappers::ReceiverStream;

    type UpstreamFrames = mpsc::Sender<Result<Frame<Bytes>, Status>>;

    fn upstream() -> (UpstreamFrames, Body) {
        let (sender, receiver) = mpsc::channel(8);
        (
            sender,
            Body::new(StreamBody::new(ReceiverStream::new(receiver))),
        )
    }

    fn policy(deadline: Option<Instant>) -> RelayPolicy {
        RelayPolicy {
            deadline,
            stall_timeout: Duration::from_secs(10),
            stalled_reason: "WATCH_TOO_SLOW",
            backend: "notesuite.notes.v1.NotesService",
        }
    }

    fn data(text: &'static str) -> Result<Frame<Bytes>, Status> {
        Ok(Frame::data(Bytes::from_static(text.as_bytes())))
    }

    /// Reads `body` to its end: its data frames and the status of its trailers.
    async fn read_all(mut body: Body) -> (Vec<Bytes>, Option<Status>) {
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("relayed bodies end with trailers, not errors");
            match frame.into_data() {
                Ok(bytes) => data.push(bytes),
                Err(frame) => {
                    let trailers = frame.into_trailers().expect("trailers");
                    return (data, Status::from_header_map(&trailers));
                }
            }
        }
        (data, None)
    }

    fn reason(status: &Status) -> String {
        tonic_types::StatusExt::get_error_details(status)
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_ends_the_upstream_call_and_learns_why() {
        let (frames, body) = upstream();
        let relayed = relay(body, policy(None));
        for text in ["one", "two", "three"] {
            frames.send(data(text)).await.expect("upstream open");
        }
        // Nobody reads: after the stall timeout the upstream body is dropped.
        tokio::time::timeout(Duration::from_secs(11), frames.closed())
            .await
            .expect("the upstream call is ended after the stall timeout");
        let (data, status) = read_all(relayed).await;
        assert_eq!(
            data,
            [Bytes::from_static(b"one")],
            "what was buffered arrives"
        );
        let status = status.expect("a status");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(reason(&status), "WATCH_TOO_SLOW");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_is_never_cut_however_idle_the_stream() {
        let (frames, body) = upstream();
        let relayed = relay(body, policy(None));
        let reader = tokio::spawn(read_all(relayed));
        for text in ["one", "two"] {
            frames.send(data(text)).await.expect("upstream open");
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let mut trailers = http::HeaderMap::new();
        Status::new(Code::Ok, "")
            .add_header(&mut trailers)
            .expect("ok");
        frames
            .send(Ok(Frame::trailers(trailers)))
            .await
            .expect("open");
        let (data, status) = reader.await.expect("reader");
        assert_eq!(data.len(), 2);
        assert_eq!(status.expect("status").code(), Code::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn the_clients_deadline_ends_the_stream_with_deadline_exceeded() {
        let (frames, body) = upstream();
        let relayed = relay(body, policy(Some(Instant::now() + Duration::from_secs(2))));
        frames.send(data("one")).await.expect("upstream open");
        let (data, status) = read_all(relayed).await;
        assert_eq!(data.len(), 1);
        let status = status.expect("a status");
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert_eq!(reason(&status), "DEADLINE_EXCEEDED");
        frames.closed().await;
    }

    #[tokio::test]
    async fn a_backend_that_breaks_mid_stream_is_unavailable_not_a_reset() {
        let (frames, body) = upstream();
        let relayed = relay(body, policy(None));
        frames.send(data("one")).await.expect("upstream open");
        frames
            .send(Err(Status::internal("connection reset")))
            .await
            .expect("upstream open");
        let (data, status) = read_all(relayed).await;
        assert_eq!(data.len(), 1);
        let status = status.expect("a status");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(reason(&status), "BACKEND_UNAVAILABLE");
    }

    #[tokio::test]
    async fn a_client_that_leaves_cancels_the_upstream_call() {
        let (frames, body) = upstream();
        let relayed = relay(body, policy(None));
        drop(relayed);
        tokio::time::timeout(Duration::from_secs(10), frames.closed())
            .await
            .expect("the upstream body is dropped");
    }
}
