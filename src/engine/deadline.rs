//! What the engine decides by the clock: when a silent server counts as stalled, how long a
//! run asked to stop still waits for answers, how long one `poll` may sleep.
//!
//! Pure: the time is passed in (the loop in [`super`] reads the clock around each poll), so
//! each decision is unit-tested without waiting. No I/O here, no reading of the clock.

use std::time::{Duration, Instant};

use super::EngineErrorKind;

/// Once a signal asked the run to stop, how long the server may stay silent before what it
/// has not answered is given up: long enough for a slow link to answer what is in flight,
/// well within systemd's stop timeout (90 s) and a person's patience, where the stall
/// timeout may be minutes.
pub const INTERRUPTED_GRACE: Duration = Duration::from_secs(3);

/// How long one poll may sleep, so that the loop looks at the clock regularly (a signal
/// interrupts the sleep at once).
const MAX_POLL_WAIT: Duration = Duration::from_millis(500);

/// The engine's time limits, and when it first saw the run asked to stop.
#[derive(Debug, Clone)]
pub(crate) struct Deadline {
    stall_timeout: Duration,
    signalled_at: Option<Instant>,
}

impl Deadline {
    pub(crate) fn new(stall_timeout: Duration) -> Deadline {
        Deadline {
            stall_timeout,
            signalled_at: None,
        }
    }

    /// How long the next poll may sleep at `now`, with bytes last moved at `last_progress`
    /// and `signal` the signal that asked the run to stop (if one has); an error when the
    /// server has been silent too long. The grace after a signal counts from the signal, or
    /// from the last progress after it.
    pub(crate) fn poll_wait(
        &mut self,
        now: Instant,
        last_progress: Instant,
        signal: Option<i32>,
    ) -> Result<Duration, EngineErrorKind> {
        let waited = now.saturating_duration_since(last_progress);
        if waited >= self.stall_timeout {
            return Err(EngineErrorKind::Stalled(self.stall_timeout));
        }
        let mut timeout = (self.stall_timeout - waited).min(MAX_POLL_WAIT);
        if let Some(sig) = signal {
            let since = *self.signalled_at.get_or_insert(now);
            let silent = now.saturating_duration_since(last_progress.max(since));
            if silent >= INTERRUPTED_GRACE {
                return Err(EngineErrorKind::Interrupted(sig));
            }
            timeout = timeout.min(INTERRUPTED_GRACE - silent);
        }
        Ok(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_server_silent_for_the_stall_timeout_is_stalled() {
        let t0 = Instant::now();
        let mut d = Deadline::new(10 * SEC);
        assert_eq!(d.poll_wait(t0, t0, None).unwrap(), MAX_POLL_WAIT);
        let near = t0 + 10 * SEC - Duration::from_millis(100);
        assert_eq!(
            d.poll_wait(near, t0, None).unwrap(),
            Duration::from_millis(100)
        );
        assert!(matches!(
            d.poll_wait(t0 + 10 * SEC, t0, None),
            Err(EngineErrorKind::Stalled(t)) if t == 10 * SEC
        ));
        // Progress starts the count again.
        assert!(d.poll_wait(t0 + 15 * SEC, t0 + 6 * SEC, None).is_ok());
    }

    #[test]
    fn after_a_signal_the_server_has_its_grace_from_the_signal_or_the_last_progress() {
        let t0 = Instant::now();
        let mut d = Deadline::new(120 * SEC);
        // Silent for a minute before the signal: the grace starts with the signal.
        let signal = t0 + 60 * SEC;
        let wait = d.poll_wait(signal, t0, Some(15)).unwrap();
        assert_eq!(wait, MAX_POLL_WAIT);
        let later = signal + INTERRUPTED_GRACE - Duration::from_millis(200);
        assert_eq!(
            d.poll_wait(later, t0, Some(15)).unwrap(),
            Duration::from_millis(200)
        );
        // An answer after the signal gives the server its grace again.
        let answered = signal + 2 * SEC;
        assert!(d.poll_wait(answered + 2 * SEC, answered, Some(15)).is_ok());
        assert!(matches!(
            d.poll_wait(answered + INTERRUPTED_GRACE, answered, Some(15)),
            Err(EngineErrorKind::Interrupted(15))
        ));
    }
}
