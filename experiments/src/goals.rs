//! What the project expects of its own overheads, in one place: `compare` and `overhead` print every
//! measurement beside the goal it is held to, and say "met" or "NOT met" from these values only.

use std::time::Duration;

/// Throughput of compute called directly, at least this share of a bare tonic echo's under the same load.
pub const COMPUTE_OVER_ECHO_THROUGHPUT: f64 = 0.85;
/// Throughput through the gateway, at least this share of compute called directly.
pub const HOP_THROUGHPUT: f64 = 0.45;
/// One call at a time, p50 through the gateway at most this multiple of direct (2.0: one more round trip).
pub const HOP_SERIAL_P50: f64 = 2.2;
/// Under heavy load offloaded to the pool (`RAYON`, `ADAPTIVE`), the light probe's p99 at most this above idle…
pub const OFFLOADED_PROBE_P99_OVER_IDLE: Duration = Duration::from_millis(1);
/// …while the heavy jobs get at least this share of the ideal throughput (cores ÷ job time).
pub const OFFLOADED_SHARE_OF_IDEAL: f64 = 0.9;
