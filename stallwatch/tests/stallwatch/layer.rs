//! The tower layer: a stall is named by the request whose poll holds the worker (path, the mode and size the
//! handler set, trace id); polls that yield are no stalls however long the call; a layer that is off passes
//! requests through untouched.

use std::time::{Duration, Instant};

use stallwatch::{Detector, StallLayer, StallTag};
use tower::{Layer, Service, ServiceExt};

const THRESHOLD: Duration = Duration::from_millis(10);
/// Ten thresholds: long enough that a loaded machine cannot make it look short.
const BLOCK: Duration = Duration::from_millis(100);

/// A detector watching the current-thread runtime the test runs on.
fn watching() -> Detector {
    let detector = Detector::builder().threshold(THRESHOLD).lines_per_second(0).build();
    detector.watch_current("test");
    detector
}

fn request(path: &str) -> http::Request<()> {
    http::Request::builder()
        .uri(path)
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .body(())
        .expect("request")
}

/// Waits for the first stall to end.
async fn first_stall(detector: &Detector) -> stallwatch::StallReport {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(stall) = detector.recent().into_iter().next() {
            return stall;
        }
        assert!(Instant::now() < until, "no stall reported");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_blocking_poll_is_named_by_its_request_and_the_tag_its_handler_set() {
    let detector = watching();
    let mut service = detector.layer().layer(tower::service_fn(|request: http::Request<()>| async move {
        let tag = request.extensions().get::<StallTag>().expect("the layer's tag");
        tag.set("inline", Some(7));
        tag.set("ignored: the first set wins", None);
        std::thread::sleep(BLOCK);
        Ok::<_, std::convert::Infallible>(())
    }));
    service.ready().await.expect("ready").call(request("/pkg.Svc/Block")).await.expect("ok");
    let stall = first_stall(&detector).await;
    assert!(stall.length_ms >= THRESHOLD, "{stall:?}");
    let call = stall.call.expect("named by its request");
    assert_eq!(call.method, "pkg.Svc/Block");
    assert_eq!(call.mode.as_deref(), Some("inline"));
    assert_eq!(call.n, Some(7));
    assert_eq!(call.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
}

#[tokio::test]
async fn polls_that_yield_are_not_stalls_however_long_the_call() {
    let detector = watching();
    let service = detector.layer().layer(tower::service_fn(|_: http::Request<()>| async {
        tokio::time::sleep(BLOCK).await;
        Ok::<_, std::convert::Infallible>(())
    }));
    service.oneshot(request("/pkg.Svc/Sleep")).await.expect("ok");
    // A stall would be over and reported within a tick of the call's end; wait three thresholds more.
    tokio::time::sleep(THRESHOLD * 3).await;
    assert!(detector.recent().is_empty(), "{:?}", detector.recent());
}

#[tokio::test]
async fn a_layer_that_is_off_passes_requests_untouched() {
    let tagged = StallLayer::off()
        .layer(tower::service_fn(|request: http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(request.extensions().get::<StallTag>().is_some())
        }))
        .oneshot(request("/pkg.Svc/Off"))
        .await
        .expect("ok");
    assert!(!tagged, "no tag when off");
}
