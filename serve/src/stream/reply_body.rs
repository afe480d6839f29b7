//! A reply body that holds its call's admission slot until it has been handed to HTTP/2 in full, and is dropped
//! when its client leaves it unread for `--send-timeout`.
//!
//! hyper asks a body for its next frame only when the stream has flow-control capacity for it. A client that
//! keeps its HTTP/2 window shut is therefore never asked for anything: nothing inside the body runs, so the
//! timeout is kept by a small watchdog task beside it, which drops the unsent reply and frees the slot. The stream
//! is reset the next time hyper asks for a frame (or ends with the connection).
//!
//! Large data frames (tonic encodes a whole message into one) are handed over in copies of at most
//! [`CHUNK_BYTES`]: hyper passes HTTP/2 all of a frame it is given, so a 1 MB frame would sit in HTTP/2's send
//! buffer, beyond the watchdog's reach, for as long as its client liked. Copied chunks leave the rest of the
//! message here, where the timeout can drop it.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Buf;
use http_body::Frame;
use tokio::task::AbortHandle;
use tonic::{Status, body::Body, codegen::Bytes};

use super::ReplyHold;

/// The most HTTP/2 is handed at once from one reply: what it may buffer beyond the client's window per stream.
/// 64 KiB is four default HTTP/2 frames (copying it costs a few microseconds).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// See the module docs.
pub struct ReplyBody {
    sending: Arc<Mutex<Sending>>,
    watchdog: AbortHandle,
}

impl std::fmt::Debug for ReplyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyBody").finish_non_exhaustive()
    }
}

/// What the body and its watchdog share.
struct Sending {
    /// The reply not yet handed over (`None` once it ended or was dropped).
    body: Option<Body>,
    /// The part of a large data frame not yet handed over.
    rest: Bytes,
    /// The call's admission slot.
    hold: Option<ReplyHold>,
    /// Since when HTTP/2 has had a frame from us without asking for the next one (`None` while the reply itself has
    /// nothing to give, as a health watch between changes: that is not the client's doing).
    waiting_since: Option<Instant>,
    /// The watchdog dropped the reply: the stream is to be reset.
    expired: bool,
}

impl Sending {
    /// Drops what is left of the reply and frees the slot.
    fn finish(&mut self) {
        self.body = None;
        self.rest = Bytes::new();
        if let Some(hold) = self.hold.take() {
            hold.release();
        }
        self.waiting_since = None;
    }
}

fn lock(sending: &Mutex<Sending>) -> MutexGuard<'_, Sending> {
    sending.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ReplyBody {
    /// `body`, holding `hold` until sent, dropped if unread for `send_timeout`. Starts the watchdog on the
    /// current runtime.
    pub fn new(body: Body, hold: ReplyHold, send_timeout: Duration) -> Self {
        let sending = Arc::new(Mutex::new(Sending {
            body: Some(body),
            rest: Bytes::new(),
            hold: Some(hold),
            // hyper has not asked for a first frame yet: a shut window from the start counts.
            waiting_since: Some(Instant::now()),
            expired: false,
        }));
        let watchdog = tokio::spawn(watch(Arc::downgrade(&sending), send_timeout)).abort_handle();
        Self { sending, watchdog }
    }
}

/// Drops the reply of `sending` once HTTP/2 has not asked for a frame for `send_timeout`.
async fn watch(sending: Weak<Mutex<Sending>>, send_timeout: Duration) {
    let mut check_at = Instant::now() + send_timeout;
    loop {
        tokio::time::sleep_until(check_at.into()).await;
        let Some(sending) = sending.upgrade() else { return };
        let mut sending = lock(&sending);
        let now = Instant::now();
        match sending.waiting_since {
            Some(since) if now.duration_since(since) >= send_timeout => {
                tracing::info!(?send_timeout, "reply dropped: its client did not read it within --send-timeout");
                sending.finish();
                sending.expired = true;
                return;
            }
            Some(since) => check_at = since + send_timeout,
            None if sending.body.is_none() => return,
            None => check_at = now + send_timeout,
        }
    }
}

impl Drop for ReplyBody {
    fn drop(&mut self) {
        self.watchdog.abort();
        lock(&self.sending).finish();
    }
}

impl http_body::Body for ReplyBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut sending = lock(&self.sending);
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
                self.watchdog.abort();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(status))) => {
                sending.finish();
                self.watchdog.abort();
                Poll::Ready(Some(Err(status)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let sending = lock(&self.sending);
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

    use super::*;
    use crate::admission::Admission;

    fn held_reply(bytes: usize, admission: &Admission) -> (Body, ReplyHold) {
        let hold = ReplyHold::default();
        hold.keep(admission.try_admit("--max-inflight").expect("a slot"));
        (Body::new(http_body_util::Full::new(Bytes::from(vec![7u8; bytes]))), hold)
    }

    #[tokio::test]
    async fn the_slot_is_held_until_the_reply_is_sent_in_chunks() {
        let admission = Admission::new(1);
        let (body, hold) = held_reply(3 * CHUNK_BYTES + 1, &admission);
        let mut reply = ReplyBody::new(body, hold, Duration::from_secs(30));
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
        let mut reply = ReplyBody::new(body, hold, Duration::from_secs(30));
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
        drop(ReplyBody::new(body, hold, Duration::from_secs(30)));
        assert_eq!(admission.in_flight(), 0);
    }
}
