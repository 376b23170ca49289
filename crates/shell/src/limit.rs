//! An adaptive bound on unary calls served at once, after Netflix's concurrency-limits
//! (Gradient2): the limit follows what the process can really serve instead of a number
//! fixed at deploy time.
//!
//! Why: a fixed bound far above capacity (1,024 calls against a pool of a few database
//! connections) sheds nothing until it is reached and queues everything below it, so admitted
//! calls waited 2 s instead of 2 ms and goodput fell to a tenth. Latency is the signal: when
//! calls take longer than they usually do, more concurrency only queues, so the limit shrinks;
//! when they complete at their usual speed, it grows.
//!
//! How, per window of completed calls (about one limit's worth, so a window lasts about one
//! round trip of the whole limit):
//! - the window's average latency is the *short* latency; the *long* latency is the usual one,
//!   an average over many windows that falls quickly and rises only slowly (a time constant of
//!   a minute) while the limit is in use, so that sustained overload does not teach it that
//!   queueing is normal (Gradient2's drift, which its 10-minute windows only slow down);
//! - gradient = clamp(tolerance × long / short, 0.5, 1): 1 while calls are no slower than
//!   usual, down to 0.5 when they queue;
//! - new limit = limit × gradient + √limit (room to probe for more), smoothed, and kept between
//!   a floor (a few calls) and `--max-concurrent-calls`;
//! - a window in which at most half the limit was used leaves the limit as it is: latency says
//!   nothing about a limit the load never reached, and growing it then would let it run away.
//!
//! The hot path is atomics only: admission is an increment checked against the limit, a
//! completion adds its latency to the window's sums. The algorithm runs once per window, under
//! a lock nobody waits for (a completion that finds it taken leaves the window to the next).
//!
//! A call that finds the limit reached may wait a moment for a slot (see [`AdaptiveLimit::wait`]):
//! a slot given back goes to the *newest* waiter (last in, first out), so that under sustained
//! overload the calls admitted are those that have waited least — their latency stays near
//! normal — while the oldest run out of time and are shed. The queue is touched only while
//! someone waits.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The limit never falls below this many calls (nor above `--max-concurrent-calls`): a few
/// calls in flight keep measuring the latency that lets the limit grow again, and a client's
/// burst of a dozen calls at a process that has just started is not shed.
pub(crate) const MIN_LIMIT: usize = 16;
/// Where the limit starts: at the floor, so that the first windows measure latency without
/// queueing, the usual latency the limit is then judged against (starting higher under a
/// crowd, the first windows would teach it that queueing is usual). It grows within seconds
/// when the load needs it.
const INITIAL_LIMIT: usize = MIN_LIMIT;
/// How much slower than usual calls may get before the limit shrinks (Netflix's default).
const TOLERANCE: f64 = 1.5;
/// Weight of a window's new limit against the current one.
const SMOOTHING: f64 = 0.2;
/// Windows average at least this many calls (the latency of one call is noise) and at most
/// this many (so that a large limit still reacts within a bounded number of calls).
const MIN_WINDOW: usize = 16;
const MAX_WINDOW: usize = 256;
/// Weight of a window's latency in the long latency when it is lower, and when the limit was
/// not in use (neither case can be queueing the limit let in).
const LONG_FALL: f64 = 0.1;
/// Time constant with which the long latency rises while the limit is in use.
const LONG_RISE_TIME: Duration = Duration::from_secs(60);

/// The algorithm: from a window of completed calls to the next limit. Pure, so that it is
/// tested by feeding it windows.
#[derive(Debug, Clone)]
pub(crate) struct Gradient {
    limit: f64,
    min: f64,
    max: f64,
    /// Seconds; `None` until the first window.
    long_rtt: Option<f64>,
}

/// What one window of completed calls showed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Average latency of the window's calls, from admission to answer.
    pub(crate) average_rtt: Duration,
    /// Most calls in flight seen at a completion in the window.
    pub(crate) max_in_flight: usize,
    /// How long the window lasted.
    pub(crate) duration: Duration,
}

impl Gradient {
    pub(crate) fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            limit: INITIAL_LIMIT.min(max) as f64,
            min: MIN_LIMIT.min(max) as f64,
            max: max as f64,
            long_rtt: None,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        // In [min, max], both from `usize`: the cast cannot truncate.
        self.limit as usize
    }

    /// Calls a window averages over at the current limit.
    pub(crate) fn window_size(&self) -> usize {
        self.limit().clamp(MIN_WINDOW, MAX_WINDOW)
    }

    /// Takes in a window; returns the new limit.
    pub(crate) fn update(&mut self, window: Window) -> usize {
        let short = window.average_rtt.as_secs_f64().max(1e-9);
        let in_use = window.max_in_flight as f64 >= self.limit / 2.0;
        // At the floor, a slower window cannot be queueing the limit let in: the service
        // itself got slower (a slower disk, a colder cache), and the usual latency follows it
        // at once, or the limit would stay at the floor for good.
        let at_floor = self.limit <= self.min;
        let long = match self.long_rtt {
            None => short,
            Some(long) if short < long || !in_use || at_floor => long + (short - long) * LONG_FALL,
            Some(long) => {
                let weight =
                    (window.duration.as_secs_f64() / LONG_RISE_TIME.as_secs_f64()).min(1.0);
                long + (short - long) * weight
            }
        };
        self.long_rtt = Some(long);
        if !in_use {
            return self.limit();
        }
        let gradient = (TOLERANCE * long / short).clamp(0.5, 1.0);
        let probe = self.limit.sqrt().max(4.0);
        let target = self.limit * gradient + probe;
        // Kept fractional: at a small limit one window's growth is less than a call.
        self.limit =
            (self.limit * (1.0 - SMOOTHING) + target * SMOOTHING).clamp(self.min, self.max);
        self.limit()
    }
}

/// The live limit: what admission checks, and the window it is fed from.
#[derive(Debug)]
pub(crate) struct AdaptiveLimit {
    limit: AtomicUsize,
    in_flight: AtomicUsize,
    window_size: AtomicUsize,
    window_calls: AtomicUsize,
    window_rtt_nanos: AtomicU64,
    window_max_in_flight: AtomicUsize,
    algorithm: Mutex<(Gradient, Instant)>,
    /// Calls waiting for a slot, oldest first; each is handed a slot through its sender. A
    /// sender whose waiter left (shed, cancelled) is skipped when its turn comes.
    queue: Mutex<VecDeque<oneshot::Sender<()>>>,
    /// `queue`'s length, read without the lock on every slot given back.
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// What [`AdaptiveLimit::wait`] got a call.
pub(crate) enum Wait {
    Admitted(Slot),
    Waiting(Waiter),
    /// As many calls wait already as may.
    Full,
}

impl AdaptiveLimit {
    /// A limit between the floor and `max`; up to `max_waiting` calls may wait over it.
    pub(crate) fn new(max: usize, max_waiting: usize) -> Arc<Self> {
        let gradient = Gradient::new(max);
        Arc::new(Self {
            limit: AtomicUsize::new(gradient.limit()),
            in_flight: AtomicUsize::new(0),
            window_size: AtomicUsize::new(gradient.window_size()),
            window_calls: AtomicUsize::new(0),
            window_rtt_nanos: AtomicU64::new(0),
            window_max_in_flight: AtomicUsize::new(0),
            algorithm: Mutex::new((gradient, Instant::now())),
            queue: Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
            max_waiting,
        })
    }

    /// A limit that stays at `max`: no window ever closes.
    pub(crate) fn fixed(max: usize, max_waiting: usize) -> Arc<Self> {
        let limit = Self::new(max, max_waiting);
        limit.limit.store(max, Ordering::Relaxed);
        limit.window_size.store(usize::MAX, Ordering::Relaxed);
        limit
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Calls admitted whose answer is not ready yet.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A slot for one call, or `None` when the limit is reached.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        self.take().then(|| Slot::new(self.clone()))
    }

    /// A place among the calls waiting for a slot, for a call that found none (or the slot
    /// given back meanwhile).
    pub(crate) fn wait(self: &Arc<Self>) -> Wait {
        if self.max_waiting == 0 {
            return Wait::Full;
        }
        let (sender, receiver) = oneshot::channel();
        {
            let mut queue = lock(&self.queue);
            // Waiters that left (shed at the end of their wait, cancelled) are the oldest under
            // last in, first out: drop them from the front as they pile up.
            while queue.front().is_some_and(oneshot::Sender::is_closed) {
                queue.pop_front();
            }
            if queue.len() >= self.max_waiting {
                queue.retain(|sender| !sender.is_closed());
                if queue.len() >= self.max_waiting {
                    return Wait::Full;
                }
            }
            queue.push_back(sender);
            self.waiting.store(queue.len(), Ordering::SeqCst);
        }
        let waiter = Waiter {
            limit: self.clone(),
            receiver: Some(receiver),
        };
        // A slot given back between the check above and joining the queue saw nobody
        // waiting: look again, now that a slot given back will see this call.
        match self.try_acquire() {
            Some(slot) => Wait::Admitted(slot),
            None => Wait::Waiting(waiter),
        }
    }

    /// Takes a place under the limit if there is one. A compare-and-swap rather than an
    /// increment undone on failure: a failed attempt must never make the count look higher
    /// than it is, or a slot given back at that moment could be missed by the waiters.
    fn take(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut current = self.in_flight.load(Ordering::SeqCst);
        while current < limit {
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
        false
    }

    /// Gives a place back, and hands every place free to the newest calls waiting for one
    /// (more than one when the adaptive limit has just grown).
    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        while self.waiting.load(Ordering::SeqCst) != 0 && self.take() {
            let mut queue = lock(&self.queue);
            let handed = loop {
                match queue.pop_back() {
                    Some(waiter) => {
                        if waiter.send(()).is_ok() {
                            break true;
                        }
                    }
                    None => break false,
                }
            };
            self.waiting.store(queue.len(), Ordering::SeqCst);
            if !handed {
                // Under the lock: a call joining the queue after this looks at the limit again.
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
    }

    fn record(&self, rtt: Duration, in_flight: usize) {
        let window_size = self.window_size.load(Ordering::Relaxed);
        if window_size == usize::MAX {
            return;
        }
        let nanos = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
        self.window_rtt_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.window_max_in_flight
            .fetch_max(in_flight, Ordering::Relaxed);
        let calls = self.window_calls.fetch_add(1, Ordering::AcqRel) + 1;
        if calls < window_size {
            return;
        }
        // Whoever takes the lock closes the window; a completion that finds it taken leaves
        // its sample to the next window rather than wait on the hot path.
        let Ok(mut algorithm) = self.algorithm.try_lock() else {
            return;
        };
        let calls = self.window_calls.swap(0, Ordering::AcqRel);
        if calls == 0 {
            return;
        }
        let total = self.window_rtt_nanos.swap(0, Ordering::Relaxed);
        let max_in_flight = self.window_max_in_flight.swap(0, Ordering::Relaxed);
        let (gradient, window_started) = &mut *algorithm;
        let now = Instant::now();
        let limit = gradient.update(Window {
            average_rtt: Duration::from_nanos(total / calls as u64),
            max_in_flight,
            duration: now.saturating_duration_since(*window_started),
        });
        *window_started = now;
        self.window_size
            .store(gradient.window_size(), Ordering::Relaxed);
        self.limit.store(limit, Ordering::Relaxed);
    }
}

/// One admitted call's place under the limit: given back when dropped. A call whose answer
/// is ready is [`Slot::answered`], which feeds its latency to the limit; a call dropped before
/// (its client left) teaches nothing about latency.
#[derive(Debug)]
pub(crate) struct Slot {
    limit: Arc<AdaptiveLimit>,
    admitted: Instant,
}

/// A call waiting for a slot: ready with one when a call gives its slot back to it. Dropped
/// (its wait ran out, or its client left) with a slot just handed to it, it passes the slot on.
#[derive(Debug)]
pub(crate) struct Waiter {
    limit: Arc<AdaptiveLimit>,
    receiver: Option<oneshot::Receiver<()>>,
}

impl Future for Waiter {
    type Output = Slot;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Slot> {
        let Some(receiver) = self.receiver.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(receiver).poll(cx) {
            Poll::Ready(Ok(())) => {
                self.receiver = None;
                Poll::Ready(Slot::new(self.limit.clone()))
            }
            // The sender went without a slot: only when the limit itself is dropped.
            Poll::Ready(Err(_)) => {
                self.receiver = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.limit.release();
            }
        }
    }
}

impl Slot {
    fn new(limit: Arc<AdaptiveLimit>) -> Self {
        Self {
            limit,
            admitted: Instant::now(),
        }
    }

    pub(crate) fn answered(self) {
        let in_flight = self.limit.in_flight.load(Ordering::Relaxed);
        self.limit.record(self.admitted.elapsed(), in_flight);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limit.release();
    }
}

/// A lock whose holder cannot leave its data half-changed (no code under it panics); a
/// poisoned one is used as it stands.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USUAL: Duration = Duration::from_millis(2);

    fn window(average_rtt: Duration, max_in_flight: usize) -> Window {
        Window {
            average_rtt,
            max_in_flight,
            duration: Duration::from_millis(10),
        }
    }

    /// Feeds `windows` windows of calls at `rtt`, the limit fully in use.
    fn feed(gradient: &mut Gradient, rtt: Duration, windows: usize) -> usize {
        for _ in 0..windows {
            let in_flight = gradient.limit();
            gradient.update(window(rtt, in_flight));
        }
        gradient.limit()
    }

    #[test]
    fn starts_low_and_grows_while_calls_complete_at_their_usual_speed() {
        let mut gradient = Gradient::new(1024);
        let start = gradient.limit();
        assert_eq!(start, INITIAL_LIMIT);
        let grown = feed(&mut gradient, USUAL, 50);
        assert!(grown > start * 2, "{start} -> {grown}");
        let more = feed(&mut gradient, USUAL, 50);
        assert!(more > grown, "{grown} -> {more}");
    }

    #[test]
    fn never_grows_past_the_ceiling() {
        let mut gradient = Gradient::new(100);
        assert_eq!(feed(&mut gradient, USUAL, 10_000), 100);
    }

    #[test]
    fn shrinks_when_latency_rises_and_grows_back_when_it_recovers() {
        let mut gradient = Gradient::new(1024);
        let grown = feed(&mut gradient, USUAL, 200);
        let shrunk = feed(&mut gradient, USUAL * 10, 10);
        assert!(shrunk < grown * 2 / 3, "{grown} -> {shrunk}");
        let recovered = feed(&mut gradient, USUAL, 100);
        assert!(recovered > shrunk * 2, "{shrunk} -> {recovered}");
    }

    #[test]
    fn a_service_that_got_slower_for_good_is_relearnt_at_the_floor() {
        // Ten times slower whatever the limit: not queueing. The limit first shrinks to the
        // floor, where the slower latency becomes the usual one, and then grows again.
        let mut gradient = Gradient::new(1024);
        feed(&mut gradient, USUAL, 200);
        let mut lowest = usize::MAX;
        for _ in 0..100 {
            lowest = lowest.min(feed(&mut gradient, USUAL * 10, 1));
        }
        assert_eq!(lowest, MIN_LIMIT);
        let relearnt = feed(&mut gradient, USUAL * 10, 200);
        assert!(relearnt > MIN_LIMIT, "grows again: {relearnt}");
    }

    #[test]
    fn latency_within_the_tolerance_does_not_shrink_it() {
        let mut gradient = Gradient::new(1024);
        let grown = feed(&mut gradient, USUAL, 100);
        let after = feed(&mut gradient, USUAL * 14 / 10, 20);
        assert!(after >= grown, "{grown} -> {after}");
    }

    #[test]
    fn sustained_overload_does_not_teach_it_that_queueing_is_usual() {
        // Latency that the limit itself causes: proportional to the calls let in, as when
        // they queue for a pool of 8 connections each busy 2 ms per call.
        let mut gradient = Gradient::new(1024);
        let mut limits = Vec::new();
        for _ in 0..2_000 {
            let limit = gradient.limit();
            let rtt = USUAL.mul_f64((limit as f64 / 8.0).max(1.0));
            gradient.update(window(rtt, limit));
            limits.push(limit);
        }
        let late = &limits[1_000..];
        let highest = late.iter().copied().max().unwrap_or_default();
        // Around 1.5 x the floor's 16 plus the probe (~30) is where the tolerance puts it;
        // it creeps up only as fast as the long latency rises (a one-minute time constant;
        // these 2,000 windows are 20 s). Gradient2's plain average, or a baseline learnt
        // under a crowd, runs away to several times this.
        assert!(highest <= 40, "stays near what the pool serves: {highest}");
    }

    #[test]
    fn a_limit_the_load_never_reached_is_left_as_it_is() {
        let mut gradient = Gradient::new(1024);
        let start = gradient.limit();
        for _ in 0..100 {
            gradient.update(window(USUAL, 3));
        }
        assert_eq!(gradient.limit(), start, "no growth without use");
        for _ in 0..100 {
            gradient.update(window(USUAL * 10, 3));
        }
        assert_eq!(
            gradient.limit(),
            start,
            "slow calls at low use are not queueing"
        );
    }

    #[test]
    fn never_below_the_floor_nor_the_ceiling_when_the_ceiling_is_lower() {
        let mut gradient = Gradient::new(2);
        assert_eq!(gradient.limit(), 2);
        assert_eq!(feed(&mut gradient, USUAL * 100, 100), 2);
        let mut gradient = Gradient::new(1024);
        feed(&mut gradient, USUAL, 100);
        let lowest = (0..1_000)
            .map(|_| feed(&mut gradient, USUAL * 100, 1))
            .min();
        assert_eq!(lowest, Some(MIN_LIMIT));
    }

    #[test]
    fn admission_sheds_at_the_limit_and_a_window_moves_it() {
        let limit = AdaptiveLimit::new(1024, 0);
        let slots: Vec<Slot> = std::iter::from_fn(|| limit.try_acquire()).collect();
        assert_eq!(slots.len(), INITIAL_LIMIT);
        assert_eq!(limit.in_flight(), INITIAL_LIMIT);
        assert!(limit.try_acquire().is_none(), "shed at the limit");
        drop(slots);
        assert_eq!(limit.in_flight(), 0);
        // Windows of calls that fill the limit and all take about as long (whatever the clock
        // says, they are alike): the limit grows by its probe.
        for _ in 0..20 {
            let slots: Vec<Slot> = std::iter::from_fn(|| limit.try_acquire()).collect();
            for slot in slots {
                slot.answered();
            }
        }
        assert_eq!(limit.in_flight(), 0);
        assert!(limit.limit() > INITIAL_LIMIT, "{}", limit.limit());
    }

    /// Polls a waiter once: its slot if it has been handed one.
    fn poll_once(waiter: &mut Waiter) -> Option<Slot> {
        let mut context = Context::from_waker(std::task::Waker::noop());
        match Pin::new(waiter).poll(&mut context) {
            Poll::Ready(slot) => Some(slot),
            Poll::Pending => None,
        }
    }

    fn waiting(limit: &Arc<AdaptiveLimit>) -> Waiter {
        match limit.wait() {
            Wait::Waiting(waiter) => waiter,
            Wait::Admitted(_) => panic!("admitted over the limit"),
            Wait::Full => panic!("the queue is full"),
        }
    }

    #[test]
    fn a_slot_given_back_goes_to_the_newest_waiter() {
        let limit = AdaptiveLimit::fixed(1, 4);
        let first = limit.try_acquire().expect("room");
        let mut older = waiting(&limit);
        let mut newer = waiting(&limit);
        assert!(poll_once(&mut newer).is_none(), "nothing given back yet");
        drop(first);
        let slot = poll_once(&mut newer).expect("the newest waiter gets the slot");
        assert!(poll_once(&mut older).is_none(), "the older one still waits");
        assert_eq!(limit.in_flight(), 1, "the slot passed on, not freed");
        drop(slot);
        assert!(poll_once(&mut older).is_some(), "then the older one");
        drop(older);
        assert_eq!(limit.in_flight(), 0);
        assert_eq!(limit.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_slot_given_back_after_the_limit_grew_frees_every_place_it_gained() {
        let limit = AdaptiveLimit::fixed(1, 4);
        let first = limit.try_acquire().expect("room");
        let mut waiters: Vec<Waiter> = (0..3).map(|_| waiting(&limit)).collect();
        // The adaptive limit grows by two while they wait: the next slot given back lets all
        // three in, not one.
        limit.limit.store(3, Ordering::Relaxed);
        drop(first);
        let slots: Vec<Slot> = waiters.iter_mut().filter_map(poll_once).collect();
        assert_eq!(slots.len(), 3);
        assert_eq!(limit.in_flight(), 3);
        drop(slots);
        drop(waiters);
        assert_eq!(limit.in_flight(), 0);
    }

    #[test]
    fn a_waiter_that_leaves_with_a_slot_passes_it_on() {
        let limit = AdaptiveLimit::fixed(1, 4);
        let first = limit.try_acquire().expect("room");
        let mut older = waiting(&limit);
        let newer = waiting(&limit);
        drop(first);
        // The newest was handed the slot but left (shed by its wait, or its client gone)
        // before it looked: the slot goes on to the next waiter instead of being lost.
        drop(newer);
        assert!(poll_once(&mut older).is_some());
        drop(older);
        assert_eq!(limit.in_flight(), 0);
        // And with nobody left waiting, a slot given back is free.
        drop(waiting_or_admitted(&limit));
        assert_eq!(limit.in_flight(), 0);
    }

    fn waiting_or_admitted(limit: &Arc<AdaptiveLimit>) -> Slot {
        match limit.wait() {
            Wait::Admitted(slot) => slot,
            _ => panic!("a free slot was not taken"),
        }
    }

    #[test]
    fn calls_past_the_queue_bound_are_refused_and_no_queue_refuses_at_once() {
        let limit = AdaptiveLimit::fixed(1, 1);
        let _slot = limit.try_acquire().expect("room");
        let _waiter = waiting(&limit);
        assert!(matches!(limit.wait(), Wait::Full));
        let no_queue = AdaptiveLimit::fixed(1, 0);
        let _slot = no_queue.try_acquire().expect("room");
        assert!(matches!(no_queue.wait(), Wait::Full));
    }

    #[test]
    fn a_slot_dropped_unanswered_is_given_back_without_a_sample() {
        let limit = AdaptiveLimit::new(1024, 0);
        let slot = limit.try_acquire().expect("room");
        drop(slot);
        assert_eq!(limit.in_flight(), 0);
        assert_eq!(limit.window_calls.load(Ordering::Relaxed), 0);
    }
}
