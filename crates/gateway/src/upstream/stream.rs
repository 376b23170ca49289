//! One call on a backend's HTTP/2 connection, in the caller's own task.
//!
//! The gateway speaks to its backends with `h2` directly rather than through hyper's client:
//! hyper sends every request through a channel to the connection's task and spawns a task
//! per call to wait for its answer (and another to send its body), three hand-offs a call
//! that a proxy pays twice over. Here the call opens its stream, writes its request and reads
//! its answer itself; only a request body that is still arriving (a client stream) gets a task
//! to pipe it, with HTTP/2's flow control as its backpressure.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http_body::{Body as _, Frame};
use tonic::body::Body;

/// Opens a stream for `head` on `sender`'s connection and sends `body` on it; the answer, its
/// body still on the stream ([`answer_body`] reads it). A request body still arriving when the
/// answer is dropped unread (or this future is: the caller went away) is cut off, its stream
/// reset: the backend must not see a client stream completed that its caller abandoned.
///
/// An error before the request's head was handed to HTTP/2 (the connection closed, or is
/// going away) means the backend never saw the call; after it, the error says what happened
/// to the stream (REFUSED_STREAM or a GOAWAY that excluded it: never processed either).
pub(super) async fn send(
    sender: &SendRequest<Bytes>,
    head: http::Request<()>,
    body: Body,
) -> Result<http::Response<Incoming>, CallError> {
    let mut sender = sender.clone().ready().await.map_err(CallError::NotSent)?;
    let end_of_stream = body.is_end_stream();
    let (response, send_stream) = sender
        .send_request(head, end_of_stream)
        .map_err(CallError::NotSent)?;
    let mut piping = None;
    if !end_of_stream {
        let mut pipe = Box::pin(Pipe::new(body, send_stream));
        // A unary request is whole already: it goes out now, with no task. One still
        // arriving is piped by a task of its own as it comes, until it ends or is cut off.
        if std::future::poll_fn(|cx| Poll::Ready(pipe.as_mut().poll(cx)))
            .await
            .is_pending()
        {
            let (cut_off, cancelled) = tokio::sync::oneshot::channel();
            pipe.cancelled = Some(cancelled);
            piping = Some(cut_off);
            tokio::spawn(pipe);
        }
    }
    let response = response.await.map_err(CallError::Stream)?;
    Ok(response.map(|recv| Incoming {
        recv,
        _piping: piping,
    }))
}

/// An answer's body on its stream, and the request body's pipe (if it is still going), which
/// is cut off when this is dropped.
pub(super) struct Incoming {
    recv: RecvStream,
    _piping: Option<tokio::sync::oneshot::Sender<()>>,
}

/// An answer's body as it comes off its stream, holding `guard` until it ends or is dropped.
pub(super) fn answer_body<G: Send + Unpin + 'static>(incoming: Incoming, guard: G) -> Body {
    Body::new(Answer::new(incoming, guard))
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// HTTP/2 took no stream for it: the connection is closed or going away.
    #[error("{0}")]
    NotSent(h2::Error),
    /// Its stream was reset, or the connection lost, before an answer came.
    #[error("{0}")]
    Stream(h2::Error),
}

impl CallError {
    /// Whether the backend cannot have processed the call: HTTP/2 never sent it, or the
    /// backend refused its stream (REFUSED_STREAM, or a GOAWAY whose last stream id left it
    /// out) — the cases HTTP/2 itself says are safe to send again.
    pub(crate) fn never_processed(&self) -> bool {
        match self {
            Self::NotSent(_) => true,
            Self::Stream(error) => {
                error.reason() == Some(h2::Reason::REFUSED_STREAM)
                    || error.is_go_away() && error.is_remote()
            }
        }
    }
}

/// Future<Output = ()>: copies a request body onto its stream, reading the next frame only
/// once the stream has window for more (so a client streaming faster than the backend reads
/// is held back by flow control, not buffered here). The first frame goes at once, window or
/// not: it is already in memory, and a unary request is then sent without waiting.
struct Pipe {
    body: Body,
    stream: SendStream<Bytes>,
    sent_any: bool,
    /// Ends (its sender dropped) when nobody waits for the answer any more.
    cancelled: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Pipe {
    fn new(body: Body, stream: SendStream<Bytes>) -> Self {
        Self {
            body,
            stream,
            sent_any: false,
            cancelled: None,
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), h2::Error>> {
        loop {
            if let Some(cancelled) = self.cancelled.as_mut()
                && Pin::new(cancelled).poll(cx).is_ready()
            {
                self.stream.send_reset(h2::Reason::CANCEL);
                return Poll::Ready(Ok(()));
            }
            if self.sent_any {
                self.stream.reserve_capacity(1);
                if self.stream.capacity() == 0 {
                    loop {
                        match ready!(self.stream.poll_capacity(cx)) {
                            Some(Ok(0)) => {}
                            Some(Ok(_)) => break,
                            Some(Err(error)) => return Poll::Ready(Err(error)),
                            // The stream is no longer open for sending: reset, or done.
                            None => return Poll::Ready(Ok(())),
                        }
                    }
                } else if let Poll::Ready(reason) = self.stream.poll_reset(cx)? {
                    return Poll::Ready(Err(reason.into()));
                }
            }
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(_)) => {
                    // The caller's request broke: the backend must not take it as whole.
                    self.stream.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(Ok(()));
                }
                None => return Poll::Ready(self.stream.send_data(Bytes::new(), true)),
            };
            self.sent_any = true;
            match frame.into_data() {
                Ok(data) => {
                    let last = self.body.is_end_stream();
                    self.stream.send_data(data, last)?;
                    if last {
                        return Poll::Ready(Ok(()));
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return Poll::Ready(self.stream.send_trailers(trailers));
                    }
                }
            }
        }
    }
}

impl Future for Pipe {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match ready!(self.poll_send(cx)) {
            Ok(()) => {}
            // The stream was reset or the connection lost: the answer reports it.
            Err(error) => tracing::debug!(%error, "request body not sent whole"),
        }
        Poll::Ready(())
    }
}

/// An answer's body, read off its stream; the window it used is given back as each frame is
/// handed on, so the backend sends more only as the caller takes it.
struct Answer<G> {
    incoming: Incoming,
    data_done: bool,
    done: bool,
    _guard: G,
}

impl<G> Answer<G> {
    fn new(incoming: Incoming, guard: G) -> Self {
        let done = incoming.recv.is_end_stream();
        Self {
            incoming,
            data_done: false,
            done,
            _guard: guard,
        }
    }
}

impl<G: Unpin> http_body::Body for Answer<G> {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.data_done {
            match ready!(self.incoming.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self
                        .incoming
                        .recv
                        .flow_control()
                        .release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
                None => self.data_done = true,
            }
        }
        let trailers = ready!(self.incoming.recv.poll_trailers(cx));
        self.done = true;
        Poll::Ready(
            trailers
                .transpose()
                .map(|trailers| trailers.map(Frame::trailers)),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.incoming.recv.is_end_stream()
    }
}
