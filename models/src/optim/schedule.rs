//! Learning-rate factors by step, for `torch.optim.lr_scheduler.LambdaLR`-style schedules:
//! step `k` (0-based: the first update is step 0) runs with `base_lr * factor(k)`.

/// A learning-rate factor as a function of the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// Always 1.
    Constant,
    /// airbench's triangle: linear from `start` to `peak` over the first
    /// `floor(total_steps * warmup_fraction)` steps, then linear from `peak` to `end`
    /// at `total_steps`.
    Triangle {
        total_steps: u64,
        warmup_fraction: f64,
        start: f64,
        peak: f64,
        end: f64,
    },
}

impl LrSchedule {
    /// airbench94's schedule over `total_steps`: 0.2 -> 1.0 over the first 23%, then -> 0.07.
    pub fn airbench(total_steps: u64) -> LrSchedule {
        LrSchedule::Triangle {
            total_steps,
            warmup_fraction: 0.23,
            start: 0.2,
            peak: 1.0,
            end: 0.07,
        }
    }

    /// The factor of step `step` (0-based).
    ///
    /// ```
    /// use models::optim::LrSchedule;
    /// let schedule = LrSchedule::airbench(476);
    /// assert_eq!(schedule.factor(0), 0.2);
    /// assert_eq!(schedule.factor(109), 1.0); // warm-up: int(476 * 0.23) = 109 steps
    /// assert!((schedule.factor(476) - 0.07).abs() < 1e-15);
    /// ```
    pub fn factor(&self, step: u64) -> f64 {
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Triangle {
                total_steps,
                warmup_fraction,
                start,
                peak,
                end,
            } => {
                // Python's int() of a positive float: the floor.
                let warmup = (total_steps as f64 * warmup_fraction) as u64;
                if step < warmup {
                    let frac = step as f64 / warmup as f64;
                    start * (1.0 - frac) + peak * frac
                } else {
                    let warmdown = total_steps - warmup;
                    let frac = (step - warmup) as f64 / warmdown.max(1) as f64;
                    peak * (1.0 - frac) + end * frac
                }
            }
        }
    }
}
