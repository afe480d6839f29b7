//! A run's cancellation (Ctrl-C, or `--abort-on-fail`): one flag every worker sees at once and every call in
//! flight can await.

use std::sync::Arc;

use tokio::sync::watch;

/// A run's cancellation: set once, seen by every worker at once, awaited by the calls in flight. Cheap to clone
/// (clones share it).
#[derive(Debug, Clone)]
pub struct Cancel(Arc<watch::Sender<bool>>);

impl Default for Cancel {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl Cancel {
    /// A cancellation not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets it: every holder sees it.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    /// Whether it is set.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once it is set (at once if it already is).
    pub async fn cancelled(&self) {
        let mut seen = self.0.subscribe();
        let _ = seen.wait_for(|&set| set).await;
    }
}
