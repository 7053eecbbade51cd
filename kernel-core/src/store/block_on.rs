//! How a synchronous caller waits for a store's future: `pollster`'s executor polls it on the
//! calling thread and parks the thread between polls. The directory store's futures are ready
//! at once (one poll, no park).

use std::future::Future;

/// Runs `future` to completion on this thread, parking it while the future waits.
///
/// This is how the synchronous kernel drives a [`StateStore`](super::StateStore): it blocks the
/// calling thread, so it must not run on an async runtime's worker thread (from async code, run
/// the kernel's blocking operations with the runtime's `spawn_blocking`). A backend whose
/// futures need a runtime (timers, I/O drivers) spawns its work onto a runtime it holds and
/// returns a future that waits for the result, which any executor, this one included, can poll.
///
/// ```
/// let answer = microkernel::store::block_on(async { 6 * 7 });
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

#[cfg(test)]
mod tests {
    use super::block_on;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A future completed by another thread, so the caller really parks.
    #[test]
    fn waits_for_a_future_woken_by_another_thread() {
        let (tx, rx) = mpsc::channel::<u32>();
        let pending = std::future::poll_fn(move |cx| match rx.try_recv() {
            Ok(v) => std::task::Poll::Ready(v),
            Err(_) => {
                let waker = cx.waker().clone();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    let _ = tx.send(9);
                    waker.wake();
                });
                std::task::Poll::Pending
            }
        });
        assert_eq!(block_on(pending), 9);
    }
}
