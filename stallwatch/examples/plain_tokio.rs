//! A plain tokio program with the detector: a background task, spawned with no wrapper at all, refreshes a cache
//! with a synchronous sleep (standing for a blocking call a library makes). The detector names the task's code and
//! why it is stuck; the program prints the stalls it saw as JSON on stdout and exits.
//!
//! `cargo run -p stallwatch --example plain_tokio`

use std::time::{Duration, Instant};

/// How long the refresh blocks its worker: ten times the threshold below.
const BLOCK: Duration = Duration::from_millis(100);

/// The mistake: a blocking call in an async task. Something runs after it, so the sleep is not a tail call and
/// this function keeps a frame of its own.
#[inline(never)]
fn refresh_cache() -> usize {
    std::thread::sleep(BLOCK);
    std::hint::black_box(42)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    // The three lines: a detector, a runtime builder, the detector's hooks on it.
    let detector = stallwatch::Detector::builder().threshold(Duration::from_millis(10)).build();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    detector.instrument(builder.worker_threads(2).enable_all(), "plain-tokio");
    let runtime = builder.build()?;
    runtime.block_on(async {
        tokio::spawn(async { refresh_cache() }).await?;
        Ok::<_, tokio::task::JoinError>(())
    })?;
    // The watchdog sees the stall end a tick after the task returns.
    let until = Instant::now() + Duration::from_secs(5);
    while detector.recent().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("{}", serde_json::to_string(&detector.recent())?);
    Ok(())
}
