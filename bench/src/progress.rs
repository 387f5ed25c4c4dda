//! The progress line on standard error: scenario, elapsed time, requests so far. Rewritten in
//! place on a terminal; one line every few seconds otherwise (a CI log).

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What is running now. Cheap to clone.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    tty: bool,
    state: Mutex<State>,
}

struct State {
    label: String,
    started: Instant,
    count: Arc<AtomicU64>,
    unit: &'static str,
    active: bool,
}

impl Progress {
    /// Starts the printer task; it ends when the last clone is dropped.
    pub fn start() -> Self {
        let tty = std::io::stderr().is_terminal();
        let progress = Self {
            inner: Arc::new(Inner {
                tty,
                state: Mutex::new(State {
                    label: String::new(),
                    started: Instant::now(),
                    count: Arc::default(),
                    unit: "requests",
                    active: false,
                }),
            }),
        };
        let weak = Arc::downgrade(&progress.inner);
        let period = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.print();
            }
        });
        progress
    }

    /// A new phase whose progress is `count` (of `unit`, e.g. "requests").
    pub fn track(&self, label: impl Into<String>, count: Arc<AtomicU64>, unit: &'static str) {
        let mut state = self.inner.lock();
        state.label = label.into();
        state.started = Instant::now();
        state.count = count;
        state.unit = unit;
        state.active = true;
    }

    /// Ends the phase: prints its final line.
    pub fn done(&self) {
        self.inner.print();
        let mut state = self.inner.lock();
        state.active = false;
        if self.inner.tty {
            eprintln!();
        }
    }

    /// A message on a line of its own.
    pub fn note(&self, message: &str) {
        let clear = if self.inner.tty { "\r\x1b[2K" } else { "" };
        eprintln!("{clear}loadgen: {message}");
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn print(&self) {
        let line = {
            let state = self.lock();
            if !state.active {
                return;
            }
            format!(
                "[{}] {:.1} s, {} {}",
                state.label,
                state.started.elapsed().as_secs_f64(),
                state.count.load(Ordering::Relaxed),
                state.unit
            )
        };
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}
