//! Where the time of a real step goes: each recorded op's forward and backward time,
//! attributed to the module scope that ran it.
//!
//! Layers open a [`scope`] named after themselves around their forward pass (the `models`
//! crate's `Sequential` does it for every child, so ops land under `state_dict` names such as
//! `layer3.2`). While a [`Session`] is recording on this thread, every op that records a graph
//! node (every op of a training step) is timed, and its backward rule is timed when
//! `backward()` reaches it. Nothing is recorded, and nothing but a thread-local check is
//! spent, when no session is open.
//!
//! An op's forward time runs from the previous event on this thread (an op finishing, a
//! scope opening or closing) to its output being ready: the kernel and its argument checks,
//! without the framework's work between layers. What the ops do not account for — graph
//! bookkeeping, gradient accumulation, copies — is what a caller's own clock around the
//! step measures beyond them.
//!
//! ```
//! use autograd::{profile, Device, Tensor};
//! let w = Tensor::from_vec(vec![0.5f32; 6], &[2, 3], Device::Cpu)?.requires_grad_();
//! let x = Tensor::from_vec(vec![1.0f32; 12], &[4, 3], Device::Cpu)?;
//! let session = profile::start()?;
//! let loss = {
//!     let _scope = profile::scope("fc");
//!     x.linear(&w, None)?
//! }
//! .sum()?;
//! loss.backward()?;
//! let report = session.finish();
//! let linear = &report.ops[0];
//! assert_eq!((linear.scope.as_str(), linear.op), ("fc", "linear"));
//! assert_eq!(linear.output_shape, vec![4, 2]);
//! assert!(linear.backward.is_some());
//! assert_eq!(report.scopes[0].scope, "fc");
//! # Ok::<(), autograd::Error>(())
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use kernels::{Error, Result};

use crate::Tensor;

/// One op run while a session was recording.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTiming {
    /// The scopes it ran in, joined with dots (`layer3.2`); empty outside every scope.
    pub scope: String,
    /// The op, as its backward rule is named (`conv2d`, `max_pool2d`, `linear`, ...).
    pub op: &'static str,
    pub input_shapes: Vec<Vec<usize>>,
    pub output_shape: Vec<usize>,
    pub forward: Duration,
    /// Its backward rule's time, once `backward()` has run it within the session.
    pub backward: Option<Duration>,
}

/// A scope's wall-clock time, everything inside it included.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeTiming {
    pub scope: String,
    pub elapsed: Duration,
}

/// What a session recorded, in the order it happened (scopes in the order they closed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub ops: Vec<OpTiming>,
    pub scopes: Vec<ScopeTiming>,
}

impl Profile {
    /// The time of the first scope named exactly `scope`, if it ran.
    pub fn scope_time(&self, scope: &str) -> Option<Duration> {
        self.scopes
            .iter()
            .find(|s| s.scope == scope)
            .map(|s| s.elapsed)
    }
}

struct Recorder {
    /// Full paths of the open scopes, innermost last.
    open: Vec<(String, Instant)>,
    last_event: Instant,
    profile: Profile,
    /// Which op made each recorded tensor, to credit its backward rule.
    op_of_tensor: HashMap<u64, usize>,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's recorder when a session is open.
fn with_recorder<R>(f: impl FnOnce(&mut Recorder) -> R) -> Option<R> {
    RECORDER.with(|cell| cell.borrow_mut().as_mut().map(f))
}

/// Starts recording on this thread until the session is finished or dropped.
/// One session at a time per thread.
pub fn start() -> Result<Session> {
    RECORDER.with(|cell| {
        let mut recorder = cell.borrow_mut();
        if recorder.is_some() {
            return Err(Error::invalid(
                "profile",
                "a profile is already being recorded on this thread",
            ));
        }
        *recorder = Some(Recorder {
            open: Vec::new(),
            last_event: Instant::now(),
            profile: Profile::default(),
            op_of_tensor: HashMap::new(),
        });
        Ok(Session {
            _not_send: PhantomData,
        })
    })
}

/// An open recording; [`Session::finish`] returns what it saw.
pub struct Session {
    /// The recorder is this thread's.
    _not_send: PhantomData<*const ()>,
}

impl Session {
    /// Stops recording and returns the profile.
    pub fn finish(self) -> Profile {
        RECORDER
            .with(|cell| cell.borrow_mut().take())
            .map(|r| r.profile)
            .unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        RECORDER.with(|cell| cell.borrow_mut().take());
    }
}

/// Opens the scope `name` inside the current one until the guard drops. Free when no
/// session is recording.
pub fn scope(name: &str) -> ScopeGuard {
    let depth = with_recorder(|r| {
        let now = Instant::now();
        let path = match r.open.last() {
            Some((outer, _)) => format!("{outer}.{name}"),
            None => name.to_string(),
        };
        r.open.push((path, now));
        r.last_event = now;
        r.open.len()
    });
    ScopeGuard {
        depth,
        _not_send: PhantomData,
    }
}

/// Closes its scope when dropped.
pub struct ScopeGuard {
    /// How many scopes were open with this one, when a session was recording.
    depth: Option<usize>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let Some(depth) = self.depth else {
            return;
        };
        with_recorder(|r| {
            // A session started inside this scope never saw it open.
            if r.open.len() != depth {
                return;
            }
            let (scope, opened) = r.open.pop().expect("depth >= 1");
            let now = Instant::now();
            r.profile.scopes.push(ScopeTiming {
                scope,
                elapsed: now - opened,
            });
            r.last_event = now;
        });
    }
}

/// Called when an op has recorded its graph node: times its forward pass.
pub(crate) fn forward_op(output: &Tensor, op: &'static str, inputs: &[&Tensor]) {
    with_recorder(|r| {
        let now = Instant::now();
        let index = r.profile.ops.len();
        r.profile.ops.push(OpTiming {
            scope: r.open.last().map_or_else(String::new, |(s, _)| s.clone()),
            op,
            input_shapes: inputs.iter().map(|t| t.shape().to_vec()).collect(),
            output_shape: output.shape().to_vec(),
            forward: now - r.last_event,
            backward: None,
        });
        r.op_of_tensor.insert(output.id(), index);
        r.last_event = now;
    });
}

/// The start of a backward rule's run, when a session is recording.
pub(crate) fn backward_started() -> Option<Instant> {
    with_recorder(|_| Instant::now())
}

/// Credits the backward rule of the op that made tensor `output_id` with the time since
/// `started`.
pub(crate) fn backward_finished(output_id: u64, started: Option<Instant>) {
    let Some(started) = started else {
        return;
    };
    with_recorder(|r| {
        if let Some(&index) = r.op_of_tensor.get(&output_id) {
            let op = &mut r.profile.ops[index];
            *op.backward.get_or_insert(Duration::ZERO) += started.elapsed();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    fn leaf(shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(vec![0.25f32; n], shape, Device::Cpu)
            .unwrap()
            .requires_grad_()
    }

    #[test]
    fn ops_are_credited_to_their_innermost_scope_with_both_passes() {
        let (x, w) = (leaf(&[2, 3]), leaf(&[4, 3]));
        let session = start().unwrap();
        let y = {
            let _block = scope("block");
            let h = {
                let _fc = scope("0");
                x.linear(&w, None).unwrap()
            };
            let _act = scope("1");
            h.relu().unwrap()
        };
        let loss = y.sum().unwrap();
        loss.backward().unwrap();
        let profile = session.finish();

        let ops: Vec<(&str, &str)> = profile
            .ops
            .iter()
            .map(|o| (o.scope.as_str(), o.op))
            .collect();
        assert_eq!(
            ops,
            [("block.0", "linear"), ("block.1", "relu"), ("", "sum")]
        );
        assert_eq!(profile.ops[0].input_shapes, vec![vec![2, 3], vec![4, 3]]);
        assert_eq!(profile.ops[1].output_shape, vec![2, 4]);
        assert!(profile.ops.iter().all(|o| o.backward.is_some()));
        let scopes: Vec<&str> = profile.scopes.iter().map(|s| s.scope.as_str()).collect();
        assert_eq!(scopes, ["block.0", "block.1", "block"]);
        // A scope's time includes its children's.
        let block = profile.scope_time("block").unwrap();
        assert!(block >= profile.scope_time("block.0").unwrap());
    }

    #[test]
    fn nothing_is_recorded_outside_a_session_and_sessions_do_not_nest() {
        let x = leaf(&[3]);
        {
            let _scope = scope("ignored");
            x.relu().unwrap();
        }
        let session = start().unwrap();
        assert!(start().is_err());
        let profile = session.finish();
        assert_eq!(profile, Profile::default());
        // Dropping a session unfinished ends it too.
        drop(start().unwrap());
        start().unwrap().finish();
    }
}
