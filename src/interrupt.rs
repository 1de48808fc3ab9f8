//! SIGINT, SIGTERM and SIGHUP ask a run to stop: no new work is started, what is in flight
//! is finished (or, for an upload, cut short and closed), the journal stays true, and the
//! run exits non-zero. The handler only records the signal; `poll` returns EINTR at once, so
//! the loop sees it without delay.
//!
//! Owns the handlers and the record of the signal; it must not stop anything itself: the
//! run loop, the engine and the lock waits read [`Interrupt::signal`] and decide.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Whether, and by which signal, the run was asked to stop. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Installs the handlers for this process.
    pub fn install() -> std::io::Result<Interrupt> {
        let interrupt = Interrupt::default();
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal_hook::flag::register_usize(sig, interrupt.signal.clone(), sig as usize)?;
        }
        Ok(interrupt)
    }

    /// The signal received, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::Relaxed) {
            0 => None,
            sig => i32::try_from(sig).ok(),
        }
    }

    /// Asks to stop as a signal would, for the tests.
    #[cfg(test)]
    pub fn trigger(&self, sig: i32) {
        self.signal
            .store(usize::try_from(sig).unwrap_or(1), Ordering::Relaxed);
    }
}

/// A wait (for a lock) that a signal ended: nothing was sent. Exit status 1, like any run a
/// signal stopped, not 2: nothing was wrong with the input.
#[derive(Debug)]
pub struct StoppedWaiting {
    pub signal: i32,
    /// What was being waited for.
    pub waiting: &'static str,
}

impl std::fmt::Display for StoppedWaiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted by {} while {}: nothing was sent and no log touched",
            signal_name(self.signal),
            self.waiting
        )
    }
}

impl std::error::Error for StoppedWaiting {}

/// A signal's name, for messages.
pub fn signal_name(sig: i32) -> String {
    match sig {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        SIGHUP => "SIGHUP".into(),
        other => format!("signal {other}"),
    }
}
