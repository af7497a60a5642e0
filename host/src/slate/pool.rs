//! The threads plugin calls run on. Long-lived, so a slate pays a wake-up, not a thread
//! start, per worker it asks for.

use crossbeam_channel::{Sender, unbounded};

type Task = Box<dyn FnOnce() + Send>;

/// A fixed set of threads running submitted tasks in order of arrival.
pub(crate) struct FanoutPool {
    tx: Sender<Task>,
}

impl FanoutPool {
    /// Starts `threads` worker threads.
    pub(crate) fn new(threads: usize) -> FanoutPool {
        let (tx, rx) = unbounded::<Task>();
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("offerhost-fanout-{n}"))
                .spawn(move || {
                    for task in rx.iter() {
                        // A panic in one call must not take a worker away for good.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)).is_err() {
                            tracing::error!("a fan-out task panicked");
                        }
                    }
                })
                .expect("the fan-out threads start");
        }
        FanoutPool { tx }
    }

    /// Runs `task` on the next free thread.
    pub(crate) fn spawn(&self, task: impl FnOnce() + Send + 'static) {
        // The receivers live as long as the threads, which never stop while `tx` exists.
        let _ = self.tx.send(Box::new(task));
    }
}
