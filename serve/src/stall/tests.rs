use std::sync::Mutex;

use tower::{Layer, Service, ServiceExt};

use super::*;

/// Long enough past the tests' threshold that a loaded machine cannot make it look short.
const BLOCK: Duration = Duration::from_millis(60);
const THRESHOLD: Duration = Duration::from_millis(10);

type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn layer(seen: &Seen) -> StallLayer {
    let seen = Arc::clone(seen);
    StallLayer::with_on_stall(THRESHOLD, move |stall| {
        assert!(stall.length >= THRESHOLD);
        seen.lock().expect("lock").push((stall.method.to_owned(), stall.mode.to_owned()));
    })
}

fn request(path: &str) -> http::Request<()> {
    http::Request::builder().uri(path).body(()).expect("request")
}

#[tokio::test]
async fn a_blocking_poll_is_a_stall_named_by_its_method_and_tag() {
    let seen = Seen::default();
    let mut service = layer(&seen).layer(tower::service_fn(|request: http::Request<()>| async move {
        let tag = request.extensions().get::<StallTag>().expect("the layer's tag");
        tag.set("inline", Some(7));
        tag.set("ignored: the first set wins", None);
        std::thread::sleep(BLOCK);
        Ok::<_, std::convert::Infallible>(())
    }));
    service.ready().await.expect("ready").call(request("/pkg.Svc/Block")).await.expect("ok");
    assert_eq!(*seen.lock().expect("lock"), [("Block".to_owned(), "inline".to_owned())]);
}

#[tokio::test]
async fn polls_that_yield_are_not_stalls_however_long_the_call() {
    let seen = Seen::default();
    let mut service = layer(&seen).layer(tower::service_fn(|_: http::Request<()>| async {
        tokio::time::sleep(BLOCK).await;
        Ok::<_, std::convert::Infallible>(())
    }));
    service.ready().await.expect("ready").call(request("/pkg.Svc/Sleep")).await.expect("ok");
    assert!(seen.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn an_untagged_stall_has_mode_unknown_and_zero_turns_the_detector_off() {
    let seen = Seen::default();
    let block = tower::service_fn(|request: http::Request<()>| async move {
        std::thread::sleep(BLOCK);
        Ok::<_, std::convert::Infallible>(request.extensions().get::<StallTag>().is_some())
    });
    let tagged = layer(&seen).layer(block).oneshot(request("/pkg.Svc/Untagged")).await.expect("ok");
    assert!(tagged);
    assert_eq!(*seen.lock().expect("lock"), [("Untagged".to_owned(), "unknown".to_owned())]);
    let off = StallLayer::new(Duration::ZERO).layer(block).oneshot(request("/pkg.Svc/Off")).await.expect("ok");
    assert!(!off, "no tag, no watchdog when off");
}

#[test]
fn each_live_thread_has_its_own_slot_and_name() {
    let here = threads::current();
    assert_eq!(threads::current(), here);
    let there = std::thread::Builder::new()
        .name("slot-test".to_owned())
        .spawn(|| (threads::current(), threads::name(threads::current())))
        .expect("spawn")
        .join()
        .expect("join");
    assert_ne!(there.0, here);
    assert!(there.1.starts_with("slot-test ("), "{}", there.1);
}

/// What the detector adds to a request that does not stall: registration, the tag, one timed poll. Run it
/// optimised: `cargo test --release -p offload-serve stall::tests::cost_per_request -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn cost_per_request() {
    /// Requests per measurement: enough for a stable mean, few enough to take a fraction of a second.
    const REQUESTS: u32 = 1_000_000;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let measure = |layer: StallLayer| {
        let mut service =
            layer.layer(tower::service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(()) }));
        runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..REQUESTS {
                service.call(request("/pkg.Svc/Trivial")).await.expect("ok");
            }
            started.elapsed() / REQUESTS
        })
    };
    for round in 0..3 {
        let off = measure(StallLayer::new(Duration::ZERO));
        let on = measure(StallLayer::new(DEFAULT_THRESHOLD));
        println!("round {round}: off {off:?}/request, on {on:?}/request, cost {:?}", on.saturating_sub(off));
    }
}
