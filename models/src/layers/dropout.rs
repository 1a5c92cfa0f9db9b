use autograd::{Result, Tensor};

use super::{LayerKind, Module, StateEntry};

/// Inverted dropout, like `torch.nn.Dropout` (the notebook's `Dropout2d` on a [N, features]
/// input drops single features, which is the same thing).
///
/// Masks are a pure function of (`seed`, call count, element), so a run resumed from a
/// checkpoint that restores `calls` draws exactly the masks the uninterrupted run would have.
pub struct Dropout {
    pub p: f64,
    pub seed: u64,
    pub calls: u64,
    training: bool,
}

impl Dropout {
    pub fn new(p: f64, seed: u64) -> Dropout {
        Dropout {
            p,
            seed,
            calls: 0,
            training: true,
        }
    }

    fn mask_seed(&self) -> u64 {
        // splitmix64 of (seed, call): distinct, well-mixed seeds for consecutive calls.
        let mut z = self
            .seed
            .wrapping_add(self.calls.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Module for Dropout {
    fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
        if !self.training {
            return input.dropout(self.p, false, 0);
        }
        let output = input.dropout(self.p, true, self.mask_seed())?;
        self.calls += 1;
        Ok(output)
    }

    fn visit_state(&mut self, visit: &mut dyn FnMut(&str, StateEntry<'_>)) {
        visit("seed", StateEntry::RngCounter(&mut self.seed));
        visit("calls", StateEntry::RngCounter(&mut self.calls));
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn kind(&self) -> LayerKind {
        LayerKind::Dropout { p: self.p }
    }
}
