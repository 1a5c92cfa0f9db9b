//! Central finite differences in f64: the oracle every backward rule is held to.

#![allow(dead_code)]

use autograd::{no_grad, Device, Result, Tensor};

/// A small deterministic generator so test data depends only on the proptest-drawn seed.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    pub fn values(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.uniform()).collect()
    }

    /// Values at least `gap` apart from each other (no ties for max pooling, no kinks crossed
    /// by a finite-difference step).
    pub fn distinct_values(&mut self, len: usize, gap: f64) -> Vec<f64> {
        let mut order: Vec<usize> = (0..len).collect();
        for i in (1..len).rev() {
            let j = ((self.uniform() + 1.0) / 2.0 * (i + 1) as f64) as usize % (i + 1);
            order.swap(i, j);
        }
        order
            .into_iter()
            .map(|rank| (rank as f64 - len as f64 / 2.0) * gap + 0.25 * gap * self.uniform())
            .collect()
    }

    /// Values whose magnitude is at least `margin` (for ReLU).
    pub fn away_from_zero(&mut self, len: usize, margin: f64) -> Vec<f64> {
        (0..len)
            .map(|_| {
                let u = self.uniform();
                u.signum() * (margin + u.abs())
            })
            .collect()
    }
}

pub fn leaf(values: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values, shape, Device::Cpu)
        .unwrap()
        .requires_grad_()
}

pub fn constant(values: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values, shape, Device::Cpu).unwrap()
}

/// Checks the gradients `backward` computes for every input of `f` against central finite
/// differences of the scalar `sum(f(inputs) * r)`, where `r` is a fixed random projection
/// (so every output element contributes with a different weight).
pub fn check_gradients(
    inputs: &[Tensor],
    seed: u64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> std::result::Result<(), String> {
    let output = f(inputs).map_err(|e| e.to_string())?;
    let projection = constant(
        Lcg::new(seed ^ 0x5eed).values(output.numel()),
        output.shape(),
    );
    let loss = |inputs: &[Tensor]| -> Result<f64> {
        let _guard = no_grad();
        f(inputs)?.mul(&projection)?.sum()?.item()
    };
    let projected = output.mul(&projection).unwrap().sum().unwrap();
    projected.backward().map_err(|e| e.to_string())?;

    let step = 1e-6;
    for (which, input) in inputs.iter().enumerate() {
        let analytic = match input.grad() {
            Some(g) => g.to_vec_f64().unwrap(),
            None => vec![0.0; input.numel()],
        };
        let base = input.to_vec_f64().unwrap();
        for j in 0..base.len() {
            let with = |delta: f64| -> f64 {
                let mut values = base.clone();
                values[j] += delta;
                let mut perturbed: Vec<Tensor> = inputs.to_vec();
                perturbed[which] = constant(values, input.shape());
                loss(&perturbed).unwrap()
            };
            let numeric = (with(step) - with(-step)) / (2.0 * step);
            let tolerance = 1e-6 * numeric.abs().max(1.0);
            if (analytic[j] - numeric).abs() > tolerance {
                return Err(format!(
                    "input {which} (shape {:?}) element {j}: backward gives {}, finite differences {}",
                    input.shape(),
                    analytic[j],
                    numeric
                ));
            }
        }
    }
    Ok(())
}
