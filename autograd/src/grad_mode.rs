//! Inference mode: while a [`NoGradGuard`] lives, operations record no graph.

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether operations on this thread currently record the graph.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|enabled| enabled.get())
}

/// Turns graph recording off on this thread until the returned guard is dropped.
///
/// ```
/// use autograd::{is_grad_enabled, no_grad};
/// {
///     let _guard = no_grad();
///     assert!(!is_grad_enabled());
/// }
/// assert!(is_grad_enabled());
/// ```
pub fn no_grad() -> NoGradGuard {
    let previous = GRAD_ENABLED.with(|enabled| enabled.replace(false));
    NoGradGuard { previous }
}

/// Restores the previous grad mode when dropped (guards nest).
pub struct NoGradGuard {
    previous: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|enabled| enabled.set(self.previous));
    }
}
