//! Ctrl-C and SIGTERM (a batch scheduler's way to end a job): the first asks the running
//! command to stop at its next safe point — the trainer after the step under way, with a
//! checkpoint; sampling and evaluation between chunks, leaving only whole files — and the
//! command exits 130 (SIGINT) or 143 (SIGTERM). A second signal ends the process at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// The stop request of this process, raised by the first SIGINT or SIGTERM.
#[derive(Clone)]
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Installs the handlers. Call once, before the work starts. When the first signal comes,
    /// `notice` (what the command does before it stops) is printed by a watcher thread — a
    /// signal handler itself must not print.
    pub fn install(notice: &'static str) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as the previous signal left it: a second
            // signal exits at once, with the same code a default handler gives.
            flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop))
                .context("cannot install the signal handlers")?;
            flag::register_usize(sig, Arc::clone(&signal), sig as usize)
                .context("cannot install the signal handlers")?;
            flag::register(sig, Arc::clone(&stop)).context("cannot install the signal handlers")?;
        }
        let watched = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("oxidiff-signals".into())
            .spawn(move || {
                while !watched.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                eprintln!("\nstopping: {notice} (a second Ctrl-C quits at once)");
            })
            .context("cannot start the signal watcher")?;
        Ok(Self { stop, signal })
    }

    /// The flag the library polls ([`oxidiff_train::Trainer::stop_when`]).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The error that ends the command with the signal's exit code.
    pub fn interrupted(&self) -> Interrupted {
        Interrupted {
            signal: self.signal.load(Ordering::Relaxed) as i32,
        }
    }
}

/// The command stopped on a signal; `main` exits with 128 + the signal's number.
#[derive(Debug, Clone, Copy)]
pub struct Interrupted {
    signal: i32,
}

impl Interrupted {
    pub fn exit_code(self) -> u8 {
        u8::try_from(128 + self.signal).unwrap_or(130)
    }

    pub fn signal_name(self) -> &'static str {
        match self.signal {
            SIGTERM => "SIGTERM",
            _ => "SIGINT",
        }
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by {}", self.signal_name())
    }
}

impl std::error::Error for Interrupted {}
