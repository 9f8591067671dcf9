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
    let mut stderr = std::io::stderr().lock();
    while let Ok(message) = lines.recv() {
        match message {
            Message::Line(line) => {
                let lost = dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let _ = writeln!(
                        stderr,
                        "({lost} log lines dropped: the log output was not read fast enough)"
                    );
                }
                let _ = stderr.write_all(&line);
            }
            Message::Flush(done) => {
                let _ = stderr.flush();
                let _ = done.send(());
            }
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
