//! The crate's tests on real runtimes and real processes, in one test binary (each binary is built and linked on
//! its own, which is most of a cold test run's time).

mod detect;
mod examples;
#[cfg(feature = "tower")]
mod layer;
