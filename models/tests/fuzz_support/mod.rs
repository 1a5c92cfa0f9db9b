//! Bounded fuzzing with proptest: byte mutations of seed files and a runner that counts
//! the inputs it ran. Shared by `models/tests/fuzz_inputs.rs` and the unit tests of
//! `cli/src/commands/predict.rs` (which include this file by path).

use std::cell::Cell;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};

/// Byte edits (overwrite, flip a bit, insert, delete), then maybe a cut of the end.
pub type Mutation = (Vec<(Index, u8, u8)>, Option<Index>);

/// One to seven edits; a cut one time in five.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::collection::vec((any::<Index>(), any::<u8>(), 0u8..4), 1..8),
        prop::option::weighted(0.2, any::<Index>()),
    )
}

/// `bytes` with the `mutation` applied.
pub fn mutate(mut bytes: Vec<u8>, (edits, cut): Mutation) -> Vec<u8> {
    for (at, value, how) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at.index(bytes.len());
        match how {
            0 => bytes[i] = value,
            1 => bytes[i] ^= 1 << (value % 8),
            2 => bytes.insert(i, value),
            _ => {
                bytes.remove(i);
            }
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut.index(bytes.len() + 1));
    }
    bytes
}

/// Runs `check` on `default` inputs drawn from `strategy` — or `CIFAR_RS_FUZZ_CASES` of
/// them, for a longer session — and returns how many ran. A panic in `check` fails the
/// test (after proptest has shrunk the input).
pub fn fuzz<S: Strategy>(default: u32, strategy: S, check: impl Fn(S::Value)) -> u32 {
    let cases = std::env::var("CIFAR_RS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let inputs = Cell::new(0u32);
    TestRunner::new(config)
        .run(&strategy, |value| {
            check(value);
            inputs.set(inputs.get() + 1);
            Ok(())
        })
        .unwrap();
    inputs.get()
}
