//! Panic boundaries around dependencies that may panic on a damaged file
//! (sled on a damaged blob, arrow-ipc on a damaged record batch header):
//! [`catch`] runs a call into one under [`std::panic::catch_unwind`] and
//! turns a panic into an error message, which the caller maps to its own
//! "damaged" path (the cache moves its database aside; the data store is
//! rebuilt from its sources). The panic message is not printed: the caller
//! says in one line what happened.
//!
//! The panic hook stays silent for panics on a thread inside [`catch`], and
//! for panics on sled's own background threads (named `log flusher` and
//! `sled-io-*`), which [`background_panic`] reports; every other panic goes
//! to the previous hook, so a bug in atc-bt itself is still shown.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

thread_local! {
    /// Set while this thread runs inside [`catch`].
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// The first panic seen in one of sled's background threads, if any.
static BACKGROUND_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if INSIDE.with(Cell::get) {
                return;
            }
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if name == "log flusher" || name.starts_with("sled-io") {
                let mut g = BACKGROUND_PANIC.lock().unwrap_or_else(|e| e.into_inner());
                if g.is_none() {
                    *g = Some(panic_text(info.payload()));
                }
                return;
            }
            previous(info);
        }));
    });
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// The message of a panic in one of sled's background threads, if one
/// happened in this process.
pub fn background_panic() -> Option<String> {
    BACKGROUND_PANIC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Runs `f`, a call into a dependency; `Err(message)` if it panicked.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    let was = INSIDE.with(|c| c.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    INSIDE.with(|c| c.set(was));
    r.map_err(|payload| panic_text(&*payload))
}
