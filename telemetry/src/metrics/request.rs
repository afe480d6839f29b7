//! The request metrics (`offload_requests_total`, `offload_request_duration_seconds`) as a layer of a server's request
//! path, so no handler counts its own calls.
//!
//! Each call is counted once, when it ends, however it ends (refused at admission, invalid, failed upstream),
//! with its method, its gRPC status and its mode: what the reply says it ran in, or for a failed call what it
//! asked for. The server says how to read those from its messages ([`Labels`]).
//!
//! A call's two series are found in a cache of the thread it ends on ([`with_series`]), not in the metric
//! families: a family lookup hashes the three labels with SipHash under a lock both workers share, and a call made
//! two of them (about a thousand instructions and two contended cache lines, on a call whose whole server costs
//! about seventy thousand; `docs/log/overhead-2026.md`).

use std::{
    cell::RefCell,
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use tonic::{Request, Response, Status};

use super::{Metrics, RequestLabels};

/// Which metrics and label set a cached pair of series belongs to: the metrics' id and the labels by address
/// (each is a `&'static str` from a small fixed set; one name at two addresses makes two entries for the same
/// series, which is only a few bytes more).
type SeriesKey = (u64, usize, usize, usize);

thread_local! {
    /// Per thread, the request series it has counted into. Bounded by the label sets a server has (methods ×
    /// modes × codes, a few hundred at most), and by the servers a process starts (one, but several in tests).
    static SERIES: RefCell<HashMap<SeriesKey, (Counter, Histogram), rustc_hash::FxBuildHasher>> =
        RefCell::new(HashMap::default());
}

/// Calls `observe` with the `offload_requests_total` and `offload_request_duration_seconds` series of `labels` in
/// `metrics`, created on their first call.
pub(super) fn with_series(metrics: &Metrics, labels: RequestLabels, observe: impl FnOnce(&(Counter, Histogram))) {
    let address = |label: &'static str| label.as_ptr() as usize;
    let key = (metrics.id, address(labels.method), address(labels.mode), address(labels.code));
    SERIES.with(|series| {
        let mut series = series.borrow_mut();
        let pair = series.entry(key).or_insert_with(|| {
            (
                metrics.requests.get_or_create_owned(&labels),
                metrics.request_duration_seconds.get_or_create_owned(&labels),
            )
        });
        observe(pair);
    });
}

/// How a server's calls are labelled: read from the request before the call, and from the reply after it.
pub trait Labels<Req, Resp>: Clone + Send + Sync + 'static {
    /// The method called (`Factorial`).
    fn method(&self, request: &Req) -> &'static str;
    /// The mode label of a call that fails: what the request asked for (`unknown` if nothing valid).
    fn asked(&self, request: &Req) -> &'static str;
    /// The mode label of a call that succeeds: what the reply says it ran in.
    fn served(&self, reply: &Resp) -> &'static str;
}

/// Counts and times every call through it in [`Metrics::observe_request`].
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer<L> {
    metrics: Arc<Metrics>,
    labels: L,
}

impl<L> RequestMetricsLayer<L> {
    /// Calls counted in `metrics`, labelled by `labels`.
    pub fn new(metrics: Metrics, labels: L) -> Self {
        Self { metrics: Arc::new(metrics), labels }
    }
}

impl<S, L: Clone> tower::Layer<S> for RequestMetricsLayer<L> {
    type Service = RequestMetrics<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner, metrics: self.metrics.clone(), labels: self.labels.clone() }
    }
}

/// The service [`RequestMetricsLayer`] wraps.
#[derive(Debug, Clone)]
pub struct RequestMetrics<S, L> {
    inner: S,
    /// One reference per call, not a copy of every metric's handle.
    metrics: Arc<Metrics>,
    labels: L,
}

impl<S, L, Req, Resp> tower::Service<Request<Req>> for RequestMetrics<S, L>
where
    S: tower::Service<Request<Req>, Response = Response<Resp>, Error = Status>,
    S::Future: Send + 'static,
    L: Labels<Req, Resp>,
{
    type Response = Response<Resp>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Resp>, Status>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let started = Instant::now();
        let (method, asked) = (self.labels.method(request.get_ref()), self.labels.asked(request.get_ref()));
        let call = self.inner.call(request);
        let (metrics, labels) = (self.metrics.clone(), self.labels.clone());
        Box::pin(async move {
            let result = call.await;
            let (mode, code) = match &result {
                Ok(reply) => (labels.served(reply.get_ref()), tonic::Code::Ok),
                Err(status) => (asked, status.code()),
            };
            metrics.observe_request(method, mode, code, started.elapsed());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;

    /// Requests ask for a mode by name; replies name the mode they ran in.
    #[derive(Debug, Clone)]
    struct ByName;

    impl Labels<&'static str, &'static str> for ByName {
        fn method(&self, _: &&'static str) -> &'static str {
            "Factorial"
        }
        fn asked(&self, request: &&'static str) -> &'static str {
            request
        }
        fn served(&self, reply: &&'static str) -> &'static str {
            reply
        }
    }

    #[test]
    fn each_servers_calls_count_in_its_own_series() {
        let (first, second) = (Metrics::new("first"), Metrics::new("second"));
        // The same names at other addresses than the ones a server uses: one series still.
        let (method, mode) = (String::from("Factorial").leak(), String::from("inline").leak());
        for _ in 0..2 {
            first.observe_request("Factorial", "inline", tonic::Code::Ok, std::time::Duration::from_millis(1));
        }
        first.observe_request(method, mode, tonic::Code::Ok, std::time::Duration::from_millis(1));
        second.observe_request("Factorial", "inline", tonic::Code::Ok, std::time::Duration::from_millis(1));
        let line = |text: &str, server: &str| {
            let series =
                format!(r#"offload_requests_total{{server="{server}",method="Factorial",mode="inline",code="OK"}}"#);
            text.lines().find(|l| l.starts_with(&series)).map(str::to_owned)
        };
        assert_eq!(line(&first.encode(), "first").as_deref().and_then(|l| l.rsplit(' ').next()), Some("3"));
        assert_eq!(line(&second.encode(), "second").as_deref().and_then(|l| l.rsplit(' ').next()), Some("1"));
    }

    #[tokio::test]
    async fn successes_are_labelled_by_the_reply_failures_by_the_request() {
        let metrics = Metrics::new("test");
        let inner = service_fn(|request: Request<&'static str>| async move {
            match *request.get_ref() {
                "adaptive" => Ok(Response::new("inline")),
                _ => Err(Status::invalid_argument("no")),
            }
        });
        let service = RequestMetricsLayer::new(metrics.clone(), ByName).layer(inner);
        service.clone().oneshot(Request::new("adaptive")).await.expect("ok");
        service.oneshot(Request::new("rayon")).await.expect_err("refused");
        let text = metrics.encode();
        for line in [r#"mode="inline",code="OK""#, r#"mode="rayon",code="INVALID_ARGUMENT""#] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
