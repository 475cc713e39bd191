//! A run cut short: SIGINT, SIGTERM or `--timeout` asks the run to stop.
//! The engine looks between steps and stops playing; the run then writes
//! what it has (finished scenarios, the captures so far, a report marked
//! partial) and only then ends, its namespaces and daemons going with it.
//! A second signal ends the process at once (the handler is reset after
//! the first), which still leaves nothing behind: every namespace and
//! daemon of a run dies with the harness.

use std::sync::atomic::{AtomicU8, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// 0: carry on; otherwise why the run was asked to stop.
static STOP: AtomicU8 = AtomicU8::new(0);
const SIGINT: u8 = 1;
const SIGTERM: u8 = 2;
const TIMEOUT: u8 = 3;

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    let why = if sig == libc::SIGTERM { SIGTERM } else { SIGINT };
    let _ = STOP.compare_exchange(0, why, Ordering::SeqCst, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM for the rest of the process's life: the
/// first of them asks the run to stop, a second one kills as usual.
pub fn catch_signals() -> Result<(), String> {
    let act = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESETHAND, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &act) }.map_err(|e| format!("cannot catch {sig}: {e}"))?;
    }
    Ok(())
}

/// Asks the run to stop when `after` has passed, from a watchdog thread.
pub fn stop_after(after: std::time::Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let _ = STOP.compare_exchange(0, TIMEOUT, Ordering::SeqCst, Ordering::SeqCst);
    });
}

/// Whether the run was asked to stop.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst) != 0
}

/// Why the run was asked to stop, in words for the report ("SIGINT").
pub fn reason() -> Option<&'static str> {
    match STOP.load(Ordering::SeqCst) {
        SIGINT => Some("SIGINT"),
        SIGTERM => Some("SIGTERM"),
        TIMEOUT => Some("timeout"),
        _ => None,
    }
}
