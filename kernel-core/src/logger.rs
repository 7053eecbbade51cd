//! A logger service for the `Event`/`Reply` protocol: levelled lines with a timestamp, written to
//! a sink the application chooses, with the level changeable while it runs.

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{OffsetDateTime, PrimitiveDateTime};

use crate::messaging::message::{Event, Reply};
use crate::runtime::context::{Context, Level};
use crate::runtime::service::{BoxError, Handler, Service};
use crate::state::Stateless;

/// One log line: `[2025-04-24 21:28:38.032] [INFO] [echo] message` (UTC).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use microkernel::{Level, LogLine};
/// let at = UNIX_EPOCH + Duration::from_millis(1_745_530_118_032);
/// let line = LogLine { at, level: Level::Info, service: "echo", message: "message" };
/// assert_eq!(line.to_string(), "[2025-04-24 21:28:38.032] [INFO] [echo] message");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LogLine<'a> {
    /// When.
    pub at: SystemTime,
    /// How severe.
    pub level: Level,
    /// Which service logged it.
    pub service: &'a str,
    /// What it said.
    pub message: &'a str,
}

impl fmt::Display for LogLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = utc(self.at);
        let (year, month, day) = at.to_calendar_date();
        write!(
            f,
            "[{year:04}-{:02}-{day:02} {:02}:{:02}:{:02}.{:03}] [{}] [{}] {}",
            u8::from(month),
            at.hour(),
            at.minute(),
            at.second(),
            at.millisecond(),
            self.level.as_str(),
            self.service,
            self.message
        )
    }
}

/// `at` in UTC, from the `time` crate's calendar; a time before 1970 reads as 1970-01-01
/// 00:00:00.000, one after the year 9999 as 9999-12-31 23:59:59.999.
fn utc(at: SystemTime) -> OffsetDateTime {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i128::try_from(since.as_nanos())
        .ok()
        .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc())
}

/// The logger service. Send it events whose `kind` is a level (`DEBUG`, `INFO`, `WARN`,
/// `ERROR`) and whose `content` is the message; `from` names the service in the line. An event
/// of kind `level` sets the minimum level to its `content`. Lines below the level are dropped.
///
/// ```
/// use microkernel::{Event, Kernel, Level, Logger};
/// let kernel = Kernel::new();
/// let (logger, level) = Logger::new(Vec::new());
/// let handle = kernel.register(logger)?;
/// kernel.start_all()?;
/// handle.call(Event::new("logger", "echo", "DEBUG", "hidden"))?;
/// level.set(Level::Debug);
/// assert!(handle.call(Event::new("logger", "echo", "DEBUG", "shown"))?.is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Logger<W> {
    name: String,
    sink: W,
    level: LevelControl,
}

/// Changes a [`Logger`]'s level from anywhere, while it runs.
#[derive(Debug, Clone)]
pub struct LevelControl(Arc<AtomicU8>);

impl LevelControl {
    /// Sets the minimum level.
    pub fn set(&self, level: Level) {
        self.0.store(level as u8, Ordering::Relaxed);
    }

    /// The minimum level.
    pub fn get(&self) -> Level {
        match self.0.load(Ordering::Relaxed) {
            0 => Level::Debug,
            1 => Level::Info,
            2 => Level::Warn,
            _ => Level::Error,
        }
    }
}

impl<W: Write + Send + 'static> Logger<W> {
    /// A logger named `logger` writing to `sink` at level INFO, and the control of its level.
    pub fn new(sink: W) -> (Self, LevelControl) {
        Self::named("logger", sink)
    }

    /// A logger registered under `name`.
    pub fn named(name: impl Into<String>, sink: W) -> (Self, LevelControl) {
        let level = LevelControl(Arc::new(AtomicU8::new(Level::Info as u8)));
        (
            Self {
                name: name.into(),
                sink,
                level: level.clone(),
            },
            level,
        )
    }

    /// Writes one line if `level` is at or above the logger's level.
    pub fn log(&mut self, level: Level, service: &str, message: &str) -> std::io::Result<bool> {
        if level < self.level.get() {
            return Ok(false);
        }
        let line = LogLine {
            at: SystemTime::now(),
            level,
            service,
            message,
        };
        writeln!(self.sink, "{line}")?;
        Ok(true)
    }
}

impl<W> Service for Logger<W> {
    type State = Stateless;

    fn name(&self) -> &str {
        &self.name
    }

    fn dependencies(&self) -> Vec<String> {
        Vec::new()
    }

    fn export_state(&self) -> Result<&Stateless, BoxError> {
        Ok(&Stateless)
    }

    fn import_state(&mut self, _: Stateless) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Handler for Logger<W> {
    type Request = Event;
    type Response = Reply;

    fn stop(&mut self, _: &Context<'_>) -> Result<(), BoxError> {
        Ok(self.sink.flush()?)
    }

    fn handle(&mut self, event: Event, _: &Context<'_>) -> Reply {
        if event.kind.eq_ignore_ascii_case("level") {
            return match event.content.parse::<Level>() {
                Ok(level) => {
                    self.level.set(level);
                    Reply::ok("level set", level.as_str())
                }
                Err(e) => Reply::new(400, "bad level", e),
            };
        }
        let level = match event.kind.parse::<Level>() {
            Ok(level) => level,
            Err(e) => return Reply::new(400, "bad level", e),
        };
        match self.log(level, &event.from, &event.content) {
            Ok(true) => Reply::ok("logged", ""),
            Ok(false) => Reply::ok("below level", ""),
            Err(e) => Reply::new(500, "log write failed", e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_at(millis: u64) -> String {
        let line = LogLine {
            at: UNIX_EPOCH + Duration::from_millis(millis),
            level: Level::Warn,
            service: "svc",
            message: "m",
        };
        line.to_string()
    }

    #[test]
    fn dates_across_leap_years_and_epoch() {
        assert_eq!(line_at(0), "[1970-01-01 00:00:00.000] [WARN] [svc] m");
        assert_eq!(line_at(11_016 * 86_400_000), "[2000-02-29 00:00:00.000] [WARN] [svc] m");
        assert_eq!(
            line_at(20_202 * 86_400_000 + 86_399_999),
            "[2025-04-24 23:59:59.999] [WARN] [svc] m"
        );
        assert_eq!(line_at(951_868_800_000 - 1), "[2000-02-29 23:59:59.999] [WARN] [svc] m");
        // Past what nanoseconds in an i64 hold (2262).
        assert_eq!(line_at(253_402_300_799_000), "[9999-12-31 23:59:59.000] [WARN] [svc] m");
    }

    #[test]
    fn times_outside_the_calendar_are_clamped() {
        let before = LogLine {
            at: UNIX_EPOCH - Duration::from_secs(86_400),
            level: Level::Info,
            service: "svc",
            message: "m",
        };
        assert_eq!(before.to_string(), "[1970-01-01 00:00:00.000] [INFO] [svc] m");
        let after = LogLine {
            at: UNIX_EPOCH + Duration::from_secs(300_000_000_000),
            ..before
        };
        assert_eq!(after.to_string(), "[9999-12-31 23:59:59.999] [INFO] [svc] m");
    }
}
