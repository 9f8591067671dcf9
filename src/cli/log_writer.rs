//! The service's log output, written to stderr by a thread of its own: a request (every
//! one logs its access line) never waits on a slow terminal, a full pipe or a stalled
//! log shipper. When the queue is full, lines are dropped and counted rather than
//! stalling the service; the count is written once the queue drains.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Log lines queued for the writer thread before new ones are dropped (a few MiB).
const QUEUED_LINES: usize = 16_384;

/// How long the writer thread lets lines gather after the first before writing them
/// together.
const GATHER: Duration = Duration::from_millis(5);

/// Bytes of gathered lines the writer keeps allocated between writes.
const GATHERED_CAPACITY: usize = 64 * 1024;

/// How long [`LogFlush`] waits for queued lines to reach stderr at exit.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

enum Message {
    Line(Vec<u8>),
    /// Answered once everything queued before it is written.
    Flush(SyncSender<()>),
}

/// The `MakeWriter` of the service's log subscriber.
#[derive(Clone)]
pub(super) struct QueuedStderr {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

/// Writes what is still queued when dropped (at the end of `serve`).
pub(super) struct LogFlush(QueuedStderr);

impl QueuedStderr {
    /// Starts the writer thread.
    pub(super) fn start() -> std::io::Result<(Self, LogFlush)> {
        let (queue, lines) = sync_channel(QUEUED_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("themis-log".into())
            .spawn(move || write_lines(&lines, &counted))?;
        let writer = QueuedStderr { queue, dropped };
        Ok((writer.clone(), LogFlush(writer)))
    }
}

fn write_lines(lines: &Receiver<Message>, dropped: &AtomicU64) {
    let mut batch = Vec::new();
    let mut flushes = Vec::new();
    while let Ok(first) = lines.recv() {
        // The lines logged meanwhile join this one: a burst of requests costs one wake-up
        // of this thread and one write(2), and a request whose line finds the thread
        // gathering hands it over without waking anybody.
        std::thread::sleep(GATHER);
        for message in std::iter::once(first).chain(lines.try_iter()) {
            match message {
                Message::Line(line) => batch.extend_from_slice(&line),
                Message::Flush(done) => flushes.push(done),
            }
        }
        // Locked per batch, never while waiting: `main` prints a startup error with
        // `eprintln!` while this thread still waits for lines, and would block forever.
        let mut stderr = std::io::stderr().lock();
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(
                stderr,
                "({lost} log lines dropped: the log output was not read fast enough)"
            );
        }
        let _ = stderr.write_all(&batch);
        let _ = stderr.flush();
        drop(stderr);
        batch.clear();
        // A burst's buffer is not kept for the rest of the process.
        batch.shrink_to(GATHERED_CAPACITY);
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

impl Drop for LogFlush {
    fn drop(&mut self) {
        let (done, flushed) = sync_channel(1);
        // Blocking here is fine: the service is exiting.
        if self.0.queue.send(Message::Flush(done)).is_ok() {
            let _ = flushed.recv_timeout(FLUSH_LIMIT);
        }
    }
}

/// One event's formatted line (the subscriber writes each event in one call).
pub(super) struct QueuedLine<'a>(&'a QueuedStderr);

impl Write for QueuedLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.queue.try_send(Message::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.0.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer thread is gone (the process is exiting): nowhere to write.
            Err(TrySendError::Disconnected(_)) => {}
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for QueuedStderr {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedLine(self)
    }
}
