//! Engine tuning: how many files to keep open, how large a window of unanswered WRITE data,
//! how many connections, from the measured round trip and the bytes to move. The numbers
//! and the measurements behind them live here, beside their tests.
//!
//! Pure arithmetic, except [`local_open_files`], which reads and raises this process's
//! descriptor limit (`getrlimit`/`setrlimit`); nothing here reads the clock or talks to a
//! server: the round trip is measured ([`RoundTrip`]) with the times the engine passes in.

use std::time::{Duration, Instant};

/// Default for [`EngineConfig::max_open_files`](super::EngineConfig::max_open_files); see the README for the measurement.
pub const DEFAULT_MAX_OPEN_FILES: usize = 64;

/// With [`EngineConfig::auto_open_files`](super::EngineConfig::auto_open_files): files added per millisecond of round trip, and
/// the most. Measured (README): on loopback 64 files open are as fast as any; at 50 ms, 1024
/// (all 1004 files of the benchmark in one wave) beat 512 by 0.15 s. OpenSSH's server
/// allows its descriptor limit less 5, typically 1019, and says so in its limits.
const OPEN_FILES_PER_MS: usize = 20;
pub(crate) const AUTO_OPEN_FILES_MAX: usize = 1024;

/// With [`EngineConfig::auto_window`](super::EngineConfig::auto_window): the window at no latency, added per millisecond of
/// round trip, and the most. The window needs to cover what the link holds (stock OpenSSH
/// moves a 2 MiB channel window per round trip), no more: OpenSSH's `sftp-server` reads all
/// it is sent into one buffer, which it copies whole each time it grows, so on a link faster
/// than the server a large window makes it slower (measured at 0 ms: 419 MB took 2.0 s with
/// 1 MiB, 3.0 s with 8 MiB; 1004 small files with 1024 open took 0.65 s with 1 MiB, 1.1 to
/// 1.8 s with 4-8 MiB). At 50 ms, 2 MiB (10 runs: 1.33-1.51 s) had a shorter tail than
/// 4 MiB (1.31-1.97 s), and 1 MiB was window-bound (1.57-1.63 s); four connections moving
/// 419 MB took the same with 2, 3 or 4 MiB each.
pub(crate) const WINDOW_MIN: u64 = 1024 * 1024;
const WINDOW_PER_MS: u64 = 32 * 1024;
const WINDOW_MAX: u64 = 8 * 1024 * 1024;

/// Below this round trip one connection is not limited by its channel window, and more
/// connections only compete for the CPU (measured at 0 ms: 419 MB took 2.0 s over one, 2.4 s
/// over two and 2.9 s over four): the others are not started.
pub const MULTI_CONNECTION_MIN_RTT: Duration = Duration::from_millis(4);

/// Files opened before the server has said how many it allows (its limits reply comes a
/// round trip after its VERSION, and work does not wait for it).
pub(crate) const PROVISIONAL_OPEN_FILES: usize = 64;

/// Local descriptors kept back from the open-file budget: for the pipes, the journal, the
/// lock, the logs.
const RESERVED_FDS: u64 = 64;

/// Bytes of upload that make another connection worth its ssh handshake: a channel moves
/// about its 2 MiB window per round trip, and a handshake costs a few round trips and CPU;
/// measured at 50 ms, a second connection for 10 MB gained nothing (README).
const BYTES_PER_CONNECTION: u64 = 32 * 1024 * 1024;

/// How many connections `bytes` of uploads justify, at most `max`.
pub fn connections_for_bytes(bytes: u64, max: usize) -> usize {
    let wanted = 1 + usize::try_from(bytes / BYTES_PER_CONNECTION).unwrap_or(usize::MAX);
    wanted.clamp(1, max.max(1))
}

/// The open-file limit for a measured round trip.
pub fn open_files_for(rtt: Duration) -> usize {
    let ms = usize::try_from(rtt.as_millis()).unwrap_or(usize::MAX);
    DEFAULT_MAX_OPEN_FILES
        .saturating_add(ms.saturating_mul(OPEN_FILES_PER_MS))
        .min(AUTO_OPEN_FILES_MAX)
}

/// The window for a measured round trip.
pub fn window_for(rtt: Duration) -> u64 {
    let ms = u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX);
    WINDOW_MIN
        .saturating_add(ms.saturating_mul(WINDOW_PER_MS))
        .min(WINDOW_MAX)
}

/// How many files may be open locally at once, per connection: each upload in flight holds
/// its source open. The soft descriptor limit is raised as far as `per_connection` files on
/// each connection need, within the hard limit (often 1024 against 512k), as a program that
/// needs many descriptors is expected to do; not further, as the ssh it starts inherits it.
pub(crate) fn local_open_files(connections: usize, per_connection: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return DEFAULT_MAX_OPEN_FILES;
    };
    let connections = connections.max(1) as u64;
    let needed = RESERVED_FDS.saturating_add(connections.saturating_mul(per_connection as u64));
    let want = needed.min(hard);
    let soft = if soft < want && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
        want
    } else {
        soft
    };
    let spare = soft.saturating_sub(RESERVED_FDS) / connections;
    usize::try_from(spare).unwrap_or(usize::MAX).max(1)
}

/// The round trip of a connection's set-up request (limits@openssh.com, or a REALPATH where
/// the server lacks it), from the times the engine passes in: it is sent with the first
/// work, and its reply comes one round trip later; work does not wait for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RoundTrip {
    /// When the request went out, while its reply is awaited.
    sent: Option<Instant>,
    /// When its reply was read (it may be handled later).
    arrived: Option<Instant>,
}

impl RoundTrip {
    pub(crate) fn sent(&mut self, now: Instant) {
        self.sent = Some(now);
    }

    /// Whether the reply is awaited and not read yet.
    pub(crate) fn awaited(&self) -> bool {
        self.sent.is_some() && self.arrived.is_none()
    }

    /// The reply was read at `now`.
    pub(crate) fn arrived(&mut self, now: Instant) {
        self.arrived = Some(now);
    }

    /// The reply is handled at `now`: the round trip, from sending to reading it (or to
    /// `now` if when it was read is not known); `None` if nothing was sent.
    pub(crate) fn end(&mut self, now: Instant) -> Option<Duration> {
        let sent = self.sent.take()?;
        Some(self.arrived.unwrap_or(now).saturating_duration_since(sent))
    }
}

/// `bwlimit`: a token bucket of the bytes the loop may write into the servers' pipes, all
/// connections together. It fills at the rate, up to a tenth of a second's worth (at least
/// [`BUCKET_CHUNK`], or a second's worth if less), so a pause is not made up for by a burst; the loop writes only once
/// a chunk is in it, and waits for that otherwise ([`Bucket::wait`]).
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

/// The least the loop waits for before it writes: fewer, larger writes.
pub(crate) const BUCKET_CHUNK: u64 = 16 * 1024;

impl Bucket {
    /// A bucket of `rate` bytes per second, full at `now`.
    pub(crate) fn new(rate: u64, now: Instant) -> Bucket {
        let rate = rate.max(1) as f64;
        // A slow rate waits for a second's worth at most, not for a whole chunk.
        let burst = (rate / 10.0).max((BUCKET_CHUNK as f64).min(rate));
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// What may be written at `now`: 0 until a chunk is in the bucket.
    pub(crate) fn budget(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= (BUCKET_CHUNK as f64).min(self.burst) {
            self.tokens as u64
        } else {
            0
        }
    }

    /// `n` bytes were written.
    pub(crate) fn spend(&mut self, n: u64) {
        self.tokens -= n as f64;
    }

    /// How long until the next chunk may be written (as of the last [`Bucket::budget`]).
    pub(crate) fn wait(&self) -> Duration {
        let missing = (BUCKET_CHUNK as f64).min(self.burst) - self.tokens;
        Duration::from_secs_f64((missing / self.rate).max(0.001))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_files_are_kept_open_the_longer_the_round_trip() {
        assert_eq!(open_files_for(Duration::from_micros(300)), 64);
        assert_eq!(open_files_for(Duration::from_millis(10)), 264);
        assert_eq!(open_files_for(Duration::from_millis(20)), 464);
        assert_eq!(open_files_for(Duration::from_millis(40)), 864);
        assert_eq!(open_files_for(Duration::from_millis(50)), 1024);
        assert_eq!(open_files_for(Duration::from_secs(3)), 1024);
    }

    #[test]
    fn the_window_grows_with_the_round_trip_from_one_to_eight_mib() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(window_for(Duration::from_micros(300)), MIB);
        assert_eq!(window_for(Duration::from_millis(32)), 2 * MIB);
        assert_eq!(window_for(Duration::from_millis(50)), MIB + 50 * 32 * 1024);
        assert_eq!(window_for(Duration::from_millis(224)), 8 * MIB);
        assert_eq!(window_for(Duration::from_secs(3)), 8 * MIB);
    }

    #[test]
    fn another_connection_takes_32_mib_of_uploads_up_to_the_most_allowed() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(connections_for_bytes(0, 4), 1);
        assert_eq!(connections_for_bytes(32 * MIB - 1, 4), 1);
        assert_eq!(connections_for_bytes(32 * MIB, 4), 2);
        assert_eq!(connections_for_bytes(1 << 40, 4), 4);
        assert_eq!(connections_for_bytes(1 << 40, 0), 1);
    }

    #[test]
    fn the_round_trip_ends_when_the_reply_is_read_not_when_it_is_handled() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut rt = RoundTrip::default();
        assert!(!rt.awaited());
        assert_eq!(rt.end(t0), None);
        rt.sent(t0);
        assert!(rt.awaited());
        rt.arrived(t0 + ms(30));
        assert!(!rt.awaited());
        let rtt = rt.end(t0 + ms(80)).unwrap();
        assert_eq!(rtt, ms(30));
        assert_eq!(open_files_for(rtt), 664);
        assert_eq!(window_for(rtt), 1024 * 1024 + 30 * 32 * 1024);
        // Read and handled at once.
        let mut rt = RoundTrip::default();
        rt.sent(t0);
        assert_eq!(rt.end(t0 + ms(3)), Some(ms(3)));
    }

    #[test]
    fn the_bucket_lets_through_its_rate_and_no_more() {
        let start = Instant::now();
        let rate = 1 << 20;
        let mut bucket = Bucket::new(rate, start);
        let (mut written, mut now) = (0u64, start);
        // Ten seconds of a writer that always wants more, woken when the bucket says.
        while now < start + Duration::from_secs(10) {
            let budget = bucket.budget(now);
            if budget > 0 {
                bucket.spend(budget);
                written += budget;
            } else {
                assert!(
                    bucket.wait() <= Duration::from_millis(16),
                    "{:?}",
                    bucket.wait()
                );
            }
            now += bucket.wait().max(Duration::from_millis(1));
        }
        let expected = 10 * rate + rate / 10;
        assert!(
            written.abs_diff(expected) < expected / 100,
            "{written} bytes in 10 s at 1 MiB/s"
        );
    }

    #[test]
    fn a_pause_is_not_made_up_by_a_burst() {
        let start = Instant::now();
        let mut bucket = Bucket::new(1_000_000, start);
        assert_eq!(bucket.budget(start), 100_000);
        bucket.spend(100_000);
        assert_eq!(bucket.budget(start + Duration::from_millis(5)), 0);
        assert_eq!(bucket.budget(start + Duration::from_secs(60)), 100_000);
        // A very slow rate still writes every second, well within any stall timeout.
        let mut slow = Bucket::new(100, start);
        assert_eq!(slow.budget(start), 100);
        slow.spend(100);
        assert_eq!(slow.wait(), Duration::from_secs(1));
    }
}
