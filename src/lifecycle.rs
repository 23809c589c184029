//! One lifecycle for every long-running part of the server: a single [`Shutdown`] signal, and
//! [`Services`], which starts each part on a named thread of its own (a plain thread, or one
//! running a current-thread tokio runtime) and joins them all at exit.
//!
//! Nothing polls: blocking parts wait on the signal's condition variable (or on their own
//! channel, woken by an [`Shutdown::on_trigger`] hook), async parts select on
//! [`Shutdown::triggered`]. A part must return soon after the signal fires; [`Services::stop`]
//! fires it and joins the parts in reverse start order. This module knows no other part of the
//! server: it owns threads, the signal and the join, nothing else.

use std::future::Future;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most threads in the blocking pool of each [`Services::spawn_async`] runtime (tokio's default
/// is 512: without a cap, a semaphore of N jobs still leaves a new thread behind whenever a job
/// starts before the thread of the one that just finished is idle again).
pub const MAX_BLOCKING_THREADS: usize = 16;

type Hook = Box<dyn FnOnce() + Send>;

/// A failure to start serving. Most are permanent (a setting, a file): starting again cannot
/// help. A `temporary` one may pass by itself (an address in use or not configured yet, no
/// free port, no thread to be had), so a restart may help; `uringseed serve` exits with a
/// different status for each (2 and 3).
#[derive(Debug)]
pub struct StartError {
    pub message: String,
    pub temporary: bool,
}

impl StartError {
    /// A permanent failure.
    pub fn new(message: impl Into<String>) -> StartError {
        StartError {
            message: message.into(),
            temporary: false,
        }
    }

    /// A failure that may pass by itself.
    pub fn temporary(message: impl Into<String>) -> StartError {
        StartError {
            message: message.into(),
            temporary: true,
        }
    }

    /// A socket that could not be bound: temporary unless permission or the address itself
    /// is the problem.
    pub fn bind(message: impl Into<String>, e: &io::Error) -> StartError {
        match e.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput => {
                StartError::new(message)
            }
            _ => StartError::temporary(message),
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StartError {}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> Self {
        StartError::temporary(format!("cannot start a server thread: {e}"))
    }
}

struct Inner {
    /// Whether the signal fired (read without the lock on hot paths).
    fired: std::sync::atomic::AtomicBool,
    /// Whether the signal fired, and the hooks still to run when it does.
    state: Mutex<(bool, Vec<Hook>)>,
    cv: Condvar,
    watch: tokio::sync::watch::Sender<bool>,
}

/// The server's one shutdown signal; clones share it.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shutdown({})", self.is_triggered())
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            inner: Arc::new(Inner {
                fired: std::sync::atomic::AtomicBool::new(false),
                state: Mutex::new((false, Vec::new())),
                cv: Condvar::new(),
                watch: tokio::sync::watch::channel(false).0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (bool, Vec<Hook>)> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fires the signal (once; later calls do nothing): wakes every waiter and runs the hooks.
    pub fn trigger(&self) {
        let hooks = {
            let mut st = self.state();
            if st.0 {
                return;
            }
            st.0 = true;
            self.inner
                .fired
                .store(true, std::sync::atomic::Ordering::Release);
            std::mem::take(&mut st.1)
        };
        self.inner.cv.notify_all();
        self.inner.watch.send_replace(true);
        for hook in hooks {
            hook();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.fired.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Blocks until the signal fires or `deadline` passes; true if it fired.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut st = self.state();
        while !st.0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .inner
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// [`Shutdown::wait_until`] `now + timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now() + timeout)
    }

    /// Completes once the signal has fired (at once if it already has).
    pub async fn triggered(&self) {
        let mut rx = self.inner.watch.subscribe();
        // The sender lives as long as `self`, so this only returns once the value is true.
        let _ = rx.wait_for(|fired| *fired).await;
    }

    /// A subscription for a loop that waits for the signal many times (one per connection):
    /// cheaper per wait than [`Shutdown::triggered`], which subscribes anew each time.
    pub fn watch(&self) -> ShutdownWatch {
        ShutdownWatch {
            inner: self.inner.clone(),
            rx: self.inner.watch.subscribe(),
        }
    }

    /// Runs `hook` when the signal fires (at once, here, if it already has): for parts that
    /// block on a channel of their own and need a message to wake up.
    pub fn on_trigger(&self, hook: impl FnOnce() + Send + 'static) {
        let mut st = self.state();
        if st.0 {
            drop(st);
            hook();
        } else {
            st.1.push(Box::new(hook));
        }
    }
}

/// One subscriber's view of the [`Shutdown`] signal.
pub struct ShutdownWatch {
    inner: Arc<Inner>,
    rx: tokio::sync::watch::Receiver<bool>,
}

impl ShutdownWatch {
    pub fn is_triggered(&self) -> bool {
        self.inner.fired.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Completes once the signal has fired (at once if it already has).
    pub async fn fired(&mut self) {
        while !self.is_triggered() {
            if self.rx.changed().await.is_err() {
                // The sender lives as long as `inner`, which this holds: unreachable.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The running parts of a server.
pub struct Services {
    shutdown: Shutdown,
    running: Vec<(String, JoinHandle<()>)>,
}

impl Services {
    pub fn new(shutdown: Shutdown) -> Services {
        Services {
            shutdown,
            running: Vec::new(),
        }
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Names of the parts started so far, in start order.
    pub fn names(&self) -> Vec<&str> {
        self.running.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Starts `body` on a thread named `name`; it gets the shutdown signal and must return soon
    /// after it fires.
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        body: impl FnOnce(Shutdown) + Send + 'static,
    ) -> io::Result<()> {
        let name = name.into();
        let shutdown = self.shutdown.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || body(shutdown))?;
        self.running.push((name, handle));
        Ok(())
    }

    /// Starts the future `make(shutdown)` on a thread of its own running a current-thread tokio
    /// runtime (timers and sockets enabled) whose blocking pool has at most
    /// [`MAX_BLOCKING_THREADS`] threads, named `NAME-pool`; the thread ends when the future
    /// does, without waiting for work it left on that pool (each such job bounds itself).
    pub fn spawn_async<F, Fut>(&mut self, name: impl Into<String>, make: F) -> io::Result<()>
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let name = name.into();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(MAX_BLOCKING_THREADS)
            .thread_name(format!("{name}-pool"))
            .build()?;
        self.spawn(name, move |shutdown| {
            rt.block_on(make(shutdown));
            rt.shutdown_background();
        })
    }

    /// Fires the shutdown signal and joins every part, the last started first. A part that
    /// panicked is logged; the others are still joined.
    pub fn stop(mut self) {
        self.shutdown.trigger();
        while let Some((name, handle)) = self.running.pop() {
            if handle.join().is_err() {
                tracing::error!("{name} panicked");
            }
        }
    }
}

impl Drop for Services {
    /// Dropped without [`Services::stop`] (a failed start): stop and join what was started.
    fn drop(&mut self) {
        self.shutdown.trigger();
        for (_, handle) in self.running.drain(..).rev() {
            let _ = handle.join();
        }
    }
}

/// Makes this thread (and the threads it starts after) yield the CPU to the serving threads:
/// nice `n` for it alone.
pub fn lower_thread_priority(n: i32) {
    // SAFETY: setpriority on this thread's own id has no memory effects.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn parts_wake_on_the_signal_and_are_joined_in_reverse_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut s = Services::new(Shutdown::new());
        for i in 0..3 {
            let order = order.clone();
            s.spawn(format!("part-{i}"), move |sd| {
                // An hour-long wait that must end with the signal.
                assert!(sd.wait_timeout(Duration::from_secs(3600)));
                order.lock().unwrap().push(i);
            })
            .unwrap();
        }
        let o = order.clone();
        s.spawn_async("async-part", move |sd| async move {
            tokio::select! {
                _ = sd.triggered() => o.lock().unwrap().push(9),
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        })
        .unwrap();
        assert_eq!(s.names(), ["part-0", "part-1", "part-2", "async-part"]);
        let t = Instant::now();
        s.stop();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let got = order.lock().unwrap().clone();
        assert_eq!(got.len(), 4, "{got:?}");
    }

    #[test]
    fn hooks_run_once_at_trigger_or_at_once_when_late() {
        let sd = Shutdown::new();
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        sd.on_trigger(move || {
            m.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!sd.is_triggered());
        assert!(!sd.wait_timeout(Duration::from_millis(1)));
        sd.trigger();
        sd.trigger();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let m = n.clone();
        sd.on_trigger(move || {
            m.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 11);
        assert!(sd.wait_timeout(Duration::from_secs(3600)));
    }
}
