//! Ctrl-C and SIGTERM (what `kill` and job schedulers send; SIGHUP too) while training:
//! the first asks the run to stop at the next batch boundary — of training or of an
//! evaluation — and save; a second quits at once, keeping the last saved checkpoint (saves
//! survive a kill at any instant).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// The exit status of a run stopped by an interrupt, as shells report Ctrl-C (128 + SIGINT).
pub const EXIT_STATUS: u8 = 130;

static REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// Installs the handler (once per process). Until it is installed, an interrupt ends the
/// process at once: nothing has been trained then.
pub fn install() -> anyhow::Result<()> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        result = ctrlc::set_handler(|| {
            if REQUESTS.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!(
                    "\ninterrupt: stopping at the next batch boundary and saving \
                     (interrupt again to quit at once)"
                );
            } else {
                eprintln!("\nsecond interrupt: quitting now; the last saved checkpoint is kept");
                std::process::exit(EXIT_STATUS.into());
            }
        });
    });
    result.map_err(|e| anyhow::anyhow!("cannot handle Ctrl-C: {e}"))
}

/// Whether an interrupt has asked the run to stop.
pub fn requested() -> bool {
    REQUESTS.load(Ordering::SeqCst) > 0
}

/// The error a command returns when it stopped for an interrupt; `main` prints it without
/// the `error:` prefix and exits with [`EXIT_STATUS`].
#[derive(Debug)]
pub struct Interrupted(pub String);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}
