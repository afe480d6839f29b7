//! Admission as a layer of a server's request path (see [`super`] for why the request path, below the decoding
//! of the message, and not in front of the routes).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::Status;

use super::Admission;

/// Admits each call or refuses it at once with `RESOURCE_EXHAUSTED`; the slot is held until the call ends, and a
/// successful call's latency is a sample for an adaptive limit.
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

impl<S, Req> tower::Service<Req> for Admit<S>
where
    S: tower::Service<Req, Error = Status>,
    S::Response: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Status>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let admitted = match self.admission.try_admit(self.flag) {
            Ok(admitted) => admitted,
            Err(refused) => return Box::pin(std::future::ready(Err(refused))),
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            // Only a success's latency says something about queueing; dropping `admitted` frees the slot.
            if result.is_ok() {
                admitted.completed();
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;

    #[tokio::test]
    async fn refuses_past_the_limit_and_frees_the_slot_when_the_call_ends() {
        let admission = Admission::new(1);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let released = std::sync::Arc::new(std::sync::Mutex::new(Some(released)));
        let inner = service_fn(move |(): ()| {
            let wait = released.lock().expect("lock").take();
            async move {
                if let Some(wait) = wait {
                    let _ = wait.await;
                }
                Ok::<_, Status>(())
            }
        });
        let service = AdmissionLayer::new(admission.clone(), "--max-inflight").layer(inner);
        let first = tokio::spawn(service.clone().oneshot(()));
        while admission.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = service.clone().oneshot(()).await.expect_err("over the limit");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("(--max-inflight=1)"), "{}", refused.message());
        let _ = release.send(());
        first.await.expect("join").expect("admitted");
        assert_eq!(admission.in_flight(), 0);
        service.oneshot(()).await.expect("a slot again");
    }
}
