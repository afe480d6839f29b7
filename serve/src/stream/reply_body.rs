//! A reply body that holds its call's admission slot until it has been handed to HTTP/2 in full, and is dropped
//! when its client leaves it unread for `--send-timeout`.
//!
//! hyper asks a body for its next frame only when the stream has flow-control capacity for it. A client that
//! keeps its HTTP/2 window shut is therefore never asked for anything: nothing inside the body runs, so the
//! timeout is kept from outside, by the server's [`SendWatch`], which drops the unsent reply and frees the slot. The
//! stream is reset the next time hyper asks for a frame (or ends with the connection).
//!
//! Large data frames (tonic encodes a whole message into one) are handed over in copies of at most
//! [`CHUNK_BYTES`]: hyper passes HTTP/2 all of a frame it is given, so a 1 MB frame would sit in HTTP/2's send
//! buffer, beyond the watch's reach, for as long as its client liked. Copied chunks leave the rest of the
//! message here, where the timeout can drop it.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Buf;
use http_body::Frame;
use tokio::time::Instant;
use tonic::{Status, body::Body, codegen::Bytes};

use super::send_watch::{SendWatch, Watched, lock};
use crate::admission::ReplyHold;

/// The most HTTP/2 is handed at once from one reply: what it may buffer beyond the client's window per stream.
/// 64 KiB is four default HTTP/2 frames (copying it costs a few microseconds).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// See the module docs.
#[derive(Debug)]
pub struct ReplyBody {
    watched: Watched,
}

impl ReplyBody {
    /// `body`, holding `hold` until sent, dropped by `watch` if unread for its `--send-timeout`.
    pub fn new(body: Body, hold: ReplyHold, watch: &Arc<SendWatch>) -> Self {
        Self { watched: watch.watch(body, hold) }
    }
}

impl http_body::Body for ReplyBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut sending = lock(&self.watched.sending);
        if sending.expired {
            return Poll::Ready(Some(Err(Status::deadline_exceeded("reply not read within --send-timeout"))));
        }
        sending.waiting_since = None;
        if !sending.rest.is_empty() {
            let chunk = take_chunk(&mut sending.rest);
            sending.waiting_since = Some(Instant::now());
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let Some(body) = sending.body.as_mut() else { return Poll::Ready(None) };
        match Pin::new(body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                sending.waiting_since = Some(Instant::now());
                let frame = match frame.into_data() {
                    Ok(data) if data.len() > CHUNK_BYTES => {
                        sending.rest = data;
                        Frame::data(take_chunk(&mut sending.rest))
                    }
                    Ok(data) => Frame::data(data),
                    Err(trailers) => trailers,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                sending.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(status))) => {
                sending.finish();
                Poll::Ready(Some(Err(status)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let sending = lock(&self.watched.sending);
        !sending.expired && sending.rest.is_empty() && sending.body.as_ref().is_none_or(Body::is_end_stream)
    }
}

/// The next chunk of `rest`, copied so that HTTP/2 holds no reference to the rest of the message.
fn take_chunk(rest: &mut Bytes) -> Bytes {
    let n = rest.len().min(CHUNK_BYTES);
    let chunk = Bytes::copy_from_slice(&rest[..n]);
    rest.advance(n);
    chunk
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use std::time::Duration;

    use super::*;
    use crate::admission::Admission;

    const SEND_TIMEOUT: Duration = Duration::from_secs(30);

    fn held_reply(bytes: usize, admission: &Admission) -> (Body, ReplyHold) {
        let hold = ReplyHold::default();
        hold.keep(admission.try_admit("--max-inflight").expect("a slot"));
        (Body::new(http_body_util::Full::new(Bytes::from(vec![7u8; bytes]))), hold)
    }

    #[tokio::test]
    async fn the_slot_is_held_until_the_reply_is_sent_in_chunks() {
        let admission = Admission::new(1);
        let (body, hold) = held_reply(3 * CHUNK_BYTES + 1, &admission);
        let mut reply = ReplyBody::new(body, hold, &SendWatch::new(SEND_TIMEOUT));
        let mut sizes = Vec::new();
        while let Some(frame) = reply.frame().await {
            assert_eq!(admission.in_flight(), 1, "held while sending");
            sizes.push(frame.expect("data").into_data().expect("data").len());
        }
        assert_eq!(sizes, [CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES, 1]);
        assert_eq!(admission.in_flight(), 0, "freed once sent");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unread_reply_is_dropped_with_its_slot_after_the_send_timeout() {
        let admission = Admission::new(1);
        let (body, hold) = held_reply(CHUNK_BYTES * 2, &admission);
        let mut reply = ReplyBody::new(body, hold, &SendWatch::new(SEND_TIMEOUT));
        reply.frame().await.expect("a frame").expect("data");
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(admission.in_flight(), 1, "still within the timeout");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(admission.in_flight(), 0, "dropped after the timeout");
        let error = reply.frame().await.expect("an error").expect_err("reset");
        assert_eq!(error.code(), tonic::Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn dropping_the_reply_frees_the_slot() {
        let admission = Admission::new(1);
        let (body, hold) = held_reply(10, &admission);
        drop(ReplyBody::new(body, hold, &SendWatch::new(SEND_TIMEOUT)));
        assert_eq!(admission.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn each_reply_is_dropped_at_its_own_deadline_counted_from_its_last_progress() {
        let watch = SendWatch::new(SEND_TIMEOUT);
        let (early, late, reading) = (Admission::new(1), Admission::new(1), Admission::new(1));
        let (body, hold) = held_reply(10, &early);
        let _early = ReplyBody::new(body, hold, &watch);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (body, hold) = held_reply(10, &late);
        let _late = ReplyBody::new(body, hold, &watch);
        let (body, hold) = held_reply(CHUNK_BYTES * 4, &reading);
        let mut reading_reply = ReplyBody::new(body, hold, &watch);
        // 25 s between frames: never 30 s without progress.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(25)).await;
            reading_reply.frame().await.expect("a frame").expect("data");
        }
        // Now 85 s in: the first reply was dropped at 30 s, the second at 40 s, the reading one is still held.
        assert_eq!((early.in_flight(), late.in_flight(), reading.in_flight()), (0, 0, 1));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(reading.in_flight(), 1, "within the timeout of its last frame");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(reading.in_flight(), 0, "dropped 30 s after its last frame");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_joining_just_before_the_sweep_is_dropped_at_its_deadline_not_a_period_later() {
        let watch = SendWatch::new(SEND_TIMEOUT);
        let admission = Admission::new(1);
        tokio::time::sleep(Duration::from_secs(29)).await;
        let (body, hold) = held_reply(10, &admission);
        let _reply = ReplyBody::new(body, hold, &watch);
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(admission.in_flight(), 1, "still within the timeout");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(admission.in_flight(), 0, "dropped at 29 + 30 s, not at the sweep after that (60 s)");
    }
}
