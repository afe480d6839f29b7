//! An axum server with the detector and its tower layer: the `/orders` handler takes a `std::sync::Mutex` that a
//! background thread holds for a while (a synchronous lock across slow work, the mistake). The detector names the
//! request, the handler's frame and the cause (`lock`). The example serves on 127.0.0.1:0, calls itself once over
//! HTTP/1.1, prints the stalls it saw as JSON on stdout and exits.
//!
//! `cargo run -p stallwatch --example axum_server`

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the background thread holds the lock: ten times the threshold below.
const HELD: Duration = Duration::from_millis(100);

/// The orders, behind a lock that slow work also holds.
type Orders = Arc<Mutex<Vec<u64>>>;

#[inline(never)]
fn count_orders(orders: &Mutex<Vec<u64>>) -> usize {
    let orders = orders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    std::hint::black_box(orders.len())
}

async fn orders(axum::extract::State(orders): axum::extract::State<Orders>) -> String {
    format!("{} orders\n", count_orders(&orders))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let detector = stallwatch::Detector::builder().threshold(Duration::from_millis(10)).build();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    detector.instrument(builder.worker_threads(2).enable_all(), "axum");
    let runtime = builder.build()?;
    let shared: Orders = Arc::default();
    let app = axum::Router::new()
        .route("/orders", axum::routing::get(orders))
        .with_state(Arc::clone(&shared))
        // Names the request behind a stall.
        .layer(detector.layer());
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        // The slow work that holds the lock, on a thread of its own.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let guard = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = held_tx.send(());
            std::thread::sleep(HELD);
            drop(guard);
        });
        held_rx.recv()?;
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"GET /orders HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n").await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        eprint!("{reply}");
        let _ = holder.join();
        server.abort();
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let until = Instant::now() + Duration::from_secs(5);
    while detector.recent().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("{}", serde_json::to_string(&detector.recent())?);
    Ok(())
}
