//! The client's deadline, read from the `grpc-timeout` header.
//!
//! tonic's transport also enforces `grpc-timeout`, but it does so by dropping the handler and answering `CANCELLED`
//! ("Timeout expired"), which tells the client the wrong thing, and it cannot reach a kernel that blocks its thread
//! (`INLINE`, `BLOCK_IN_PLACE`). So handlers take the deadline themselves, pass it down to the job, and answer
//! `DEADLINE_EXCEEDED`. They aim [`EARLY`] before the transport's timer so that their answer is the one sent.
//!
//! [`DeadlineLayer`] reads it once, on top of a server's request path, and leaves it in the request's extensions
//! as a [`Deadline`]: every layer below and the handler answer by the same instant, and the gateway forwards it.
//! The timeout counts from the stream's [`Arrival`] (stamped as hyper accepted it), not from when the request path
//! got to run: a call that queued on a blocked runtime has used up that much of its budget, and admission answers
//! it at once if nothing is left.

use std::{
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tonic::metadata::MetadataMap;

use crate::arrival::Arrival;

/// How much earlier than the transport's own timer a handler gives up. tokio's timers have millisecond
/// granularity, so a deadline computed a few microseconds after the transport's can land one tick later and lose
/// the race; one millisecond ahead always wins it.
pub const EARLY: Duration = Duration::from_millis(1);

/// The `grpc-timeout` header's name.
pub const HEADER: &str = "grpc-timeout";

/// The instant by which the handler should answer, if the client set a timeout. Malformed headers are ignored,
/// as the transport ignores them.
pub fn from_metadata(metadata: &MetadataMap, now: Instant) -> Option<Instant> {
    // By a name made at compile time: a lookup by `&str` parses the name again on every call.
    const NAME: tonic::codegen::http::HeaderName = tonic::codegen::http::HeaderName::from_static(HEADER);
    let timeout = parse_timeout(metadata.as_ref().get(NAME)?.to_str().ok()?)?;
    Some(now + timeout.saturating_sub(EARLY))
}

/// The instant a call must be answered by, in its request's extensions (put there by [`DeadlineLayer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// The deadline of a request that came through a [`DeadlineLayer`], if it has one.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<Instant> {
        request.extensions().get::<Self>().map(|d| d.0)
    }
}

/// Puts each call's [`Deadline`] in its request's extensions, counted from the call's [`Arrival`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    /// Applied when the client set no deadline (`None`: the call has none).
    default: Option<Duration>,
}

impl DeadlineLayer {
    /// The client's deadline, if it set one.
    pub fn from_client() -> Self {
        Self { default: None }
    }

    /// The client's deadline or, if it set none, `default` from its arrival: no call may wait forever.
    pub fn or_after(default: Duration) -> Self {
        Self { default: Some(default) }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = WithDeadline<S>;

    fn layer(&self, inner: S) -> WithDeadline<S> {
        WithDeadline { inner, default: self.default }
    }
}

/// The service [`DeadlineLayer`] wraps.
#[derive(Debug, Clone)]
pub struct WithDeadline<S> {
    inner: S,
    default: Option<Duration>,
}

impl<S, T> tower::Service<tonic::Request<T>> for WithDeadline<S>
where
    S: tower::Service<tonic::Request<T>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: tonic::Request<T>) -> S::Future {
        let now = Arrival::of(request.extensions());
        let deadline = from_metadata(request.metadata(), now).or_else(|| self.default.map(|d| now + d));
        if let Some(at) = deadline {
            request.extensions_mut().insert(Deadline(at));
        }
        self.inner.call(request)
    }
}

/// Parses a `grpc-timeout` value: at most eight ASCII digits and a unit (`H M S m u n`), per the gRPC HTTP/2 spec.
pub fn parse_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Formats a duration as a `grpc-timeout` value in the finest unit that fits eight digits. It truncates, so the
/// receiver's timeout is never longer than the time the sender has left.
pub fn format_timeout(timeout: Duration) -> String {
    let nanos = timeout.as_nanos();
    for (unit, per) in [("n", 1u128), ("u", 1_000), ("m", 1_000_000), ("S", 1_000_000_000)] {
        let amount = nanos / per;
        if amount < 100_000_000 {
            return format!("{amount}{unit}");
        }
    }
    format!("{}M", (nanos / 60_000_000_000).min(99_999_999))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_garbage() {
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "S", "5", "5s", "-5S", "123456789S", "1.5S", "5 S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for d in [Duration::from_millis(1500), Duration::from_micros(3), Duration::from_secs(86_400)] {
            let back = parse_timeout(&format_timeout(d)).expect("valid");
            assert!(back <= d && d - back < Duration::from_secs(1), "{d:?} -> {back:?}");
        }
    }

    #[test]
    fn deadline_is_slightly_early() {
        let mut md = MetadataMap::new();
        md.insert(HEADER, "100m".parse().expect("ascii"));
        let now = Instant::now();
        assert_eq!(from_metadata(&md, now), Some(now + Duration::from_millis(99)));
        assert_eq!(from_metadata(&MetadataMap::new(), now), None);
    }

    #[tokio::test]
    async fn the_layer_leaves_the_deadline_or_the_default_in_the_extensions() {
        use tower::{Layer, ServiceExt, service_fn};
        let echo = service_fn(|request: tonic::Request<()>| async move { Ok::<_, ()>(Deadline::of(&request)) });
        let mut timed = tonic::Request::new(());
        timed.metadata_mut().insert(HEADER, "5S".parse().expect("ascii"));
        let before = Instant::now();
        let read = DeadlineLayer::from_client().layer(echo).oneshot(timed).await.expect("echo");
        assert!(read.is_some_and(|at| at > before + Duration::from_secs(4)), "{read:?}");
        let none = DeadlineLayer::from_client().layer(echo).oneshot(tonic::Request::new(())).await.expect("echo");
        assert_eq!(none, None);
        let default = DeadlineLayer::or_after(Duration::from_secs(60)).layer(echo);
        let read = default.oneshot(tonic::Request::new(())).await.expect("echo");
        assert!(read.is_some_and(|at| at > before + Duration::from_secs(59)), "{read:?}");
    }

    #[tokio::test]
    async fn the_deadline_counts_from_the_arrival() {
        use tower::{Layer, ServiceExt, service_fn};
        let echo = service_fn(|request: tonic::Request<()>| async move { Ok::<_, ()>(Deadline::of(&request)) });
        let arrived = Instant::now() - Duration::from_millis(500);
        let mut queued = tonic::Request::new(());
        queued.metadata_mut().insert(HEADER, "100m".parse().expect("ascii"));
        queued.extensions_mut().insert(Arrival(arrived));
        let read = DeadlineLayer::from_client().layer(echo).oneshot(queued).await.expect("echo");
        assert_eq!(read, Some(arrived + Duration::from_millis(99)), "already past: it waited 500 ms of its 100");
    }
}
