//! One timer for every reply of a server: drops a reply whose client has left it unread for `--send-timeout`.
//!
//! A reply with a shut HTTP/2 window is never polled, so its timeout must be kept from outside the body. A task and
//! a timer per reply did that at the price of a spawn, a timer registration and an abort per call, on every call,
//! although nearly every reply is taken at once. Here a reply only joins a list (a lock and a slab insert, and a
//! removal when it is dropped), and one sweeper task per server checks the list when the oldest deadline it knows
//! of comes due.
//!
//! The sweeper never sleeps longer than `--send-timeout` after its last check. A reply starts waiting (joins, or
//! hands a frame over) no earlier than that check, so its deadline is no earlier than the sweeper's next wake-up:
//! every reply is dropped at its deadline, to the timer's millisecond, without waking the sweeper when it joins.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use slab::Slab;
use tokio::{task::AbortHandle, time::Instant};
use tonic::{body::Body, codegen::Bytes};

use crate::admission::ReplyHold;

/// The replies of one server not yet sent in full, and the sweeper that drops those left unread.
#[derive(Debug)]
pub struct SendWatch {
    send_timeout: Duration,
    /// Every live reply, by the key it removes itself with when dropped.
    replies: Mutex<Slab<Arc<Mutex<Sending>>>>,
    /// Stopped when the last layer and reply holding the watch are gone.
    sweeper: Mutex<Option<AbortHandle>>,
}

/// What a reply body and the sweeper share.
#[derive(Debug)]
pub(super) struct Sending {
    /// The reply not yet handed over (`None` once it ended or was dropped).
    pub(super) body: Option<Body>,
    /// The part of a large data frame not yet handed over.
    pub(super) rest: Bytes,
    /// The call's admission slot.
    hold: Option<ReplyHold>,
    /// Since when HTTP/2 has had a frame from us without asking for the next one (`None` while the reply itself has
    /// nothing to give, as a health watch between changes: that is not the client's doing).
    pub(super) waiting_since: Option<Instant>,
    /// The sweeper dropped the reply: the stream is to be reset.
    pub(super) expired: bool,
}

impl Sending {
    /// Drops what is left of the reply and frees the slot.
    pub(super) fn finish(&mut self) {
        self.body = None;
        self.rest = Bytes::new();
        if let Some(hold) = self.hold.take() {
            hold.release();
        }
        self.waiting_since = None;
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A reply's place in its server's [`SendWatch`]; leaves it when dropped.
#[derive(Debug)]
pub(super) struct Watched {
    watch: Arc<SendWatch>,
    key: usize,
    pub(super) sending: Arc<Mutex<Sending>>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        lock(&self.sending).finish();
        lock(&self.watch.replies).try_remove(self.key);
    }
}

impl SendWatch {
    /// A watch dropping replies unread for `send_timeout`; starts its sweeper on the current runtime.
    pub fn new(send_timeout: Duration) -> Arc<Self> {
        let watch = Arc::new(Self { send_timeout, replies: Mutex::new(Slab::new()), sweeper: Mutex::new(None) });
        let sweeper = tokio::spawn(sweep(Arc::downgrade(&watch), send_timeout)).abort_handle();
        *lock(&watch.sweeper) = Some(sweeper);
        watch
    }

    /// Watches `body` (holding `hold`): from now on, it is dropped once unread for `--send-timeout`.
    pub(super) fn watch(self: &Arc<Self>, body: Body, hold: ReplyHold) -> Watched {
        let sending = Arc::new(Mutex::new(Sending {
            body: Some(body),
            rest: Bytes::new(),
            hold: Some(hold),
            // hyper has not asked for a first frame yet: a shut window from the start counts.
            waiting_since: Some(Instant::now()),
            expired: false,
        }));
        let key = lock(&self.replies).insert(Arc::clone(&sending));
        Watched { watch: Arc::clone(self), key, sending }
    }

    /// Drops every reply unread for `--send-timeout` at `now`; when the next one may come due.
    fn expire(&self, now: Instant) -> Instant {
        // Copied out, so that replies come and go while their bodies are dropped here.
        let replies: Vec<_> = lock(&self.replies).iter().map(|(_, sending)| Arc::clone(sending)).collect();
        let mut next = now + self.send_timeout;
        for sending in replies {
            let mut sending = lock(&sending);
            match sending.waiting_since {
                Some(since) if now.duration_since(since) >= self.send_timeout => {
                    tracing::info!(
                        send_timeout = ?self.send_timeout,
                        "reply dropped: its client did not read it within --send-timeout"
                    );
                    sending.finish();
                    sending.expired = true;
                }
                Some(since) => next = next.min(since + self.send_timeout),
                None => {}
            }
        }
        next
    }
}

impl Drop for SendWatch {
    fn drop(&mut self) {
        if let Some(sweeper) = lock(&self.sweeper).take() {
            sweeper.abort();
        }
    }
}

/// The sweeper: checks the watch's replies when the earliest deadline it knows of comes, at least every
/// `send_timeout` (see the module docs for why that is enough).
async fn sweep(watch: Weak<SendWatch>, send_timeout: Duration) {
    let mut check_at = Instant::now() + send_timeout;
    loop {
        tokio::time::sleep_until(check_at).await;
        let Some(watch) = watch.upgrade() else { return };
        check_at = watch.expire(Instant::now());
    }
}
