//! `--timeline`: where a push's time goes, phase by phase (connect, uploads, switch, after,
//! close), each with its start and end since the run began, the round trips it waited for
//! and the bytes it moved ([`Wire`]), so that the gap to what the link allows can be read
//! off phase by phase. Printed on stderr as each phase ends.

use std::time::Instant;

use crate::engine::{Engine, Wire};

/// The phases of a push seen so far.
pub(crate) struct Timeline {
    on: bool,
    started: Instant,
    /// When the phase under way began, and the wire as it was then.
    since: Instant,
    at: Wire,
}

impl Timeline {
    /// A timeline from `started`; prints nothing unless `on`.
    pub(crate) fn new(on: bool, started: Instant) -> Timeline {
        Timeline {
            on,
            started,
            since: started,
            at: Wire::default(),
        }
    }

    /// Ends `phase` now, with what `engines` have moved since the last phase ended.
    pub(crate) fn end<'a>(&mut self, phase: &str, engines: impl IntoIterator<Item = &'a Engine>) {
        let mut wire = Wire::default();
        for engine in engines {
            let w = engine.wire();
            wire.bytes_out += w.bytes_out;
            wire.bytes_in += w.bytes_in;
            wire.waits += w.waits;
            wire.waited += w.waited;
            wire.rtt = wire.rtt.or(w.rtt);
        }
        self.end_with(phase, wire);
    }

    /// Ends `phase` now, the wire being `wire` (all engines, as [`Timeline::end`] sums them).
    fn end_with(&mut self, phase: &str, wire: Wire) {
        let now = Instant::now();
        if self.on {
            eprintln!("{}", self.line(phase, now, wire));
        }
        self.since = now;
        self.at = wire;
    }

    fn line(&self, phase: &str, now: Instant, wire: Wire) -> String {
        let secs = |t: Instant| t.duration_since(self.started).as_secs_f64();
        let waited = Wire {
            waited: wire.waited.saturating_sub(self.at.waited),
            ..wire
        };
        let rtts = waited
            .round_trips()
            .map_or_else(|| "?".to_owned(), |n| format!("{n:.1}"));
        format!(
            "timeline: {phase} start=+{:.3}s end=+{:.3}s rtts={rtts} waits={} waited={:.3}s \
             bytes={} in={}",
            secs(self.since),
            secs(now),
            wire.waits.saturating_sub(self.at.waits),
            waited.waited.as_secs_f64(),
            wire.bytes_out.saturating_sub(self.at.bytes_out),
            wire.bytes_in.saturating_sub(self.at.bytes_in),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_phase_counts_what_moved_since_the_last_ended() {
        let started = Instant::now();
        let mut timeline = Timeline::new(false, started);
        let ms = Duration::from_millis;
        let first = Wire {
            bytes_out: 100,
            bytes_in: 40,
            waits: 1,
            waited: ms(50),
            rtt: Some(ms(50)),
        };
        timeline.end_with("connect", first);
        let later = Wire {
            bytes_out: 1100,
            bytes_in: 90,
            waits: 7,
            waited: ms(175),
            rtt: Some(ms(50)),
        };
        let line = timeline.line("uploads", timeline.since, later);
        assert!(line.starts_with("timeline: uploads start=+"), "{line}");
        assert!(
            line.ends_with(" rtts=2.5 waits=6 waited=0.125s bytes=1000 in=50"),
            "{line}"
        );
    }
}
