//! Per-connection timers for HTTP/1, run by one watchdog task per
//! connection: the request-head timeout and the route timeout.
//!
//! tokio's timers cost a timer-wheel insertion and removal (each under the
//! driver's lock), an allocation and a poll on every wake-up; per request
//! they came to ~1,400 instructions for hyper's `header_read_timeout` and
//! ~1,200 for the route timeout, a tenth of all the work of a proxied
//! request. An HTTP/1 connection serves one request at a time, so one
//! lazily re-armed timer per connection does for both, as nginx's timers
//! do: a request stores a deadline in an atomic, and only a deadline
//! earlier than the one the watchdog sleeps towards (a route with a shorter
//! timeout than the last) wakes the watchdog to re-arm. HTTP/2 streams keep
//! tokio timers (they overlap on a connection).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// No route deadline is set.
const NONE: u64 = u64::MAX;
/// The route deadline has passed (set by the watchdog).
const FIRED: u64 = 0;

/// The timers of one HTTP/1 connection.
pub struct ConnClock {
    origin: Instant,
    /// `request_headers_timeout`, if enabled.
    head_timeout: Option<Duration>,
    /// A request is being served (HTTP/1: one at a time).
    serving: AtomicBool,
    /// When the last response ended, in milliseconds since `origin`.
    idle_since_ms: AtomicU64,
    /// The connection turned out to be HTTP/2: no head timeout here.
    h2: AtomicBool,
    /// The route deadline of the request being served, in milliseconds
    /// since `origin` (offset by one so it is never `FIRED`), or `NONE`.
    route_deadline: AtomicU64,
    /// What the watchdog sleeps towards, in the same unit.
    watchdog_target: AtomicU64,
    /// Wakes the watchdog for an earlier deadline.
    rearm: Notify,
    /// The connection's task, woken when the route deadline passes (a
    /// task's waker never changes, so it is stored once).
    task: OnceLock<Waker>,
}

impl ConnClock {
    pub fn new(head_timeout: Option<Duration>) -> Arc<Self> {
        Arc::new(ConnClock {
            origin: Instant::now(),
            head_timeout,
            serving: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            route_deadline: AtomicU64::new(NONE),
            watchdog_target: AtomicU64::new(NONE),
            rearm: Notify::new(),
            task: OnceLock::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    fn at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms.saturating_sub(1))
    }

    /// A request head has arrived: the head clock stops.
    pub fn request_started(&self) {
        self.serving.store(true, Ordering::Release);
    }

    /// The response has gone out: the head clock runs again.
    pub fn request_ended(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::Release);
        self.serving.store(false, Ordering::Release);
    }

    /// The connection is HTTP/2: the head clock stops for good.
    pub fn mark_http2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    /// Runs the connection's timers until the head timeout passes (then
    /// returns: the caller closes the connection). Never returns without a
    /// head timeout.
    pub async fn watch(&self) {
        loop {
            let now = self.now_ms();
            // The route deadline.
            let route = self.route_deadline.load(Ordering::Acquire);
            if route != NONE
                && route != FIRED
                && route <= now
                && self
                    .route_deadline
                    .compare_exchange(route, FIRED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                && let Some(task) = self.task.get()
            {
                task.wake_by_ref();
            }
            // The head clock: runs while no request is served.
            let mut head = NONE;
            if let Some(t) = self.head_timeout
                && !self.h2.load(Ordering::Relaxed)
            {
                let t = t.as_millis() as u64;
                head = if self.serving.load(Ordering::Acquire) {
                    now + t
                } else {
                    let due = self.idle_since_ms.load(Ordering::Acquire) + t;
                    if due <= now {
                        return;
                    }
                    due
                };
            }
            let route = self.route_deadline.load(Ordering::Acquire);
            let route = if route == FIRED { NONE } else { route };
            let target = head.min(route);
            self.watchdog_target.store(target, Ordering::Release);
            let rearm = self.rearm.notified();
            if target == NONE {
                rearm.await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep_until(self.at(target)) => {}
                    _ = rearm => {}
                }
            }
        }
    }

    /// Sets the route deadline `d` from now, waking the watchdog only if
    /// it sleeps towards a later time.
    fn set_route_deadline(&self, d: Duration) -> u64 {
        let deadline = self.now_ms() + d.as_millis() as u64;
        self.route_deadline.store(deadline, Ordering::Release);
        if deadline < self.watchdog_target.load(Ordering::Acquire) {
            self.rearm.notify_one();
        }
        deadline
    }
}

/// A request's route timer: the connection's clock for HTTP/1, a tokio
/// timer for an HTTP/2 stream.
pub enum RouteTimer {
    Conn {
        clock: Arc<ConnClock>,
        /// The deadline this timer last set (to clear only its own).
        deadline: u64,
    },
    Tokio(Pin<Box<Sleep>>),
}

impl RouteTimer {
    /// A timer running for `d` from now.
    pub fn start(clock: Option<&Arc<ConnClock>>, d: Duration) -> Self {
        match clock {
            Some(c) => RouteTimer::Conn {
                clock: c.clone(),
                deadline: c.set_route_deadline(d),
            },
            None => RouteTimer::Tokio(Box::pin(tokio::time::sleep(d))),
        }
    }

    /// Runs again for `d` from now.
    pub fn restart(&mut self, d: Duration) {
        match self {
            RouteTimer::Conn { clock, deadline } => *deadline = clock.set_route_deadline(d),
            RouteTimer::Tokio(s) => s.as_mut().reset(Instant::now() + d),
        }
    }

    /// Stops until the next [`RouteTimer::restart`].
    pub fn pause(&mut self) {
        match self {
            RouteTimer::Conn { clock, deadline } => {
                // Clears this timer's deadline, or its firing; a later
                // request's deadline is not ours to clear.
                let current = clock.route_deadline.load(Ordering::Acquire);
                if current == *deadline || current == FIRED {
                    let _ = clock.route_deadline.compare_exchange(
                        current,
                        NONE,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                *deadline = NONE;
            }
            // "Never": tokio caps far deadlines anyway.
            RouteTimer::Tokio(s) => s
                .as_mut()
                .reset(Instant::now() + Duration::from_secs(86400 * 365)),
        }
    }

    /// Ready once the deadline has passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            RouteTimer::Conn { clock, deadline } => {
                let task = clock.task.get_or_init(|| cx.waker().clone());
                if *deadline != NONE && clock.route_deadline.load(Ordering::Acquire) == FIRED {
                    return Poll::Ready(());
                }
                if !task.will_wake(cx.waker()) {
                    // Polled from another task (never, for hyper's HTTP/1
                    // server): fall back to a tokio timer.
                    let at = if *deadline == NONE {
                        Instant::now() + Duration::from_secs(86400 * 365)
                    } else {
                        clock.at(*deadline)
                    };
                    *self = RouteTimer::Tokio(Box::pin(tokio::time::sleep_until(at)));
                    return self.poll_expired(cx);
                }
                Poll::Pending
            }
            RouteTimer::Tokio(s) => s.as_mut().poll(cx),
        }
    }
}

impl Drop for RouteTimer {
    fn drop(&mut self) {
        if let RouteTimer::Conn { .. } = self {
            self.pause();
        }
    }
}

/// A future polled only when it has asked to be: once at first, then only
/// after its own waker fired. A connection task wakes for every read and
/// write; a future that is nearly always pending (the drain signal) then
/// costs one atomic swap per wake-up instead of a poll.
pub struct WakeGate<F> {
    fut: Pin<Box<F>>,
    gate: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    woken: AtomicBool,
    /// The waker of the task polling the gate (a task's waker never changes).
    task: OnceLock<Waker>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(w) = self.task.get() {
            w.wake_by_ref();
        }
    }
}

impl<F: Future> WakeGate<F> {
    pub fn new(fut: F) -> Self {
        let gate = Arc::new(Gate::default());
        gate.woken.store(true, Ordering::Relaxed);
        WakeGate {
            fut: Box::pin(fut),
            gate,
        }
    }
}

impl<F: Future> Future for WakeGate<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let task = self.gate.task.get_or_init(|| cx.waker().clone());
        // Polled from another task than the first: no gating, just poll.
        let same_task = task.will_wake(cx.waker());
        if same_task && !self.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.gate.clone());
        let mut inner = Context::from_waker(if same_task { &waker } else { cx.waker() });
        self.fut.as_mut().poll(&mut inner)
    }
}

/// Ends a task when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
