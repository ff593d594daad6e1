//! SQLite's checkpoints, paced by a thread of their own beside the writer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::prelude::*;

use crate::db::{DbConnection, Pool};

/// The length of SQLite's write-ahead log (in pages) past which the background checkpoint has
/// it started over: 256 MiB, under two seconds of ingest at full speed (the log grows by about
/// 40,000 frames a second; the log file ends up about twice as long, by what is written while
/// the thread copies). Every restart holds the writer for 0.1-0.4 s (its last round, below), so
/// not too often (twice the length was 2-3 % faster, within the noise, for a log file of 1 GB);
/// the log file keeps its size and is written over. The connections' automatic threshold,
/// 1 GiB, is only a backstop.
const WAL_RESTART_FRAMES: i32 = 65_536;
/// Before a restart, the checkpoint thread copies in rounds until a round finds the log grown
/// by no more than this many pages since the one before (or for at most this many rounds).
const WAL_TAIL_FRAMES: i32 = 200;
const WAL_TAIL_ROUNDS: usize = 8;
/// The longest and the shortest the checkpoint thread waits between two looks at the log.
const CHECKPOINT_PAUSE: Duration = Duration::from_secs(1);
const CHECKPOINT_PAUSE_MIN: Duration = Duration::from_millis(100);

/// What the checkpoint thread knows of the log between its looks: when to look next, and
/// whether the writer's last round failed to start the log over.
struct LogWatch {
    frames: i32,
    looked: Instant,
    /// Frames a second, between the last two looks that saw the same log.
    rate: f64,
    /// The writer was asked to copy the tail, so that the log starts over.
    asked: bool,
}

impl LogWatch {
    fn new() -> Self {
        LogWatch { frames: 0, looked: Instant::now(), rate: 0.0, asked: false }
    }

    /// The writer was asked to copy the tail at the last look, and the log has not started over
    /// since (a reader was inside it each time).
    fn restart_failed(&self, frames: i32) -> bool {
        self.asked && frames >= self.frames
    }

    /// Notes a look that found `frames` frames in the log, `asked` whether the writer now copies
    /// the tail, and answers when to look next: about when the log will reach
    /// [`WAL_RESTART_FRAMES`] at the rate it last grew.
    ///
    /// The automatic threshold must not be reached: past it every commit of the writer runs a
    /// checkpoint inline (when it was 65,536 frames, ingest took the log past it while the
    /// thread copied, stalling the writer for 0.3-2 s every few seconds). So the thread looks
    /// sooner as the log nears the restart length, and at least every second: with pauses of
    /// up to three seconds, ingest that began during one took the log to the 1 GiB backstop.
    /// Each look ends in syncs, which stall the writer's log writes for a few milliseconds;
    /// alternating ingest runs were no slower with one-second than with three-second pauses.
    fn next_look(&mut self, frames: i32, asked: bool) -> Duration {
        let over = std::mem::replace(&mut self.looked, Instant::now()).elapsed();
        self.next_look_after(frames, asked, over)
    }

    fn next_look_after(&mut self, frames: i32, asked: bool, over: Duration) -> Duration {
        let over = over.as_secs_f64().max(1e-3);
        self.rate = if frames >= self.frames {
            f64::from(frames - self.frames) / over
        } else {
            // It started over at some moment since the last look: it grew at least this fast.
            self.rate.max(f64::from(frames) / over)
        };
        self.asked = asked;
        self.frames = frames;
        // Asked to, the writer starts it over at once; the next look comes while the new log is
        // still shorter than this one, so that one that did not start over is told apart.
        let left = if asked { frames / 2 } else { (WAL_RESTART_FRAMES - frames).max(0) };
        if self.rate < 1.0 {
            return CHECKPOINT_PAUSE;
        }
        Duration::from_secs_f64(f64::from(left) / self.rate).clamp(CHECKPOINT_PAUSE_MIN, CHECKPOINT_PAUSE)
    }
}

/// SQLite copies the write-ahead log into the database file in checkpoints. Left to itself
/// it runs one inside whichever commit crosses the threshold, and that request (with every
/// write queued behind it) waits for it; here a thread runs them instead, beside the
/// writer, looking at the log at least every second ([`LogWatch`]). It ends with the store.
///
/// A passive checkpoint never blocks the writer, but under steady writes it never finds the
/// log fully copied at the moment a write begins, which is when SQLite starts the log over:
/// the log would only grow, until the automatic threshold made every commit checkpoint and
/// sync inline. So when the log passes [`WAL_RESTART_FRAMES`], the thread copies in rounds,
/// each shorter than the one before, and then asks the writer to copy the last frames
/// itself between two groups (`WriteQueue::copy_log_tail`); its next transaction starts
/// the log over. That round holds up every write for its syncs and what was written during
/// the thread's last round: 0.1-0.4 s under ingest. If the log did not start over all the
/// same (a reader was inside it), the thread runs a `RESTART` checkpoint, which holds the
/// writer until every reader has left the log: 0.2-1.3 s was measured under ingest.
pub(crate) fn checkpoint_in_background(pool: Pool, catch_up: Arc<AtomicBool>, alive: Weak<()>) {
    #[derive(QueryableByName)]
    struct Checkpointed {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        log: i32,
    }
    let checkpoint = |conn: &mut DbConnection, mode: &str| -> Result<Checkpointed, diesel::result::Error> {
        let DbConnection::Sqlite(sqlite) = conn else { return Ok(Checkpointed { log: 0 }) };
        diesel::sql_query(format!("PRAGMA wal_checkpoint({mode})")).get_result(sqlite)
    };
    let spawned = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
        let mut pause = CHECKPOINT_PAUSE;
        let mut watch = LogWatch::new();
        loop {
            std::thread::sleep(pause);
            if alive.strong_count() == 0 {
                return;
            }
            let Ok(mut conn) = pool.get() else { continue };
            let outcome = checkpoint(&mut conn, "PASSIVE").and_then(|first| {
                if watch.restart_failed(first.log) {
                    // Wait for the readers, holding the writer meanwhile.
                    checkpoint(&mut conn, "RESTART")?;
                    return Ok((0, false));
                }
                if first.log < WAL_RESTART_FRAMES {
                    return Ok((first.log, false));
                }
                // Each round copies what the log gained during the one before, in less
                // time, until what is left for the writer is what one round's syncs let
                // through: its round holds up every write, and copying some thousands of
                // pages scattered over the database file took it 0.3-1.4 s.
                let mut previous = first.log;
                for _ in 0..WAL_TAIL_ROUNDS {
                    let round = checkpoint(&mut conn, "PASSIVE")?;
                    if round.log - std::mem::replace(&mut previous, round.log) <= WAL_TAIL_FRAMES {
                        break;
                    }
                }
                catch_up.store(true, Ordering::Relaxed);
                Ok((previous, true))
            });
            pause = match outcome {
                Ok((frames, asked)) => watch.next_look(frames, asked),
                Err(error) => {
                    tracing::warn!(%error, "background checkpoint failed");
                    CHECKPOINT_PAUSE
                }
            };
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no background checkpoint thread: commits will checkpoint");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_checkpoint_thread_looks_when_the_log_will_need_starting_over() {
        let mut watch = LogWatch::new();
        assert_eq!(watch.next_look_after(0, false, secs(3.0)), CHECKPOINT_PAUSE, "an idle log: the longest pause");
        // 20,000 frames a second: the restart length is further off than the longest pause.
        assert_eq!(watch.next_look_after(20_000, false, secs(1.0)), CHECKPOINT_PAUSE);
        // 30,000 frames a second: 15,536 frames left to the restart length take 0.52 s.
        let pause = watch.next_look_after(50_000, false, secs(1.0));
        assert!((pause.as_secs_f64() - 0.5179).abs() < 1e-3, "{pause:?}");
        // Close to it, the next look comes soon, but not sooner than the shortest pause.
        assert_eq!(watch.next_look_after(65_000, false, secs(0.5)), CHECKPOINT_PAUSE_MIN);
        assert!(!watch.restart_failed(70_000), "nobody asked the writer yet");
        // Asked to start the log over at 70,000 frames, the thread looks again while a new log
        // would still be half as long: at the last rate (5,000 frames in 0.1 s), in 0.7 s.
        let asked = watch.next_look_after(70_000, true, secs(0.1));
        assert!((asked.as_secs_f64() - 0.7).abs() < 1e-3, "{asked:?}");
        // A log that started over is shorter than the one the writer was asked to copy; one
        // that did not is not, and the thread falls back on a checkpoint that waits for readers.
        assert!(!watch.restart_failed(30_000));
        assert!(watch.restart_failed(71_000));
        // A log that started over since the last look grew at least as fast as it is long now.
        watch.next_look_after(30_000, false, secs(1.0));
        assert!(watch.rate >= 30_000.0, "{}", watch.rate);
    }
}
