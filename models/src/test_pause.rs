//! Test-only pause points, so end-to-end tests can kill or signal a process at an exact
//! instant (between the two renames of a checkpoint save, say) instead of at a random one.
//!
//! `CIFAR_RS_TEST_PAUSE=<point>` or `<point>#<n>` makes the process stop the first (or n-th)
//! time it reaches `point`, print `test pause: <point>` on stderr, and wait — until the
//! caller's `resume_when` says so, or at most [`MAX_WAIT`] — so the test can act. Nothing
//! outside the test suite sets the variable; unset, a pause point is one read of a
//! once-initialised static.
//!
//! ```
//! // The save code marks its instants; a test sets CIFAR_RS_TEST_PAUSE=save:state-renamed#2.
//! models::test_pause::point("save:state-renamed", &|| false);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable naming the point to pause at.
pub const ENV_VAR: &str = "CIFAR_RS_TEST_PAUSE";
/// How long a pause lasts when nothing ends it earlier.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

struct Target {
    point: String,
    occurrence: u64,
    reached: AtomicU64,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let value = std::env::var(ENV_VAR).ok().filter(|v| !v.is_empty())?;
            let (point, occurrence) = match value.rsplit_once('#') {
                Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
                None => (value, 1),
            };
            Some(Target {
                point,
                occurrence,
                reached: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Marks an instant tests may pause at; see the module documentation.
pub fn point(name: &str, resume_when: &dyn Fn() -> bool) {
    let Some(target) = target() else { return };
    if target.point != name
        || target.reached.fetch_add(1, Ordering::SeqCst) + 1 != target.occurrence
    {
        return;
    }
    eprintln!("test pause: {name}");
    let started = Instant::now();
    while !resume_when() && started.elapsed() < MAX_WAIT {
        std::thread::sleep(Duration::from_millis(10));
    }
}
