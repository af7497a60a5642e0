//! The fan-out: one slate's plugin calls spread over the request's own thread and
//! pooled helper threads, all within the slate's deadline.
//!
//! On a small machine a thread hand-off costs about as much as a plugin call (waking a
//! parked thread is a system call for the waker and tens of microseconds for the woken),
//! so the fan-out pays as few as it can:
//! - the request's thread runs calls itself, so a one-plugin slate needs no hand-off;
//! - it brings in one helper, not all of them: each worker that takes a call while more
//!   are waiting brings in the next, so the wake-ups are spread over the workers instead
//!   of delaying the first call;
//! - helpers come only while some core is idle (requests in progress and helpers counted
//!   together), up to one worker per core: more threads than cores would only take turns,
//!   each turn a context switch;
//! - a call still running after [`STUCK`] (a plugin hanging until its deadline) brings in
//!   another thread whatever those limits say, so the calls behind it are not made late;
//! - helpers hand results back through slots and a counter; the request's thread is woken
//!   only by the last result, and only if it is not already watching for it;
//! - the request's thread takes calls from the front of the slate's list and helpers from
//!   the back, so while slates split the same way a plugin runs on the same core slate
//!   after slate, and what its call touches is still in that core's cache: wasmtime gives
//!   an instance a memory slot that last held the same plugin (what its reset left
//!   resident), and the plugin's metrics and health are written there too. Taken from
//!   one end by whoever came first, which plugin ran where changed from slate to slate,
//!   and a call often began by pulling all of that over from the other core.
//!
//! A helper handed to a watching thread that has lost its core (to a background thread,
//! for a millisecond or so) starts late, and the request may make every call itself.
//! Waking a parked thread for it instead costs the request a system call, and the woken
//! thread has no free core either: measured, such slates were no faster than those the
//! request finished alone.
//!
//! Each worker also derives its call's features, screens its bids and counts the call
//! (metrics, the plugin's health), so that work is spread over the cores too. Once a
//! slate is answered, its bookkeeping is a chore for a watching thread
//! ([`Fanout::chore`]), whose core is otherwise idle.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::call_fields;
use super::deployment::{DeployedPlugin, Variant};
use super::pool::{FanoutPool, Task};
use super::profile;
use crate::model::{Bid, Channel, RejectedBid, screen_bids};
use crate::registry::Registry;
use crate::report::Aggregator;
use crate::sandbox::{CallReport, Limits, Outcome, Sandbox, SlowCall};

/// How long the request's thread watches for the last results before it parks. About
/// one plugin call: the calls still running elsewhere are most likely that close to done,
/// and parking would add a wake-up to the slate.
const WATCH: Duration = Duration::from_micros(30);

/// A call still running after this long is probably stuck until its deadline: it then
/// brings in another thread for the calls waiting behind it, whatever the other limits
/// on helpers say (plugin calls take microseconds; this is a thousand of them).
const STUCK: Duration = Duration::from_millis(2);

/// How long, after a call ran long, slates on an async runtime's worker hand their
/// fan-out off it (see [`Fanout::hands_off`]), in seconds. Each such call starts it
/// again, so a plugin that keeps stalling keeps slates handing off.
const HAND_OFF_FOR: u64 = 60;

/// Fuel of a call that ran long: about a millisecond of the plugin's own work, where
/// plugin calls take microseconds. Fuel before time, since a thread that lost its core
/// to others under load takes long without any plugin's fault.
const LONG_CALL_FUEL: u64 = 1_000_000;

/// Time of a call that ran long whatever its fuel: work fuel does not count (host
/// calls, memory stalls) can make a call long too, and preemption rarely makes one this
/// long.
const LONG_CALL_TIME: Duration = Duration::from_millis(20);

/// Until when (unix seconds) fan-outs are handed off async workers (see
/// [`Fanout::hands_off`]). Every slate reads it and a long call seldom writes it, so it
/// keeps a cache line to itself, apart from counters every slate writes.
#[repr(align(128))]
#[derive(Default)]
struct HandOffUntil(AtomicU64);

impl HandOffUntil {
    /// Starts (or extends) handing off, for [`HAND_OFF_FOR`] from `now` (unix seconds);
    /// writes only when that moves the end on, so calls that keep running long do not
    /// each write the line every slate reads.
    fn extend_from(&self, now: u64) {
        let until = now + HAND_OFF_FOR;
        if self.0.load(Ordering::Relaxed) < until {
            self.0.fetch_max(until, Ordering::Relaxed);
        }
    }
}

/// Counts each finished call on the thread that made it: the call's metrics and its
/// plugin's health. Those threads run in parallel, so the request's own thread, which
/// answers once the last call is in, counts only the calls it made itself, and any call
/// still out at the slate deadline, as late.
pub(super) struct Accountant {
    pub(super) registry: Arc<Registry>,
    pub(super) aggregates: Arc<Aggregator>,
}

impl Accountant {
    /// Counts `done`; `now` is when the slate's calls were made (unix seconds, read once
    /// before them). The plugin's key and a reason to quarantine it when its health says
    /// so.
    fn account(&self, call: &Call, done: &Done, now: u64) -> Option<(String, String)> {
        let (report, latency) = (&done.report, done.latency);
        let metrics = &call.variant.metrics;
        metrics.call_seconds.observe(latency.as_secs_f64());
        metrics.fuel.observe(report.cost.fuel_used as f64);
        metrics.outcome(report.outcome.kind());
        if call.shadow {
            // Shadow calls say nothing about the live version's health. A live call's
            // arm row is written with the rest of its slate.
            self.aggregates.add(
                &call.plugin.arm_bucket,
                &call.variant.arm_row,
                &call_fields(&report.outcome, report.cost.fuel_used, latency),
                None,
            );
            return None;
        }
        if report.outcome == Outcome::Ok {
            metrics.bids.inc_by(u64::from(done.returned));
        }
        let reason = self.registry.record_outcome(
            &call.plugin.health,
            &report.outcome,
            report.cost.wall_time_us,
            now,
        )?;
        Some((call.plugin.key.clone(), reason))
    }
}

/// What the fan-out returns: every call with what it did, in input order, and the
/// plugins whose health now calls for quarantine, with the reason.
#[derive(Default)]
pub(super) struct Fanned {
    pub(super) calls: Vec<(Call, Done)>,
    pub(super) quarantine: Vec<(String, String)>,
}

/// A call's place for its result.
enum Slot {
    Waiting,
    Done(Done),
    /// Collected by the request: its result taken, or the call counted late.
    Closed,
}

/// One plugin call of a slate.
#[derive(Clone)]
pub(super) struct Call {
    pub(super) plugin: Arc<DeployedPlugin>,
    pub(super) variant: Arc<Variant>,
    pub(super) shadow: bool,
}

/// One finished call: its report (the answer moved into `bids` and `rejected`) and its
/// bids screened against the contract.
pub(super) struct Done {
    pub(super) report: CallReport<Vec<Bid>>,
    /// From the start of the fan-out to the end of the call.
    pub(super) latency: Duration,
    /// Bids the plugin returned.
    pub(super) returned: u32,
    pub(super) bids: Vec<Bid>,
    pub(super) rejected: Vec<RejectedBid>,
}

impl Done {
    /// A call that did not finish before the slate deadline.
    pub(super) fn late(latency: Duration) -> Done {
        Done {
            report: CallReport {
                outcome: Outcome::Late,
                value: None,
                cost: Default::default(),
                logs: Vec::new(),
            },
            latency,
            returned: 0,
            bids: Vec::new(),
            rejected: Vec::new(),
        }
    }
}

/// What a slate's calls run on: the sandbox and the helper threads.
#[repr(align(128))]
pub(super) struct Fanout {
    sandbox: Arc<Sandbox>,
    accountant: Accountant,
    pool: FanoutPool,
    /// Threads working on slates right now: requests' own threads (for the whole slate
    /// except while waiting on a networked store, see [`Fanout::busy`]) and helpers.
    active: Arc<AtomicUsize>,
    /// The cores this process may use: past that many active threads, or that many
    /// workers on one slate (the request's own included), a helper would only take
    /// turns with a thread that is already working.
    cores: usize,
    /// Chores handed over and not yet finished (see [`Fanout::chore`]).
    chores: ChoreCount,
    /// See [`Fanout::hands_off`].
    hand_off_until: HandOffUntil,
}

/// Chores in flight, in two generations, so that a reader can wait for the chores handed
/// over before it without also waiting for those handed over since.
#[derive(Default)]
struct ChoreCount {
    generation: AtomicUsize,
    in_flight: [AtomicUsize; 2],
}

impl ChoreCount {
    /// Counts a chore in; pass the slot returned to [`ChoreCount::finish`].
    fn start(&self) -> usize {
        loop {
            let generation = self.generation.load(Ordering::SeqCst);
            let slot = generation & 1;
            self.in_flight[slot].fetch_add(1, Ordering::SeqCst);
            // A generation turned in between would not wait for this count: count it in
            // the new one instead.
            if self.generation.load(Ordering::SeqCst) == generation {
                return slot;
            }
            self.in_flight[slot].fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn finish(&self, slot: usize) {
        self.in_flight[slot].fetch_sub(1, Ordering::SeqCst);
    }

    /// Starts a new generation; returns the slot of the chores counted in before, to
    /// wait on with [`ChoreCount::drained`]. One caller at a time.
    fn turn(&self) -> usize {
        self.generation.fetch_add(1, Ordering::SeqCst) & 1
    }

    fn drained(&self, slot: usize) -> bool {
        self.in_flight[slot].load(Ordering::SeqCst) == 0
    }
}

/// Counts a chore finished when dropped, even if it panicked.
struct ChoreDone(Arc<Fanout>, usize);

impl Drop for ChoreDone {
    fn drop(&mut self) {
        self.0.chores.finish(self.1);
    }
}

/// What the plugins of one slate see of the request.
pub(super) struct Context {
    pub(super) derived: Arc<profile::Derived>,
    pub(super) placement: String,
    pub(super) channel: Channel,
}

/// The calls of one slate and what their workers share.
struct Batch {
    calls: Vec<Call>,
    context: Context,
    /// Which calls have been taken, and from which end.
    claims: Claims,
    /// Threads working on the batch, the request's own included, counted when asked for.
    workers: AtomicUsize,
    started: Instant,
    budget: Duration,
    /// When the calls are made, for the plugins' health (unix seconds, read once).
    now: u64,
    results: Vec<Mutex<Slot>>,
    finished: AtomicUsize,
    /// Plugins whose health now calls for quarantine, with the reason.
    quarantine: Mutex<Vec<(String, String)>>,
    /// The request's thread, and whether it may be parked waiting for the last result.
    waiter: Thread,
    parked: AtomicBool,
}

/// The end of a batch's calls a worker takes from: the request's own thread the front,
/// helpers the back.
#[derive(Clone, Copy, Debug)]
enum End {
    Front,
    Back,
}

/// The calls of a batch taken so far, from each end: one word, so that taking a call is
/// one atomic addition whichever end it comes from.
struct Claims {
    taken: AtomicU64,
    total: usize,
}

impl Claims {
    /// Calls taken from the back count in the high half, from the front in the low one.
    const BACK: u64 = 1 << 32;

    /// None of `total` calls taken yet.
    fn new(total: usize) -> Claims {
        Claims {
            taken: AtomicU64::new(0),
            total,
        }
    }

    /// Takes the next call from `end`: its index, or `None` once every call is taken.
    fn take(&self, end: End) -> Option<usize> {
        let total = self.total;
        let step = match end {
            End::Front => 1,
            End::Back => Self::BACK,
        };
        // Each worker stops at its first `None`, so the halves never carry into each
        // other (that would take 2^32 attempts).
        let (front, back) = Self::split(self.taken.fetch_add(step, Ordering::Relaxed));
        if front + back >= total {
            return None;
        }
        Some(match end {
            End::Front => front,
            End::Back => total - 1 - back,
        })
    }

    /// Whether any call is still untaken.
    fn any_left(&self) -> bool {
        let (front, back) = Self::split(self.taken.load(Ordering::Relaxed));
        front + back < self.total
    }

    fn split(taken: u64) -> (usize, usize) {
        ((taken % Self::BACK) as usize, (taken / Self::BACK) as usize)
    }
}

impl Fanout {
    /// `threads` pool threads for a machine with `cores` cores.
    pub(super) fn new(
        sandbox: Arc<Sandbox>,
        accountant: Accountant,
        threads: usize,
        cores: usize,
    ) -> Fanout {
        let active = Arc::new(AtomicUsize::new(0));
        let cores = cores.max(1);
        Fanout {
            sandbox,
            accountant,
            pool: FanoutPool::new(threads, active.clone(), cores),
            active,
            cores,
            chores: ChoreCount::default(),
            hand_off_until: HandOffUntil::default(),
        }
    }

    /// Whether a slate on an async runtime's worker thread should run its fan-out
    /// through `block_in_place`, which hands the worker's other tasks to another thread
    /// first, at `now` (unix seconds). Only for a while after some call ran long (burned
    /// [`LONG_CALL_FUEL`], took [`LONG_CALL_TIME`], or ran into its own deadline or its
    /// fuel limit): a fan-out takes tens of microseconds, and the hand-off (waking a
    /// blocking-pool thread to take over, once per slate) cost about a fifth of the
    /// service's HTTP throughput. Until then a slate blocks its worker for its calls:
    /// the first call that stalls holds its worker up to its deadline, and so may the
    /// slates that start before it returns. (Turning the hand-off on from the call's
    /// 2 ms tick instead was tried: under load a worker that merely lost its core for
    /// 2 ms turned it on, and the gain was gone.) Waiting on other threads' calls past
    /// [`WATCH`] always hands off (see [`Fanout::run`]).
    pub(super) fn hands_off(&self, now: u64) -> bool {
        self.hand_off_until.0.load(Ordering::Relaxed) > now
    }

    /// Runs every call, on this thread and on helpers, each counted where it ran (see
    /// [`Accountant`]); a call that did not finish within `budget` is reported and
    /// counted `late`; `now` is the unix time the plugins' health counts them at. Blocks
    /// the calling thread for about `budget` at most (plus one call's deadline rounding,
    /// and a worker's counting of the call it just finished). `on_worker`: the calling
    /// thread is an async runtime's worker, not in `block_in_place`; waiting for other
    /// threads' calls past [`WATCH`] then goes through `block_in_place`, so that the
    /// worker's other tasks move to another thread rather than wait behind this slate.
    pub(super) fn run(
        self: &Arc<Self>,
        calls: Vec<Call>,
        context: Context,
        budget: Duration,
        now: u64,
        on_worker: bool,
    ) -> Fanned {
        let started = Instant::now();
        let total = calls.len();
        let batch = Arc::new(Batch {
            results: std::iter::repeat_with(|| Mutex::new(Slot::Waiting))
                .take(total)
                .collect(),
            calls,
            context,
            claims: Claims::new(total),
            workers: AtomicUsize::new(1),
            started,
            budget,
            now,
            finished: AtomicUsize::new(0),
            quarantine: Mutex::new(Vec::new()),
            waiter: std::thread::current(),
            parked: AtomicBool::new(false),
        });
        self.take_calls(&batch, End::Front);
        Self::wait(&batch, started + budget, on_worker);

        let calls = (batch.calls.iter().zip(&batch.results))
            .map(|(call, slot)| {
                let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                let done = match std::mem::replace(&mut *slot, Slot::Closed) {
                    Slot::Done(done) => done,
                    // Not finished (or never started): counted late here; a worker that
                    // finishes it later finds the slot closed and drops its result.
                    Slot::Waiting => {
                        let late = Done::late(started.elapsed());
                        self.count(&batch, call, &late);
                        late
                    }
                    Slot::Closed => unreachable!("only the request closes slots, once"),
                };
                (call.clone(), done)
            })
            .collect();
        let quarantine =
            std::mem::take(&mut *batch.quarantine.lock().unwrap_or_else(|e| e.into_inner()));
        Fanned { calls, quarantine }
    }

    /// Every call of a fan-out that never ran (its task was cancelled), reported and
    /// counted `late`.
    pub(super) fn all_late(&self, calls: Vec<Call>, now: u64, latency: Duration) -> Fanned {
        let mut quarantine = Vec::new();
        let calls = (calls.into_iter())
            .map(|call| {
                let late = Done::late(latency);
                quarantine.extend(self.accountant.account(&call, &late, now));
                (call, late)
            })
            .collect();
        Fanned { calls, quarantine }
    }

    /// Counts `done`, a result of `call` in `batch`.
    fn count(&self, batch: &Batch, call: &Call, done: &Done) {
        if let Some(quarantine) = self.accountant.account(call, done, batch.now) {
            (batch.quarantine.lock().unwrap_or_else(|e| e.into_inner())).push(quarantine);
        }
    }

    /// Counts the calling thread as working on a slate until the guard is dropped: hold it
    /// for the whole request (but see [`Busy::idle`]), so that helpers and watching threads
    /// leave its core alone.
    pub(super) fn busy(&self) -> Busy<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        Busy {
            count: &self.active,
            held: true,
        }
    }

    /// Runs `task`, a few microseconds of a slate's bookkeeping once it is answered, on a
    /// pool thread watching for work if one is (its core is otherwise idle), else here.
    pub(super) fn chore(self: &Arc<Self>, task: impl FnOnce() + Send + 'static) {
        let done = ChoreDone(self.clone(), self.chores.start());
        let task = Box::new(move || {
            let _done = done;
            task();
        });
        if let Some(task) = self.pool.chore(task) {
            task();
        }
    }

    /// Starts waiting for the chores handed over so far: the slot to pass to
    /// [`Fanout::chores_drained`]. One waiter at a time.
    pub(super) fn turn_chores(&self) -> usize {
        self.chores.turn()
    }

    /// Whether every chore counted in `slot` has finished.
    pub(super) fn chores_drained(&self, slot: usize) -> bool {
        self.chores.drained(slot)
    }

    /// Takes calls off `batch`, from `end`, until none is left or the slate's budget is
    /// spent. Each call runs with its deadline cut to what is left of the budget; one
    /// stopped by that cut, not by its own deadline, is reported `late`.
    ///
    /// Every worker writes the batch's shared counters as seldom as it can: each such
    /// write moves a cache line from the other core, which costs several times as much
    /// when the two cores are far apart (see the benches' core round trip).
    fn take_calls(self: &Arc<Self>, batch: &Arc<Batch>, end: End) {
        let total = batch.calls.len();
        // Calls finished here, added to the batch's count once this worker stops.
        let mut finished = 0;
        let mut rescuer = None;
        while let Some(i) = batch.claims.take(end) {
            let left = batch.budget.saturating_sub(batch.started.elapsed());
            if left.is_zero() {
                break;
            }
            // Read once per call: every worker's take writes this word.
            let more = batch.claims.any_left();
            if more {
                self.add_worker(batch);
            }
            let done = self.call(batch, i, left, more, &mut rescuer);
            {
                let mut slot = batch.results[i].lock().unwrap_or_else(|e| e.into_inner());
                // A closed slot was counted late by the request, which has stopped
                // waiting for it.
                if matches!(*slot, Slot::Waiting) {
                    self.count(batch, &batch.calls[i], &done);
                    *slot = Slot::Done(done);
                }
            }
            finished += 1;
        }
        // SeqCst here and in `wait`: each side writes one flag and then reads the other's,
        // which only a total order makes safe (no lost wake-up).
        if finished > 0
            && batch.finished.fetch_add(finished, Ordering::SeqCst) + finished == total
            && batch.parked.load(Ordering::SeqCst)
        {
            batch.waiter.unpark();
        }
    }

    /// Brings one more helper onto `batch` whatever the limits, if it has calls nobody
    /// has taken.
    fn rescue(self: &Arc<Self>, batch: &Arc<Batch>) {
        if batch.claims.any_left() {
            batch.workers.fetch_add(1, Ordering::Relaxed);
            self.helper(batch);
        }
    }

    /// A pool thread's turn on `batch`.
    fn helper(self: &Arc<Self>, batch: &Arc<Batch>) {
        self.pool.spawn(OnBatch::new(self, batch));
    }

    /// Brings one more helper onto `batch`, unless it has all it may have or every core
    /// is already running calls.
    fn add_worker(self: &Arc<Self>, batch: &Arc<Batch>) {
        // The batch's count first: once it is full only a rescue changes it, while every
        // slate's threads write the count of active ones.
        let mut n = batch.workers.load(Ordering::Relaxed);
        if n >= self.cores || self.active.load(Ordering::Relaxed) >= self.cores {
            return;
        }
        while n < self.cores {
            match batch.workers.compare_exchange_weak(
                n,
                n + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.helper(batch),
                Err(now) => n = now,
            }
        }
    }

    /// Waits until every call has finished or `deadline` has passed: watching for a
    /// moment, then parked until the last result or the deadline wakes it (see
    /// [`Fanout::run`] for `on_worker`).
    fn wait(batch: &Batch, deadline: Instant, on_worker: bool) {
        let total = batch.calls.len();
        let watch_until = Instant::now() + WATCH;
        while batch.finished.load(Ordering::Acquire) < total {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            if now >= watch_until {
                return if on_worker {
                    tokio::task::block_in_place(|| Self::park(batch, deadline))
                } else {
                    Self::park(batch, deadline)
                };
            }
            std::hint::spin_loop();
        }
    }

    /// Parked until every call has finished (the last result wakes it) or `deadline`
    /// has passed.
    fn park(batch: &Batch, deadline: Instant) {
        let total = batch.calls.len();
        while batch.finished.load(Ordering::Acquire) < total {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            batch.parked.store(true, Ordering::SeqCst);
            // The last result may have landed before `parked` was set, unseen by its
            // worker: look again before sleeping.
            if batch.finished.load(Ordering::SeqCst) < total {
                std::thread::park_timeout(deadline - now);
            }
        }
    }

    /// Call `i` of `batch`: features, the plugin, the bids screened. `more`: whether
    /// other calls were still untaken when it was taken; only such a call has anything to
    /// rescue if it gets stuck. `rescuer` is this worker's, made for its first such call.
    fn call(
        self: &Arc<Self>,
        batch: &Arc<Batch>,
        i: usize,
        left: Duration,
        more: bool,
        rescuer: &mut Option<Arc<OnBatch>>,
    ) -> Done {
        let (call, context, started) = (&batch.calls[i], &batch.context, batch.started);
        let plugin = &call.plugin;
        let features = profile::features_for(
            &context.derived,
            &plugin.partner,
            &plugin.allow,
            &plugin.segments,
            &context.placement,
            context.channel,
        );
        let left_ms = (left.as_millis() as u64).max(1);
        let cut = left_ms < plugin.limits.deadline_ms;
        let limits = Limits {
            deadline_ms: plugin.limits.deadline_ms.min(left_ms),
            ..plugin.limits
        };
        let stuck = more.then(|| {
            let rescuer = rescuer
                .get_or_insert_with(|| Arc::new(OnBatch::new(self, batch)))
                .clone();
            SlowCall {
                after: STUCK,
                then: Box::new(move || rescuer.fanout.rescue(&rescuer.batch)),
            }
        });
        let mut report = self.sandbox.bid_watched(
            &call.variant.plugin,
            features,
            &plugin.config,
            &limits,
            stuck,
        );
        let latency = started.elapsed();
        // A call the slate's budget cut proves nothing against its plugin: under
        // overload calls start late and are cut early.
        if report.cost.fuel_used >= LONG_CALL_FUEL
            || report.cost.wall_time_us >= LONG_CALL_TIME.as_micros() as u64
            || report.outcome == Outcome::FuelExhausted
            || (report.outcome == Outcome::Deadline && !cut)
        {
            self.hand_off_until.extend_from(batch.now);
        }
        if cut && report.outcome == Outcome::Deadline {
            report.outcome = Outcome::Late;
        }
        let answer = report.value.take();
        let returned = answer.as_ref().map_or(0, Vec::len) as u32;
        let (bids, rejected) = screen_bids(answer.unwrap_or_default());
        Done {
            report,
            latency,
            returned,
            bids,
            rejected,
        }
    }
}

/// A batch and the fan-out it runs on: a helper's turn, for a pool thread, and what a
/// stuck call's callback needs. For the callbacks, one worker's calls on a batch share
/// one, so that each call copies a reference only that worker writes, not the fan-out's
/// and the batch's, which the other workers' calls write at the same time.
struct OnBatch {
    fanout: Arc<Fanout>,
    batch: Arc<Batch>,
}

impl OnBatch {
    fn new(fanout: &Arc<Fanout>, batch: &Arc<Batch>) -> OnBatch {
        OnBatch {
            fanout: fanout.clone(),
            batch: batch.clone(),
        }
    }
}

impl Task for OnBatch {
    /// Not once every call has been taken (by the request's thread, most often, while
    /// this waited for a thread).
    fn wanted(&self) -> bool {
        self.batch.claims.any_left()
    }

    fn run(self: Box<Self>) {
        let _busy = self.fanout.busy();
        self.fanout.take_calls(&self.batch, End::Back);
    }
}

/// A thread counted as working on a slate; see [`Fanout::busy`].
pub(super) struct Busy<'a> {
    count: &'a AtomicUsize,
    held: bool,
}

impl Busy<'_> {
    /// Not counted while the request waits (on a networked store): its core is free.
    pub(super) fn idle(&mut self) {
        if std::mem::replace(&mut self.held, false) {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Counted again.
    pub(super) fn working(&mut self) {
        if !std::mem::replace(&mut self.held, true) {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.idle();
    }
}

#[cfg(test)]
mod tests {
    use super::{ChoreCount, Claims, End};

    /// One end alone takes the calls in its order, and nothing past the last.
    #[test]
    fn each_end_takes_calls_in_its_own_order() {
        let claims = Claims::new(3);
        let front: Vec<_> = std::iter::from_fn(|| claims.take(End::Front)).collect();
        assert_eq!(front, [0, 1, 2]);
        assert!(!claims.any_left());
        assert_eq!(claims.take(End::Back), None);

        let claims = Claims::new(3);
        let back: Vec<_> = std::iter::from_fn(|| claims.take(End::Back)).collect();
        assert_eq!(back, [2, 1, 0]);
    }

    /// Workers taking from both ends at once take every call exactly once: the request's
    /// thread a run from the front, the helpers the rest from the back.
    #[test]
    fn both_ends_at_once_take_every_call_once() {
        const TOTAL: usize = 10_000;
        for _ in 0..20 {
            let claims = Claims::new(TOTAL);
            let take = |end| {
                let claims = &claims;
                move || std::iter::from_fn(|| claims.take(end)).collect::<Vec<_>>()
            };
            let (front, backs) = std::thread::scope(|s| {
                let backs: Vec<_> = (0..3).map(|_| s.spawn(take(End::Back))).collect();
                let front = take(End::Front)();
                let backs: Vec<_> = backs.into_iter().map(|h| h.join().unwrap()).collect();
                (front, backs)
            });
            assert_eq!(front, (0..front.len()).collect::<Vec<_>>());
            let mut back: Vec<usize> = backs.into_iter().flatten().collect();
            back.sort_unstable();
            assert_eq!(back, (front.len()..TOTAL).collect::<Vec<_>>());
            assert!(!claims.any_left());
        }
    }

    /// A reader waits for the chores handed over before it, however many later ones have
    /// finished meanwhile, and not for the later ones.
    #[test]
    fn waiting_for_chores_counts_the_ones_handed_over_before() {
        let chores = ChoreCount::default();
        let early = chores.start();
        let slot = chores.turn();
        let late = chores.start();
        chores.finish(late);
        assert!(!chores.drained(slot), "an earlier chore is still running");
        let later = chores.start();
        chores.finish(early);
        assert!(chores.drained(slot), "a later chore is not waited for");

        // The next reader waits for the chore started after the first one turned.
        let next = chores.turn();
        assert!(!chores.drained(next));
        chores.finish(later);
        assert!(chores.drained(next));
    }
}
