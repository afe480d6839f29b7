//! The request body of a stream, which must bring its first gRPC message within `--request-read-timeout`.
//!
//! Only the first message is timed: it is the whole request of every unary and server-streaming call, and a
//! client stream (reflection) that has sent one message is a client that speaks; its later silences are its own.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Buf;
use http_body::Frame;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tonic::{Status, body::Body, codegen::Bytes};

/// A gRPC message's frame header: a compression flag and a big-endian 32-bit length.
const MESSAGE_HEADER: usize = 5;

pin_project! {
    /// A request body failing with `DEADLINE_EXCEEDED` if its first message has not arrived in full by its deadline.
    pub(super) struct RequestBody {
        #[pin]
        inner: Body,
        // Running until the first message has arrived (or the body ended); `None` afterwards.
        #[pin]
        due: Option<Sleep>,
        timeout: Duration,
        // The first bytes received, up to a message header, to learn the first message's length.
        header: Header,
        // Bytes of the first message (header included) still to come, once its header is known.
        missing: Option<usize>,
    }
}

impl RequestBody {
    /// `inner`, whose first message must have arrived `timeout` after `arrival` (the stream's).
    pub(super) fn new(inner: Body, arrival: std::time::Instant, timeout: Duration) -> Self {
        Self {
            inner,
            due: Some(tokio::time::sleep_until((arrival + timeout).into())),
            timeout,
            header: Header::default(),
            missing: None,
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if this.due.is_some() => {
                if let Some(data) = frame.data_ref()
                    && first_message_complete(this.header, this.missing, data.clone())
                {
                    this.due.set(None);
                }
            }
            Poll::Ready(_) => this.due.set(None),
            Poll::Pending => {
                if let Some(due) = this.due.as_mut().as_pin_mut()
                    && due.poll(cx).is_ready()
                {
                    this.due.set(None);
                    // Not CANCELLED: tonic reads a cancelled request body as one that ended, and answers INTERNAL.
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                        "the request message did not arrive within {:?} (--request-read-timeout)",
                        this.timeout
                    )))));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The first message's header as far as it has arrived (in place: no allocation per request).
#[derive(Debug, Default)]
struct Header {
    bytes: [u8; MESSAGE_HEADER],
    len: usize,
}

/// Counts `data` into the first message; true once it has arrived in full.
fn first_message_complete(header: &mut Header, missing: &mut Option<usize>, mut data: Bytes) -> bool {
    if missing.is_none() {
        let take = (MESSAGE_HEADER - header.len).min(data.len());
        header.bytes[header.len..header.len + take].copy_from_slice(&data[..take]);
        header.len += take;
        data.advance(take);
        if header.len < MESSAGE_HEADER {
            return false;
        }
        let length = u32::from_be_bytes([header.bytes[1], header.bytes[2], header.bytes[3], header.bytes[4]]) as usize;
        *missing = Some(length);
    }
    let left = missing.get_or_insert(0);
    *left = left.saturating_sub(data.len());
    *left == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_is_complete_once_its_length_has_arrived() {
        let (mut header, mut missing) = (Header::default(), None);
        assert!(!first_message_complete(&mut header, &mut missing, Bytes::from_static(&[0, 0, 0])));
        assert!(!first_message_complete(&mut header, &mut missing, Bytes::from_static(&[0, 3, 1])));
        assert!(first_message_complete(&mut header, &mut missing, Bytes::from_static(&[2, 3, 9, 9])));
        let (mut header, mut missing) = (Header::default(), None);
        assert!(first_message_complete(&mut header, &mut missing, Bytes::from_static(&[0, 0, 0, 0, 0])));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_comes_is_cancelled_after_the_timeout() {
        use http_body_util::BodyExt;
        let never = Body::new(http_body_util::StreamBody::new(tokio_stream::pending::<Result<Frame<Bytes>, Status>>()));
        let mut body =
            std::pin::pin!(RequestBody::new(never, tokio::time::Instant::now().into_std(), Duration::from_secs(10)));
        let started = tokio::time::Instant::now();
        let error = body.frame().await.expect("a frame").expect_err("timed out");
        assert_eq!(error.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
