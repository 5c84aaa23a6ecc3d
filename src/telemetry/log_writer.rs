//! Where log lines go: standard output, written in batches. A line is appended to a shared buffer,
//! which a thread of its own writes out every [`FLUSH_EVERY`] (and a full buffer is written at once),
//! so serving a request costs no write system call of its own. At most that long of lines is lost if
//! the process is killed; [`LogFlush`] writes what is buffered when the process ends normally.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A buffer this full is written at once.
const FULL: usize = 256 * 1024;

/// The writer of JSON lines, once logs are JSON (`request_line` writes to it directly).
static JSON_LINES: OnceLock<BatchedStdout> = OnceLock::new();

/// The shared buffer in front of standard output. Cheap to clone.
#[derive(Clone, Default)]
pub struct BatchedStdout {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl BatchedStdout {
    /// Starts the thread that writes the buffer out; the returned guard writes what is left when
    /// dropped.
    pub fn start() -> (Self, LogFlush) {
        let writer = Self::default();
        let flusher = writer.clone();
        let started = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flusher.flush_now();
                }
            });
        if let Err(error) = started {
            eprintln!(
                "joyfull-hub: log lines are written as they come (no writer thread: {error})"
            );
        }
        (writer.clone(), LogFlush(writer))
    }

    /// Makes this the writer of JSON lines.
    pub fn serve_json_lines(&self) {
        let _ = JSON_LINES.set(self.clone());
    }

    /// Appends one whole line.
    pub fn append(&self, line: &[u8]) {
        let _ = Line(self).write(line);
    }

    /// Writes out what is buffered.
    pub fn flush_now(&self) {
        let lines =
            std::mem::take(&mut *self.buffer.lock().unwrap_or_else(PoisonError::into_inner));
        if !lines.is_empty() {
            let mut stdout = std::io::stdout().lock();
            // Nowhere to report a failure to write the log.
            let _ = stdout.write_all(&lines);
            let _ = stdout.flush();
        }
    }
}

/// Where JSON lines are written, when logs are JSON.
pub fn json_lines() -> Option<&'static BatchedStdout> {
    JSON_LINES.get()
}

/// Writes the buffered lines when dropped.
pub struct LogFlush(BatchedStdout);

impl Drop for LogFlush {
    fn drop(&mut self) {
        self.0.flush_now();
    }
}

/// One line being written.
pub struct Line<'a>(&'a BatchedStdout);

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut buffer = self.0.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            buffer.extend_from_slice(bytes);
            buffer.len() >= FULL
        };
        if full {
            self.0.flush_now();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStdout {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(self)
    }
}
