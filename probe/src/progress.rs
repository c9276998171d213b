//! A one-line progress display for replays on a terminal.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::pipeline::RunTotals;

/// Redraws `\r<files> <pct>% <packets> packets <rate>/s` on stderr until dropped.
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(totals: Arc<RunTotals>, total_bytes: u64, what: String) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut err = std::io::stderr();
            loop {
                let finished = d.load(Ordering::Relaxed);
                let read = totals.read.load(Ordering::Relaxed);
                let bytes = totals.cap_bytes.load(Ordering::Relaxed);
                let pct = if finished || total_bytes == 0 {
                    100.0
                } else if total_bytes > 0 {
                    (bytes as f64 * 100.0 / total_bytes as f64).min(100.0)
                } else {
                    0.0
                };
                let rate = read as f64 / start.elapsed().as_secs_f64().max(1e-3);
                let bar_len = 30usize;
                let filled = ((pct / 100.0) * bar_len as f64) as usize;
                let _ = write!(
                    err,
                    "\r{what} [{}{}] {pct:5.1}% {read} packets {rate:.0}/s ",
                    "#".repeat(filled),
                    "-".repeat(bar_len - filled)
                );
                let _ = err.flush();
                if finished {
                    let _ = writeln!(err);
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Progress {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
