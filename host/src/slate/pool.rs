//! The threads plugin calls run on. Long-lived, so a slate pays at most a wake-up, not a
//! thread start, per helper it asks for; and a thread that has just finished a task
//! stays awake for a moment, so a slate arriving soon after pays not even that.
//!
//! Waking a parked thread costs the waker a system call and the woken thread tens of
//! microseconds before it runs (on a virtual machine, often more than a plugin call).
//! A thread watching for work takes it within a microsecond. Watching threads yield
//! their core on every turn, and no more threads watch than there are cores not running
//! calls: spinning beside a working thread would only take turns from it.
//!
//! Watching threads also run chores: short bookkeeping a slate hands over once it is
//! answered (see [`FanoutPool::chore`]), between looks for helper work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

/// Work for a pool thread.
pub(crate) trait Task: Send + 'static {
    /// Whether running it would still do anything. A task that others have done while it
    /// waited (a helper for a slate whose calls are all taken) is dropped unrun, and is
    /// not a reason to wake a thread: after the watching thread has lost its core for a
    /// while, the queue holds one such task per slate answered meanwhile, and waking a
    /// thread for each would crowd the core that the next slates' helpers run on. (A
    /// thread taking a wanted task still wakes another when the queue is not empty, stale
    /// tasks and all; that one finds nothing and stops watching soon.)
    fn wanted(&self) -> bool {
        true
    }

    fn run(self: Box<Self>);
}

impl<F: FnOnce() + Send + 'static> Task for F {
    fn run(self: Box<Self>) {
        self()
    }
}

type BoxedTask = Box<dyn Task>;
/// Chores are always wanted.
type Chore = Box<dyn FnOnce() + Send>;

/// How long a thread keeps watching for work after its last task.
const WATCH: Duration = Duration::from_micros(200);

/// A fixed set of threads running submitted tasks.
pub(crate) struct FanoutPool {
    /// Tasks for watching threads: nobody blocks on it, so sending never wakes anyone.
    hot: Sender<BoxedTask>,
    /// Tasks for parked threads, or a nudge to look at `hot`.
    cold: Sender<Job>,
    threads: usize,
    /// Chores for watching threads, and the same queue's other end, to take one back
    /// when every watcher stopped before it could see it.
    chores: Sender<Chore>,
    chores_back: Receiver<Chore>,
    /// Threads watching `hot`.
    watching: Arc<AtomicUsize>,
}

impl FanoutPool {
    /// Starts `threads` worker threads. `busy` counts the threads working on slates (the
    /// pool's and requests' own); threads watch for work only on cores nothing else is
    /// using.
    pub(crate) fn new(threads: usize, busy: Arc<AtomicUsize>, cores: usize) -> FanoutPool {
        let threads = threads.max(1);
        let (hot, hot_rx) = unbounded::<BoxedTask>();
        let (cold, cold_rx) = unbounded::<Job>();
        let (chores, chores_rx) = unbounded::<Chore>();
        let watching = Arc::new(AtomicUsize::new(0));
        for n in 0..threads {
            let worker = Worker {
                hot: hot_rx.clone(),
                cold: cold_rx.clone(),
                chores: chores_rx.clone(),
                nudge: cold.clone(),
                watching: watching.clone(),
                busy: busy.clone(),
                cores,
            };
            std::thread::Builder::new()
                .name(format!("offerhost-fanout-{n}"))
                .spawn(move || worker.run())
                .expect("the fan-out threads start");
        }
        FanoutPool {
            hot,
            cold,
            chores,
            chores_back: chores_rx,
            threads,
            watching,
        }
    }

    /// Runs `task` on the next free thread: a watching one if there is one, else a parked
    /// one, woken.
    pub(crate) fn spawn(&self, task: impl Task) {
        // The receivers live as long as the threads, which stop only when the pool is
        // dropped, so sending cannot fail.
        let task: BoxedTask = Box::new(task);
        if self.watching.load(Ordering::SeqCst) == 0 {
            let _ = self.cold.send(Job::Task(task));
            return;
        }
        let _ = self.hot.send(task);
        // Pairs with the fence in `Worker::run`: either the thread that stopped watching
        // sees the task, or this sees that nobody is watching and wakes someone.
        fence(Ordering::SeqCst);
        if self.watching.load(Ordering::SeqCst) == 0 {
            self.wake_one();
        }
    }

    /// Wakes a parked thread to look for tasks: for a task sent to watchers that all
    /// stopped.
    fn wake_one(&self) {
        let _ = self.cold.send(Job::Look);
    }

    /// Hands `task`, a chore of a few microseconds, to a thread watching for work;
    /// gives it back when no thread is watching, for the caller to run: waking a parked
    /// thread would cost more than the chore. A helper task sent meanwhile waits for the
    /// chore to finish, so chores must be short.
    pub(crate) fn chore(&self, task: Chore) -> Option<Chore> {
        if self.watching.load(Ordering::SeqCst) == 0 {
            return Some(task);
        }
        let _ = self.chores.send(task);
        // Pairs with the fence in `Worker::run`: either the thread that stopped watching
        // runs the chore before it parks, or this sees that nobody is watching and takes
        // a chore back (this one, or one the watchers have not reached).
        fence(Ordering::SeqCst);
        if self.watching.load(Ordering::SeqCst) == 0 {
            return self.chores_back.try_recv().ok();
        }
        None
    }
}

impl Drop for FanoutPool {
    fn drop(&mut self) {
        // Each thread takes one `Stop` once it has finished what it is doing.
        for _ in 0..self.threads {
            let _ = self.cold.send(Job::Stop);
        }
    }
}

/// What parked threads receive.
enum Job {
    Task(BoxedTask),
    /// Look at `hot`: a task there has nobody watching for it.
    Look,
    Stop,
}

struct Worker {
    hot: Receiver<BoxedTask>,
    cold: Receiver<Job>,
    chores: Receiver<Chore>,
    /// To wake a parked thread for a task this one cannot take.
    nudge: Sender<Job>,
    watching: Arc<AtomicUsize>,
    busy: Arc<AtomicUsize>,
    cores: usize,
}

impl Worker {
    fn run(self) {
        loop {
            // Parked until there is work (or a nudge to look at `hot`).
            match self.cold.recv() {
                Ok(Job::Task(task)) => {
                    if !task.wanted() {
                        // Sent while nobody watched, and done by others since: only a
                        // `Look` asks this thread to watch.
                        continue;
                    }
                    run(|| task.run());
                }
                Ok(Job::Look) => {}
                Ok(Job::Stop) | Err(_) => return,
            }
            // Then watching for more until there has been none for a while.
            self.watching.fetch_add(1, Ordering::SeqCst);
            let mut until = Instant::now() + WATCH;
            loop {
                let stop = Instant::now() >= until || !self.core_to_spare();
                if stop {
                    self.watching.fetch_sub(1, Ordering::SeqCst);
                    // Pairs with the fence in `FanoutPool::spawn`: either the sender saw
                    // this thread stop watching, or this sees its task below.
                    fence(Ordering::SeqCst);
                }
                match self.next_wanted() {
                    Ok(task) => {
                        if !stop {
                            self.watching.fetch_sub(1, Ordering::SeqCst);
                            fence(Ordering::SeqCst);
                        }
                        // A sender counts on one watcher per task: if another task is
                        // waiting and nobody is left watching, wake someone for it.
                        if !self.hot.is_empty() && self.watching.load(Ordering::SeqCst) == 0 {
                            let _ = self.nudge.send(Job::Look);
                        }
                        run(|| task.run());
                        self.watching.fetch_add(1, Ordering::SeqCst);
                        until = Instant::now() + WATCH;
                    }
                    Err(_) if stop => {
                        // Nobody may be left to run what was handed to watchers.
                        while let Ok(chore) = self.chores.try_recv() {
                            run(chore);
                        }
                        break;
                    }
                    // Still counted as watching: a helper task sent meanwhile is taken
                    // as soon as the chore is done.
                    Err(_) => match self.chores.try_recv() {
                        Ok(chore) => run(chore),
                        Err(_) => std::thread::yield_now(),
                    },
                }
            }
        }
    }

    /// The first task waiting for watchers that is still wanted; the others before it
    /// are dropped.
    fn next_wanted(&self) -> Result<BoxedTask, crossbeam_channel::TryRecvError> {
        loop {
            let task = self.hot.try_recv()?;
            if task.wanted() {
                return Ok(task);
            }
        }
    }

    /// Whether this thread's watching leaves a core idle for nothing else: one core per
    /// thread running calls and per watching thread, this one included.
    fn core_to_spare(&self) -> bool {
        self.busy.load(Ordering::Relaxed) + self.watching.load(Ordering::Relaxed) <= self.cores
    }
}

fn run(task: impl FnOnce()) {
    // A panic in one call must not take a worker away for good.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)).is_err() {
        tracing::error!("a fan-out task panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A task that is no longer wanted when a thread reaches it is dropped unrun, whether
    /// it waited for a watching thread or woke a parked one; wanted tasks around it run.
    #[test]
    fn tasks_no_longer_wanted_are_dropped_unrun() {
        struct Stale(mpsc::Sender<&'static str>);
        impl Task for Stale {
            fn wanted(&self) -> bool {
                false
            }
            fn run(self: Box<Self>) {
                self.0.send("stale").unwrap();
            }
        }
        let pool = FanoutPool::new(2, Arc::new(AtomicUsize::new(0)), 2);
        let (ran, runs) = mpsc::channel::<&'static str>();
        for round in 0..50 {
            for _ in 0..3 {
                pool.spawn(Stale(ran.clone()));
            }
            let ran = ran.clone();
            pool.spawn(move || ran.send("wanted").unwrap());
            assert_eq!(
                runs.recv_timeout(Duration::from_secs(5)),
                Ok("wanted"),
                "round {round}: the wanted task runs, and no stale one before it"
            );
            if round % 10 == 0 {
                // Let the threads stop watching, so the next tasks go to parked ones.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(runs.try_recv().is_err(), "a stale task ran");
    }

    /// Every chore runs exactly once: on a watching thread, or given back to the caller
    /// when none is watching, whichever way the race with a thread that stops watching
    /// goes.
    #[test]
    fn chores_run_once_whoever_runs_them() {
        let pool = FanoutPool::new(2, Arc::new(AtomicUsize::new(0)), 2);
        let (ran, runs) = mpsc::channel::<usize>();
        let (mut given_back, mut handed_over) = (0, 0);
        let until = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        // At least 2 000 chores, and on until both ways have happened (a loaded machine
        // may keep the pool's thread from watching for a while).
        while n < 2000 || ((given_back == 0 || handed_over == 0) && Instant::now() < until) {
            if n % 50 == 0 {
                // A task leaves its thread watching for a while; chores are handed to it
                // then, and given back once it has stopped.
                pool.spawn(|| {});
            }
            let ran = ran.clone();
            match pool.chore(Box::new(move || ran.send(n).unwrap())) {
                Some(chore) => {
                    given_back += 1;
                    chore();
                }
                None => handed_over += 1,
            }
            if n % 7 == 0 {
                std::thread::sleep(Duration::from_micros(40));
            }
            n += 1;
        }
        let mut seen = vec![0u32; n];
        for _ in 0..n {
            let k = runs
                .recv_timeout(Duration::from_secs(5))
                .expect("every chore runs");
            seen[k] += 1;
        }
        assert!(seen.iter().all(|&k| k == 1), "a chore ran twice");
        assert!(runs.try_recv().is_err(), "a chore ran twice");
        assert!(given_back > 0, "with nobody watching, chores come back");
        assert!(handed_over > 0, "a watching thread takes chores");
    }
}
