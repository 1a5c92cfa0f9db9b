//! NumPy's legacy global random generator (`np.random.seed`, `randn`, `random_sample`),
//! reproduced bit for bit so tests can rebuild the notebook's inputs.
//!
//! The three layers, exactly as NumPy's `RandomState` does them:
//! 1. MT19937 (Matsumoto & Nishimura), seeded with the classic `init_genrand(seed)`.
//! 2. A double in `[0, 1)` with 53 random bits from two 32-bit draws `a`, `b`:
//!    `((a >> 5) * 2^26 + (b >> 6)) / 2^53`.
//! 3. Standard normals by Marsaglia's polar method, which makes two at a time: the
//!    second is cached for the next call, and reseeding throws the cache away.
//!
//! Arrays are filled in C order, one draw per element.

use super::Array4;

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The state behind `np.random.seed(seed)`: an MT19937 plus the cached Gaussian.
#[derive(Clone, Debug)]
pub struct NumpyRng {
    mt: [u32; N],
    /// Next word of `mt` to temper; `N` means the block is used up and must be regenerated.
    index: usize,
    /// The second Gaussian of the last polar-method pair, not yet handed out.
    cached_gauss: Option<f64>,
}

impl NumpyRng {
    /// `np.random.seed(seed)`: MT19937's `init_genrand(seed)`, no cached Gaussian.
    pub fn new(seed: u32) -> NumpyRng {
        let mut mt = [0u32; N];
        mt[0] = seed;
        for i in 1..N {
            let prev = mt[i - 1];
            mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        NumpyRng {
            mt,
            index: N,
            cached_gauss: None,
        }
    }

    /// The next raw 32-bit output of MT19937 (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        // Tempering: improves the equidistribution of the raw state words.
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `np.random.random_sample()`: a uniform double in `[0, 1)` with 53 random bits.
    pub fn random_sample(&mut self) -> f64 {
        let a = self.next_u32() >> 5; // 27 bits
        let b = self.next_u32() >> 6; // 26 bits
        (a as f64 * 67_108_864.0 + b as f64) / 9_007_199_254_740_992.0
    }

    /// One `np.random.randn()`: a standard normal by the polar method.
    pub fn randn(&mut self) -> f64 {
        if let Some(gauss) = self.cached_gauss.take() {
            return gauss;
        }
        // A uniform point in the unit disc (excluding the centre)...
        let (x1, x2, r2) = loop {
            let x1 = 2.0 * self.random_sample() - 1.0;
            let x2 = 2.0 * self.random_sample() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                break (x1, x2, r2);
            }
        };
        // ...scaled radially gives two independent normals.
        let f = (-2.0 * r2.ln() / r2).sqrt();
        self.cached_gauss = Some(f * x1);
        f * x2
    }

    /// `np.random.randn(n)`: `n` standard normals in draw order.
    pub fn randn_vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.randn()).collect()
    }

    /// `np.random.randn(d0, d1, d2, d3)`: normals filled in C order.
    pub fn randn_array4(&mut self, shape: [usize; 4]) -> Array4 {
        Array4::from_vec(shape, self.randn_vec(shape.iter().product()))
    }

    /// Regenerates the whole block of `N` state words (MT19937's "twist").
    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.mt[i] & UPPER_MASK) | (self.mt[(i + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.mt[i] = self.mt[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }
}
