//! Writes held back for one turn of the scheduler, so that the frames of several streams leave a connection in one
//! system call.
//!
//! An HTTP/2 connection's task writes whenever it runs with frames queued. On tokio's multi-thread runtime a task
//! that queues a frame (a stream's reply, a client's request) wakes the connection's task into its worker's LIFO
//! slot, so the connection runs next and writes that one frame: under load about one `writev` per call on each
//! side of each connection, each a trip through the kernel's TCP stack (on loopback, the receiver's side of it
//! too). Here the connection's first write since its last flush waits one turn instead: the task wakes itself and
//! returns `Pending`, and tokio queues a task woken during its own poll behind the tasks already runnable, so the
//! other streams that are ready run first and their frames go out with it. A connection with nothing else ready
//! runs again at once; the turn costs one more poll of its task (decision record 0021 has both measurements).
//!
//! Reads, flushes and shutdowns pass straight through.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project_lite::pin_project! {
    /// `inner`, whose first write after each flush waits one turn of the scheduler (see the module docs).
    #[derive(Debug)]
    pub struct BatchedWrites<T> {
        #[pin]
        inner: T,
        // The turn was taken: write until the next flush.
        waited: bool,
    }
}

impl<T> BatchedWrites<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, waited: false }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// `Ready` once the turn has been taken: `Pending` the first time, with the task already woken.
    fn take_turn(waited: &mut bool, cx: &mut Context<'_>) -> Poll<()> {
        if *waited {
            return Poll::Ready(());
        }
        *waited = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T: AsyncRead> AsyncRead for BatchedWrites<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for BatchedWrites<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        std::task::ready!(Self::take_turn(this.waited, cx));
        this.inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        std::task::ready!(Self::take_turn(this.waited, cx));
        this.inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let flushed = this.inner.poll_flush(cx);
        if flushed.is_ready() {
            *this.waited = false;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Wake, Waker},
    };

    use super::*;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_first_write_after_each_flush_waits_one_turn_and_wakes_its_task() {
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut io = BatchedWrites::new(Vec::new());
        let mut write = |io: &mut BatchedWrites<Vec<u8>>, bytes: &[u8]| Pin::new(io).poll_write(&mut cx, bytes);

        assert!(write(&mut io, b"ab").is_pending(), "the first write waits");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "and has its task polled again");
        assert!(matches!(write(&mut io, b"ab"), Poll::Ready(Ok(2))), "the next turn writes");
        assert!(matches!(write(&mut io, b"cd"), Poll::Ready(Ok(2))), "so does every write until the flush");
        assert!(Pin::new(&mut io).poll_flush(&mut Context::from_waker(&waker)).is_ready());
        assert!(write(&mut io, b"ef").is_pending(), "after a flush the next write waits again");
        assert!(matches!(write(&mut io, b"ef"), Poll::Ready(Ok(2))));
        assert_eq!(io.get_ref(), b"abcdef", "every byte once, in order");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
    }
}
