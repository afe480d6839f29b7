//! What one client can make a server hold, bounded by flags both servers share (flattened into their configs).
//!
//! Admission (`--max-inflight`) bounds the work and the replies in flight: the slot is held until the reply has
//! been handed to HTTP/2 in full ([`crate::reply`]). Everything else a client can pin down is bounded here:
//!
//! | what a client holds                       | bounded by                                                     |
//! |-------------------------------------------|----------------------------------------------------------------|
//! | connections                               | `--max-connections` (more are accepted and closed at once)     |
//! | a connection that never sends the preface | `--preface-timeout`                                            |
//! | a dead or silent peer                     | `--http2-keepalive-interval` + `--http2-keepalive-timeout`     |
//! | streams on one connection                 | `--max-concurrent-streams`                                     |
//! | streams reset before they are accepted    | `--max-concurrent-streams` (h2's rapid-reset guard)            |
//! | request bytes buffered before reading     | `--connection-window-bytes` per connection (and per stream     |
//! |                                           | `--stream-window-bytes`)                                       |
//! | a stream that never sends its request     | `--request-read-timeout`                                       |
//! | a reply its client does not read          | `--send-timeout`, then the reply is dropped with its slot      |
//! | one frame, one header block               | `--max-frame-bytes`, `--max-header-list-bytes`                 |
//!
//! The worst case these add up to is in the README ("Worst case under hostile clients").

use std::time::Duration;

use tonic::transport::Server;

use offload_duration::parse as parse_duration;

/// The flags of the table above. Every default is what a production gRPC server (gRPC-Go, Envoy) uses or a
/// reason is given beside it.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionLimits {
    /// Connections served at once on the gRPC port; more are accepted and closed at once (the client sees
    /// UNAVAILABLE and can go elsewhere) instead of holding a file descriptor and buffers each.
    #[arg(long, env = "OFFLOAD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); gRPC clients queue
    /// calls beyond it. 100 is gRPC-Go's and Envoy's default.
    #[arg(long, env = "OFFLOAD_MAX_CONCURRENT_STREAMS", default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// Bytes of request data one stream may send before the server reads them (the HTTP/2 stream window). Requests
    /// are small (a few bytes of protobuf), so 64 KiB is plenty and bounds what an unread stream holds.
    #[arg(long, env = "OFFLOAD_STREAM_WINDOW_BYTES", default_value_t = 64 * 1024,
        value_parser = clap::value_parser!(u32).range(1024..=MAX_WINDOW))]
    pub stream_window_bytes: u32,

    /// Bytes of request data one connection may send before the server reads them (the HTTP/2 connection window):
    /// the most a connection's unread streams hold together.
    #[arg(long, env = "OFFLOAD_CONNECTION_WINDOW_BYTES", default_value_t = 1024 * 1024,
        value_parser = clap::value_parser!(u32).range(1024..=MAX_WINDOW))]
    pub connection_window_bytes: u32,

    /// Largest HTTP/2 frame the server accepts (SETTINGS_MAX_FRAME_SIZE): 16 KiB, the protocol's minimum, since
    /// requests are small and larger frames only grow read buffers.
    #[arg(long, env = "OFFLOAD_MAX_FRAME_BYTES", default_value_t = 16 * 1024,
        value_parser = clap::value_parser!(u32).range(16_384..=16_777_215))]
    pub max_frame_bytes: u32,

    /// Largest header block (metadata) a request may carry (SETTINGS_MAX_HEADER_LIST_SIZE). 16 KiB: gRPC metadata
    /// is a trace context and a timeout, and 16 KiB is hyper's default.
    #[arg(long, env = "OFFLOAD_MAX_HEADER_LIST_BYTES", default_value_t = 16 * 1024,
        value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_header_list_bytes: u32,

    /// How long a reply may wait for its client to take it (an HTTP/2 window that stays shut) before it is dropped,
    /// with its admission slot, and the stream reset. Counted from the last bit of progress, so a slow but reading
    /// client is never cut off.
    #[arg(long, env = "OFFLOAD_SEND_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub send_timeout: Duration,

    /// How long a stream may take to send its request message after its headers; streams that never send one are
    /// answered DEADLINE_EXCEEDED instead of holding a stream slot forever.
    #[arg(long, env = "OFFLOAD_REQUEST_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub request_read_timeout: Duration,

    /// How long a new connection may take to send its first bytes (the HTTP/2 preface, or the TLS hello) before it
    /// is closed: keepalive pings only start after the handshake.
    #[arg(long, env = "OFFLOAD_PREFACE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub preface_timeout: Duration,

    /// An HTTP/2 PING on a connection idle this long: dead peers behind a NAT or a killed pod are noticed in half a
    /// minute instead of the kernel's two hours.
    #[arg(long, env = "OFFLOAD_HTTP2_KEEPALIVE_INTERVAL", default_value = "20s", value_parser = positive_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long a keepalive PING may go unanswered before the connection is closed.
    #[arg(long, env = "OFFLOAD_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub http2_keepalive_timeout: Duration,
}

/// The largest HTTP/2 window (2^31 - 1, RFC 9113 §6.9.1).
const MAX_WINDOW: i64 = (1 << 31) - 1;

/// A duration flag that must be above zero (a zero timeout would close every connection at once).
fn positive_duration(s: &str) -> Result<Duration, String> {
    let duration = parse_duration(s).map_err(|e| e.to_string())?;
    if duration.is_zero() { Err("must be above 0".to_owned()) } else { Ok(duration) }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let command = Self::augment_args(clap::Command::new("defaults"));
        let matches = command.get_matches_from(["defaults"]);
        #[allow(clippy::expect_used)] // The defaults above parse, as the unit test checks.
        Self::from_arg_matches(&matches).expect("defaults parse")
    }
}

impl ConnectionLimits {
    /// `server` with these HTTP/2 settings.
    pub fn apply(&self, server: Server) -> Server {
        server
            .max_concurrent_streams(self.max_concurrent_streams)
            .initial_stream_window_size(self.stream_window_bytes)
            .initial_connection_window_size(self.connection_window_bytes)
            .max_frame_size(self.max_frame_bytes)
            .http2_max_header_list_size(self.max_header_list_bytes)
            .http2_keepalive_interval(Some(self.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(self.http2_keepalive_timeout))
            // Streams the client resets before the server has accepted them: h2's default (20, its rapid-reset
            // guard) closes the whole connection when a gateway's clients cancel a burst of calls (a load
            // generator stopping, a client disconnecting), failing every other call on it and the gateway's
            // health stream with it. As many as may be open at once still bounds the attack.
            .http2_max_pending_accept_reset_streams(Some(self.max_concurrent_streams as usize))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        limits: ConnectionLimits,
    }

    #[test]
    fn defaults_parse_and_out_of_range_values_are_refused_by_name() {
        let limits = ConnectionLimits::default();
        assert_eq!(limits.max_concurrent_streams, 100);
        assert_eq!(limits.send_timeout, Duration::from_secs(30));
        for (flag, value) in [
            ("--max-frame-bytes", "1000"),
            ("--stream-window-bytes", "4294967295"),
            ("--send-timeout", "0"),
            ("--max-concurrent-streams", "0"),
        ] {
            let error = Flags::try_parse_from(["t", flag, value]).expect_err(flag).to_string();
            assert!(error.contains(flag), "{error}");
        }
    }
}
