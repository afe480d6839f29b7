//! Admission as a layer of a server's request path (see [`super`] for why the request path, below the decoding
//! of the message, and not in front of the routes).

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Instant,
};

use tonic::Status;

use super::{Admission, Admitted};
use crate::{arrival::Arrival, connection, deadline::Deadline};

/// Where admission leaves a call's slot so that the reply, not the handler, releases it (in the request's
/// extensions; empty until the call is admitted and succeeds). Put there by the stream's layer
/// ([`crate::stream::StreamBoundsLayer`]), whose reply body releases it once the reply has been sent or dropped.
#[derive(Debug, Clone, Default)]
pub struct ReplyHold(Arc<Mutex<Option<Admitted>>>);

impl ReplyHold {
    /// Keeps `admitted` until the reply has been sent or dropped.
    pub fn keep(&self, admitted: Admitted) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(admitted);
    }

    /// Frees the slot, if it holds one.
    pub(crate) fn release(&self) {
        drop(self.0.lock().unwrap_or_else(PoisonError::into_inner).take());
    }
}

/// Admits each call or refuses it at once with `RESOURCE_EXHAUSTED`, or, when every slot is taken and its
/// connection holds fewer than its fair share, lets it wait for the next slot freed (see [`super::fair_share`]);
/// the slot is held until the call's reply has been sent (or, without a [`ReplyHold`], until the call ends), and a
/// successful call's latency is a sample for an adaptive limit. A call already past its deadline is answered
/// `DEADLINE_EXCEEDED` without taking a slot, and one whose client reset its stream is dropped before it starts.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    admission: Admission,
    /// The setting that bounds the limit, named in refusals (`--max-inflight`).
    flag: &'static str,
}

impl AdmissionLayer {
    /// Admission through `admission`, naming `flag` in refusals.
    pub fn new(admission: Admission, flag: &'static str) -> Self {
        Self { admission, flag }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit { inner, admission: self.admission.clone(), flag: self.flag }
    }
}

/// The service [`AdmissionLayer`] wraps.
#[derive(Debug, Clone)]
pub struct Admit<S> {
    inner: S,
    admission: Admission,
    flag: &'static str,
}

impl<S, T> tower::Service<tonic::Request<T>> for Admit<S>
where
    S: tower::Service<tonic::Request<T>, Error = Status> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Future: Send + 'static,
    T: Send + 'static,
{
    type Response = S::Response;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Status>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::Request<T>) -> Self::Future {
        // The clone is ready too (tower's contract: `inner` was polled ready, so it is the one called).
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let (admission, flag) = (self.admission.clone(), self.flag);
        Box::pin(async move {
            let deadline = Deadline::of(&request);
            let arrived = Arrival::of(request.extensions());
            expired(deadline, arrived)?;
            // One turn of the scheduler before any work: hyper checks a stream for a reset from its client each
            // time the call is pending, and drops the call if it was reset (a client that gave up while the call
            // queued). Without it the first poll would run the job before hyper ever looked.
            tokio::task::yield_now().await;
            expired(deadline, arrived)?;
            let peer = connection::peer(request.extensions());
            let admitted = admission.admit(flag, peer, deadline.map(tokio::time::Instant::from_std)).await?;
            let hold = request.extensions().get::<ReplyHold>().cloned();
            let result = { ready }.call(request).await;
            if result.is_ok() {
                // Only a success's latency says something about queueing.
                admitted.completed();
                // The reply, not this future, frees the slot, once it has been sent.
                if let Some(hold) = hold {
                    hold.keep(admitted);
                }
            }
            result
        })
    }
}

/// `DEADLINE_EXCEEDED` if `deadline` has passed: the call waited out its budget before it could start.
#[allow(clippy::result_large_err)] // tonic::Status is what handlers return.
fn expired(deadline: Option<Instant>, arrived: Instant) -> Result<(), Status> {
    match deadline {
        Some(at) if Instant::now() >= at => Err(Status::deadline_exceeded(format!(
            "deadline exceeded before the call could start (it waited {:?} since it arrived)",
            arrived.elapsed()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::{Layer, ServiceExt, service_fn};

    use super::*;

    #[tokio::test]
    async fn refuses_past_the_limit_and_frees_the_slot_when_the_call_ends() {
        let admission = Admission::new(1);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let released = std::sync::Arc::new(std::sync::Mutex::new(Some(released)));
        let inner = service_fn(move |_: tonic::Request<()>| {
            let wait = released.lock().expect("lock").take();
            async move {
                if let Some(wait) = wait {
                    let _ = wait.await;
                }
                Ok::<_, Status>(())
            }
        });
        let service = AdmissionLayer::new(admission.clone(), "--max-inflight").layer(inner);
        let first = tokio::spawn(service.clone().oneshot(tonic::Request::new(())));
        while admission.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = service.clone().oneshot(tonic::Request::new(())).await.expect_err("over the limit");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("(--max-inflight=1)"), "{}", refused.message());
        let _ = release.send(());
        first.await.expect("join").expect("admitted");
        assert_eq!(admission.in_flight(), 0);
        service.oneshot(tonic::Request::new(())).await.expect("a slot again");
    }

    #[tokio::test]
    async fn an_expired_call_never_starts_and_a_held_reply_keeps_the_slot() {
        let admission = Admission::new(1);
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&started);
        let inner = service_fn(move |_: tonic::Request<()>| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Ok::<_, Status>(()) }
        });
        let service = AdmissionLayer::new(admission.clone(), "--max-inflight").layer(inner);
        let mut late = tonic::Request::new(());
        late.extensions_mut().insert(Deadline(Instant::now() - Duration::from_millis(1)));
        let refused = service.clone().oneshot(late).await.expect_err("expired");
        assert_eq!(refused.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(started.load(std::sync::atomic::Ordering::Relaxed), 0, "the job never started");
        let hold = ReplyHold::default();
        let mut held = tonic::Request::new(());
        held.extensions_mut().insert(hold.clone());
        service.oneshot(held).await.expect("admitted");
        assert_eq!(admission.in_flight(), 1, "the reply holds the slot");
        drop(hold);
        assert_eq!(admission.in_flight(), 0, "freed with the reply");
    }
}
