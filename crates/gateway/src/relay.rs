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

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt as _;
use tokio::sync::{mpsc, oneshot};
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

/// Starts relaying `upstream`, after `read` (frames of it already taken); the returned body
/// is what the client reads.
/// `held` (a stream's place on its connection) is let go when the relay ends.
pub(crate) fn relay(upstream: Body, read: Vec<Frame<Bytes>>, policy: RelayPolicy) -> Body {
    let (frames, receiver) = mpsc::channel(1);
    let (last, last_receiver) = oneshot::channel();
    tokio::spawn(async move {
        // `pump` owns the upstream body: once it returns, the backend call is over (or
        // cancelled), whether or not the client ever reads the status below.
        if let Some(status) = pump(upstream, read, frames, policy).await {
            let _ = last.send(status);
        }
    });
    Body::new(RelayBody {
        frames: receiver,
        last: Some(last_receiver),
    })
}

/// Moves frames from `upstream` to the client's buffer until the body ends, the client
/// leaves, the deadline passes or the client stalls; returns the status the client is still
/// owed, if the body did not end with its own.
async fn pump(
    mut upstream: Body,
    read: Vec<Frame<Bytes>>,
    frames: mpsc::Sender<Frame<Bytes>>,
    policy: RelayPolicy,
) -> Option<Status> {
    let deadline = async {
        match policy.deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut read = read.into_iter();
    loop {
        let frame = match read.next() {
            Some(frame) => Some(Ok(frame)),
            None => tokio::select! {
                frame = upstream.frame() => frame,
                // The client left: returning drops `upstream`, which cancels the backend call.
                () = frames.closed() => return None,
                () = &mut deadline => return Some(shell::deadline_exceeded()),
            },
        };
        let frame = match frame {
            None => {
                // A gRPC answer ends with trailers; one without them did not finish.
                return Some(backend_broke(policy.backend));
            }
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                tracing::warn!(backend = policy.backend, %error, "backend stream broke");
                return Some(backend_broke(policy.backend));
            }
        };
        let last = frame.is_trailers();
        let room = match frames.try_reserve() {
            Ok(room) => Ok(room),
            Err(mpsc::error::TrySendError::Closed(())) => return None,
            // The client has not taken the previous frame yet: from now on it has the stall
            // timeout to do so.
            Err(mpsc::error::TrySendError::Full(())) => tokio::select! {
                room = tokio::time::timeout(policy.stall_timeout, frames.reserve()) => match room {
                    Ok(Ok(room)) => Ok(room),
                    Ok(Err(_)) => return None,
                    Err(elapsed) => Err(elapsed),
                },
                () = &mut deadline => return Some(shell::deadline_exceeded()),
            },
        };
        match room {
            Ok(room) => room.send(frame),
            Err(_) => {
                tracing::info!(
                    backend = policy.backend,
                    stall_timeout = ?policy.stall_timeout,
                    "client stopped reading: ending its upstream call"
                );
                return Some(error_status(
                    Code::ResourceExhausted,
                    policy.stalled_reason,
                    format!(
                        "the client did not read for {:?}: the call was ended; call again (a \
                         stream resumes from its last revision)",
                        policy.stall_timeout
                    ),
                ));
            }
        }
        if last {
            return None;
        }
    }
}

/// The answer's end when `backend` broke off mid-answer (a gRPC answer ends with trailers).
pub(crate) fn backend_broke(backend: &str) -> Status {
    error_status(
        Code::Unavailable,
        "BACKEND_UNAVAILABLE",
        format!("{backend} went away mid-call; retry (a stream resumes from its last revision)"),
    )
}

/// `status` as the trailers frame that ends an answer.
pub(crate) fn trailers(status: &Status) -> Option<Frame<Bytes>> {
    let mut trailers = http::HeaderMap::new();
    status.add_header(&mut trailers).ok()?;
    Some(Frame::trailers(trailers))
}

/// The client's side of a relay: the frames relayed, then the status the relay still owed
/// (a status needs no room in the client's window, so it is never held up by one).
struct RelayBody {
    frames: mpsc::Receiver<Frame<Bytes>>,
    last: Option<oneshot::Receiver<Status>>,
}

impl http_body::Body for RelayBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Some(frame) = ready!(self.frames.poll_recv(cx)) {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(last) = self.last.as_mut() else {
            return Poll::Ready(None);
        };
        let status = ready!(Pin::new(last).poll(cx));
        self.last = None;
        // An error: the answer ended with its own trailers.
        Poll::Ready(status.ok().as_ref().and_then(trailers).map(Ok))
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
        let relayed = relay(body, Vec::new(), policy(None));
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
        let relayed = relay(body, Vec::new(), policy(None));
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
        let relayed = relay(
            body,
            Vec::new(),
            policy(Some(Instant::now() + Duration::from_secs(2))),
        );
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
        let relayed = relay(body, Vec::new(), policy(None));
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

    #[tokio::test(start_paused = true)]
    async fn a_deadline_passing_while_the_client_does_not_read_ends_the_upstream_call() {
        let (frames, body) = upstream();
        let relayed = relay(
            body,
            Vec::new(),
            policy(Some(Instant::now() + Duration::from_secs(2))),
        );
        for text in ["one", "two", "three"] {
            frames.send(data(text)).await.expect("upstream open");
        }
        tokio::time::timeout(Duration::from_secs(3), frames.closed())
            .await
            .expect("the upstream call is ended at the deadline, read or not");
        let (data, status) = read_all(relayed).await;
        assert_eq!(data, [Bytes::from_static(b"one")]);
        assert_eq!(status.expect("a status").code(), Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn an_answer_without_trailers_ends_with_a_status() {
        let (frames, body) = upstream();
        let relayed = relay(
            body,
            vec![Frame::data(Bytes::from_static(b"read"))],
            policy(None),
        );
        frames.send(data("one")).await.expect("upstream open");
        drop(frames);
        let (data, status) = read_all(relayed).await;
        assert_eq!(
            data,
            [Bytes::from_static(b"read"), Bytes::from_static(b"one")]
        );
        assert_eq!(status.expect("a status").code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn a_client_that_leaves_cancels_the_upstream_call() {
        let (frames, body) = upstream();
        let relayed = relay(body, Vec::new(), policy(None));
        drop(relayed);
        tokio::time::timeout(Duration::from_secs(10), frames.closed())
            .await
            .expect("the upstream body is dropped");
    }
}
