//! Running a third-party decoder that may panic on bad input (polars on a corrupt Parquet file,
//! pola-rs/polars#15020) so that a panic becomes an ordinary error, and the panic hook does not
//! print a message and backtrace over the one-line warning the user is meant to see.
//!
//! A process-wide hook is installed once, chaining to the hook that was there before. It stays
//! silent for a panic raised on a thread that is inside [`catch_quietly`], or on one of polars'
//! worker threads while some thread is (polars decodes columns on its own rayon pool, and a panic
//! there unwinds back into the caller's `catch_unwind`). Every other panic reaches the previous
//! hook as before. The hook is not swapped in and out per call: another thread's unrelated panic
//! at that moment would lose its message, and two decoders racing to restore the hook would
//! leave the wrong one installed.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

thread_local! {
    /// How many [`catch_quietly`] calls this thread is inside.
    static QUIET_HERE: Cell<u32> = const { Cell::new(0) };
}

/// How many [`catch_quietly`] calls are running on any thread.
static QUIET_ANYWHERE: AtomicUsize = AtomicUsize::new(0);

static INSTALL: Once = Once::new();

/// polars names its pool's threads `{POLARS_THREAD_NAME or "polars"}-{i}`.
fn polars_thread_prefix() -> String {
    let base = std::env::var("POLARS_THREAD_NAME").unwrap_or_else(|_| "polars".to_string());
    format!("{base}-")
}

fn install_hook() {
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        let polars_prefix = polars_thread_prefix();
        panic::set_hook(Box::new(move |info| {
            let here = QUIET_HERE.try_with(Cell::get).unwrap_or(0) > 0;
            let in_polars_pool = QUIET_ANYWHERE.load(Ordering::SeqCst) > 0
                && std::thread::current().name().is_some_and(|n| n.starts_with(&polars_prefix));
            if !(here || in_polars_pool) {
                previous(info);
            }
        }));
    });
}

/// Decrements the counters even if the closure's payload misbehaves on drop.
struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        let _ = QUIET_HERE.try_with(|q| q.set(q.get().saturating_sub(1)));
        QUIET_ANYWHERE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `f`; a panic inside it is returned as `Err` with the panic's message (first line), and
/// nothing is printed for it.
pub(crate) fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    QUIET_ANYWHERE.fetch_add(1, Ordering::SeqCst);
    let _ = QUIET_HERE.try_with(|q| q.set(q.get() + 1));
    let _leave = Leave;
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

/// The first line of a panic payload (`panic!` carries a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown cause");
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "unknown cause".to_string()
    } else {
        line.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_the_hook_still_chains() {
        assert_eq!(catch_quietly(|| 7), Ok(7));
        let e = catch_quietly(|| -> u32 { panic!("index out of bounds: the len is 3\nsecond line") });
        assert_eq!(e, Err("index out of bounds: the len is 3".to_string()));
        let e = catch_quietly(|| -> u32 { std::panic::panic_any(42u8) });
        assert_eq!(e, Err("unknown cause".to_string()));
        // Nested calls and a panic afterwards: the counters are back to zero.
        assert_eq!(catch_quietly(|| catch_quietly(|| -> u8 { panic!("inner") })), Ok(Err("inner".to_string())));
        assert_eq!(QUIET_HERE.with(Cell::get), 0);
    }

    #[test]
    fn a_panic_on_a_helper_thread_is_caught_too() {
        let e = catch_quietly(|| {
            std::thread::scope(|s| {
                s.spawn(|| -> u8 { panic!("worker") }).join().unwrap_or_else(|p| panic::resume_unwind(p))
            })
        });
        assert_eq!(e, Err("worker".to_string()));
    }
}
