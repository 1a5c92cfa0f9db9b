//! The `.cu` kernels' bf16 variants, run by the CPU emulator (`emulated_tests.rs` says
//! how) against the CPU's bf16 kernels, which are themselves tested bit for bit against
//! their f32 kernels on the widened values. A bf16 travels to a kernel as its bits (`u16`).
//!
//! Every bf16 kernel stores a value computed in f32, rounded once, so the emulated kernel
//! and the CPU must agree bit for bit wherever their f32 kernels do; a NaN matches any NaN.

use half::bf16;

use super::emulated_tests::{emulator, input, output, Arg, Lcg, BLOCK};
use crate::{elementwise, DType, Storage};

/// The bits of `values` rounded to bf16 by the CPU (`half::bf16::from_f32`).
pub(super) fn bf16_bits(values: &[f32]) -> Vec<u16> {
    values
        .iter()
        .map(|&v| bf16::from_f32(v).to_bits())
        .collect()
}

/// A host bf16 storage holding `bits`.
pub(super) fn bf16_storage(bits: &[u16]) -> Storage {
    Storage::bf16(bits.iter().map(|&b| bf16::from_bits(b)).collect())
}

/// The bits of a host bf16 storage.
pub(super) fn bits_of(s: &Storage) -> Vec<u16> {
    s.host_bf16("test", "result")
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Same bits, any NaN matching any NaN.
pub(super) fn assert_same_bf16(what: &str, got: &[u16], want: &[u16]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let is_nan = |b: u16| b & 0x7fff > 0x7f80;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w || (is_nan(g) && is_nan(w)),
            "{what}[{i}]: got {g:#06x}, the CPU gives {w:#06x}"
        );
    }
}

/// f32 values that exercise rounding: ties both ways, values next to ties, overflow to
/// infinity, subnormals, signed zeros, infinities and NaN, beside random ones.
fn rounding_cases(rng: &mut Lcg) -> Vec<f32> {
    let mut x = rng.values(3000, 50.0);
    for bits in [
        0x3f80_8000u32, // 1 + 2^-8: a tie, kept even (down)
        0x3f81_8000,    // a tie rounding up to even
        0x3f80_8001,    // just above a tie
        0x3f80_7fff,    // just below a tie
        0x7f7f_ffff,    // f32::MAX: rounds to infinity
        0x0000_0001,    // the smallest subnormal
        0x0040_8000,    // a subnormal tie
        0x8000_0000,    // -0
        0x7f80_0000,    // inf
        0xff80_0000,    // -inf
        0x7fc0_0000,    // NaN
        0xffa0_0001,    // a signalling NaN with a payload
    ] {
        x.push(f32::from_bits(bits));
    }
    x
}

#[test]
fn emulated_bf16_casts_and_gradient_sums_match_the_cpu_bit_for_bit() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(11);
    let x = rounding_cases(&mut rng);
    let n = x.len() as u64;

    let mut rounded = vec![0u16; x.len()];
    emu.launch(
        "elementwise_to_bf16",
        3,
        BLOCK,
        &[input(&x), output(&mut rounded), Arg::U64(n)],
    );
    let want = bits_of(&Storage::f32(x.clone()).to_dtype(DType::BF16).unwrap());
    assert_same_bf16("elementwise_to_bf16", &rounded, &want);

    let mut widened = vec![0.0f32; x.len()];
    emu.launch(
        "elementwise_from_bf16",
        3,
        BLOCK,
        &[input(&rounded), output(&mut widened), Arg::U64(n)],
    );
    let want = bf16_storage(&rounded).to_dtype(DType::F32).unwrap();
    for (i, (g, w)) in widened.iter().zip(want.to_vec_f32().unwrap()).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "elementwise_from_bf16[{i}]: got {g:e}, the CPU gives {w:e}"
        );
    }

    let other = bf16_bits(&rng.values(x.len(), 50.0));
    let mut acc = rounded.clone();
    emu.launch(
        "elementwise_add_assign_bf16",
        3,
        BLOCK,
        &[output(&mut acc), input(&other), Arg::U64(n)],
    );
    let mut want = bf16_storage(&rounded);
    elementwise::add_assign(&mut want, &bf16_storage(&other)).unwrap();
    assert_same_bf16("elementwise_add_assign_bf16", &acc, &bits_of(&want));
}
