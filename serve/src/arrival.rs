//! When a call's HTTP/2 stream reached the server: stamped by the outermost layer ([`crate::stream`]) before any
//! handler runs, and read by the layers that count a call's time from it (its deadline, [`crate::deadline`]; its
//! admission, [`crate::admission`]). On a runtime blocked by a job, streams queue as tasks; counting from here, a
//! call that waited past its deadline is answered at once instead of being given its whole budget again.
//!
//! A module of its own because it is the one thing those layers share: the stream's layer also depends on
//! admission (its reply holds the admission slot), so the instant cannot live in either without a cycle.

use std::time::Instant;

use tonic::codegen::http;

/// When the stream reached the server, in its request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival(pub Instant);

impl Arrival {
    /// The arrival of a request that came through a [`crate::stream::StreamBoundsLayer`], or now.
    pub fn of(extensions: &http::Extensions) -> Instant {
        extensions.get::<Self>().map_or_else(Instant::now, |a| a.0)
    }
}
