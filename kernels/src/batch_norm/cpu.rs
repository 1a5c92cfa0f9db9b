use rayon::prelude::*;

use super::BatchNormGeometry;
use crate::bf16_values::Stored;
use crate::output::filled_in_parallel;
use crate::simd::{has_avx512, wide_loop};
use crate::{Element, PAR_MIN_LEN};

/// Independent f64 accumulators: a single running sum is one long dependency chain of
/// additions, while eight lanes let the compiler keep several additions in flight.
const LANES: usize = 8;

/// `value` read in f64 (exactly, whatever its type).
#[inline(always)]
fn f64_of<T: Stored>(value: T) -> f64 {
    value.load().to_f64_lossy()
}

/// Values widened to f64 per block, by plain loops, before the backward's lanes add
/// them: reading and widening inside the per-lane loop left that loop scalar, one bf16
/// conversion at a time.
const BLOCK: usize = 8 * LANES;

/// `src` widened to f64 into `dst` (as long), by a loop the compiler vectorises.
#[inline(always)]
fn widen_block(src: &[impl Stored], dst: &mut [f64]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = f64_of(v);
    }
}

/// Adds `f(a[i], b[i])` over two equally long slices into eight f64 lanes, the values
/// past the last whole group of eight into `tail`.
#[inline(always)]
fn add_to_lanes(
    lanes: &mut [f64; LANES],
    tail: &mut f64,
    a: &[impl Stored],
    b: &[impl Stored],
    f: &impl Fn(f64, f64) -> f64,
) {
    // (Widening a block first, as [`PairSums`] does, measured slower here: the
    // forward's sums read one tensor twice, and would widen it twice.)
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (&x, &y) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
        *tail += f(f64_of(x), f64_of(y));
    }
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for k in 0..LANES {
            lanes[k] += f(f64_of(ca[k]), f64_of(cb[k]));
        }
    }
}

/// Two sums at once, `f` giving both terms of each pair of values: one pass over the
/// data and two independent chains of additions, each sum in eight f64 lanes adding in
/// the order [`add_to_lanes`] would. Holds the blocks the values are widened into, so a
/// channel of many small planes sets them up once.
struct PairSums {
    lanes: [[f64; LANES]; 2],
    tail: [f64; 2],
    xs: [f64; BLOCK],
    ys: [f64; BLOCK],
}

impl PairSums {
    fn new() -> PairSums {
        PairSums {
            lanes: [[0.0; LANES]; 2],
            tail: [0.0; 2],
            xs: [0.0; BLOCK],
            ys: [0.0; BLOCK],
        }
    }

    /// Adds `f(a[i], b[i])` over two equally long slices: the values past the last whole
    /// group of eight into the tails, the groups into the lanes.
    #[inline(always)]
    fn add(&mut self, a: &[impl Stored], b: &[impl Stored], f: &impl Fn(f64, f64) -> (f64, f64)) {
        let whole = a.len() - a.len() % LANES;
        for (&x, &y) in a[whole..].iter().zip(&b[whole..]) {
            let (first, second) = f(f64_of(x), f64_of(y));
            self.tail[0] += first;
            self.tail[1] += second;
        }
        for (ba, bb) in a[..whole].chunks(BLOCK).zip(b[..whole].chunks(BLOCK)) {
            let (xs, ys) = (&mut self.xs[..ba.len()], &mut self.ys[..ba.len()]);
            widen_block(ba, xs);
            widen_block(bb, ys);
            for (gx, gy) in xs.chunks_exact(LANES).zip(ys.chunks_exact(LANES)) {
                for k in 0..LANES {
                    let (first, second) = f(gx[k], gy[k]);
                    self.lanes[0][k] += first;
                    self.lanes[1][k] += second;
                }
            }
        }
    }

    fn total(&self) -> (f64, f64) {
        (
            self.lanes[0].iter().sum::<f64>() + self.tail[0],
            self.lanes[1].iter().sum::<f64>() + self.tail[1],
        )
    }
}

wide_loop! {
    /// [`lane_sum`] of two sums in one pass over `a` and `b`.
    fn lane_sum_pair<T: Stored>(
        a: &[T],
        b: &[T],
        f: impl Fn(f64, f64) -> (f64, f64),
    ) -> (f64, f64) {
        let mut sums = PairSums::new();
        sums.add(a, b, &f);
        sums.total()
    }
}

wide_loop! {
    /// [`channel_sum`] of two sums in one pass over channel `c` of `a` and `b`.
    fn channel_sum_pair<T: Stored>(
        a: &[T],
        b: &[T],
        c: usize,
        g: &BatchNormGeometry,
        f: impl Fn(f64, f64) -> (f64, f64),
    ) -> (f64, f64) {
        let mut sums = PairSums::new();
        for (pa, pb) in channel_planes(a, c, g).zip(channel_planes(b, c, g)) {
            sums.add(pa, pb, &f);
        }
        sums.total()
    }
}

wide_loop! {
    /// `sum(f(a[i], b[i]))` in f64 over two equally long slices (of an input and of its
    /// gradient, or twice the same), eight f64 lanes (one AVX-512 register when `wide`;
    /// each lane adds in the same order either way).
    fn lane_sum<T: Stored>(a: &[T], b: &[impl Stored], f: impl Fn(f64, f64) -> f64) -> f64 {
        let (mut lanes, mut tail) = ([0.0f64; LANES], 0.0f64);
        add_to_lanes(&mut lanes, &mut tail, a, b, &f);
        lanes.iter().sum::<f64>() + tail
    }
}

/// The `(n, c)` planes of channel `c`, in batch order.
fn channel_planes<'a, T>(
    x: &'a [T],
    c: usize,
    g: &'a BatchNormGeometry,
) -> impl Iterator<Item = &'a [T]> + 'a {
    (0..g.batch).map(move |n| {
        let start = (n * g.channels + c) * g.spatial;
        &x[start..start + g.spatial]
    })
}

/// How many channels one rayon task should take.
fn min_channels(g: &BatchNormGeometry) -> usize {
    (PAR_MIN_LEN / (g.batch * g.spatial).max(1)).max(1)
}

/// A channel of at most this many bytes stays in a core's (2 MiB) L2 cache from one pass
/// over it to the next.
const CACHED_CHANNEL_BYTES: usize = 1 << 20;

/// Whether a whole channel of `x` stays in the L2 cache between two passes, so that its
/// sums are taken over the whole channel at once rather than plane by plane.
///
/// Judged at the size of the compute type: a bf16 channel takes the path (and so the
/// order of additions) an f32 channel of the same shape takes, for the same bits.
pub(super) fn channel_fits_in_cache<T: Stored>(g: &BatchNormGeometry) -> bool {
    g.batch * g.spatial * std::mem::size_of::<T::Compute>() <= CACHED_CHANNEL_BYTES
}

wide_loop! {
    /// `sum(f(a[i], b[i]))` in f64 over channel `c`'s planes of two equally shaped
    /// tensors: one loop over the whole channel, eight f64 lanes carried from plane to
    /// plane, so small planes (7x7, 3x3, or 1 for a 2-D input) cost no call each.
    fn channel_sum<T: Stored>(
        a: &[T],
        b: &[impl Stored],
        c: usize,
        g: &BatchNormGeometry,
        f: impl Fn(f64, f64) -> f64,
    ) -> f64 {
        let (mut lanes, mut tail) = ([0.0f64; LANES], 0.0f64);
        for (pa, pb) in channel_planes(a, c, g).zip(channel_planes(b, c, g)) {
            add_to_lanes(&mut lanes, &mut tail, pa, pb, &f);
        }
        lanes.iter().sum::<f64>() + tail
    }
}

/// `(mean, M2)` of every channel, where `M2 = sum((x - mean)^2)`, by two passes (the
/// mean, then the squared deviations from it), reading the input from memory once.
///
/// A channel that fits in the L2 cache takes both passes over the whole channel, the
/// second from cache. A larger one takes them plane by plane (each plane's second pass
/// from cache), and the planes' moments are merged with Chan et al.'s update, which keeps
/// the precision of two passes over the whole channel.
pub(super) fn channel_moments<T: Stored>(x: &[T], g: &BatchNormGeometry) -> Vec<(f64, f64)> {
    let wide = has_avx512();
    let cached = channel_fits_in_cache::<T>(g);
    (0..g.channels)
        .into_par_iter()
        .with_min_len(min_channels(g))
        .map(|c| {
            if cached {
                let count = (g.batch * g.spatial) as f64;
                let mean = channel_sum(wide, x, x, c, g, |v, _| v) / count;
                let m2 = channel_sum(wide, x, x, c, g, |v, _| (v - mean) * (v - mean));
                return (mean, m2);
            }
            let (mut count, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
            for plane in channel_planes(x, c, g) {
                let n_b = plane.len() as f64;
                let mean_b = lane_sum(wide, plane, plane, |v, _| v) / n_b;
                let m2_b = lane_sum(wide, plane, plane, |v, _| (v - mean_b) * (v - mean_b));
                let total = count + n_b;
                let delta = mean_b - mean;
                mean += delta * (n_b / total);
                m2 += m2_b + delta * delta * (count * n_b / total);
                count = total;
            }
            (mean, m2)
        })
        .collect()
}

/// `(sum(dy), sum(dy * (x - mean_c)))` of every channel, in f64. `dy` has the input's
/// type (bf16 under autocast), each value widened as it is read, as `x`'s are.
pub(super) fn grad_sums<T: Stored>(
    x: &[T],
    dy: &[T],
    mean: &[f64],
    g: &BatchNormGeometry,
) -> Vec<(f64, f64)> {
    let wide = has_avx512();
    let cached = channel_fits_in_cache::<T>(g);
    (0..g.channels)
        .into_par_iter()
        .with_min_len(min_channels(g))
        .map(|c| {
            let m = mean[c];
            // Both sums in one pass: each is a chain of dependent additions, so two
            // chains side by side take the time of one.
            let terms = |v: f64, d: f64| (d, d * (v - m));
            if cached {
                return channel_sum_pair(wide, x, dy, c, g, terms);
            }
            channel_planes(x, c, g).zip(channel_planes(dy, c, g)).fold(
                (0.0, 0.0),
                |(s, sx), (x, dy)| {
                    let (plane_s, plane_sx) = lane_sum_pair(wide, x, dy, terms);
                    (s + plane_s, sx + plane_sx)
                },
            )
        })
        .collect()
}

/// Planes smaller than this are processed an image at a time ([`map_images`]): a call per
/// plane of 7x7 or 3x3 values would cost more than its arithmetic.
pub(super) const SMALL_PLANE: usize = 256;

/// Runs `f(start, output image)` over every image (all channels of one batch element) in
/// parallel; `start` is the image's offset in the input.
fn map_images<T: Stored>(
    len: usize,
    g: &BatchNormGeometry,
    f: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let image = g.channels * g.spatial;
    if len == 0 || image == 0 {
        return Vec::new();
    }
    filled_in_parallel(
        len,
        image,
        (PAR_MIN_LEN / image).max(1),
        |n, out: &mut [T]| f(n * image, out),
    )
}

/// Runs `f(channel, input plane, output plane)` over every `(n, c)` plane in parallel.
fn map_planes<T: Stored>(
    len: usize,
    g: &BatchNormGeometry,
    f: impl Fn(usize, usize, &mut [T]) + Sync,
) -> Vec<T> {
    if len == 0 {
        // Also covers spatial == 0, which chunking by plane could not.
        return Vec::new();
    }
    filled_in_parallel(
        len,
        g.spatial,
        PAR_MIN_LEN / g.spatial,
        |plane, out: &mut [T]| f(plane % g.channels, plane * g.spatial, out),
    )
}

/// `y = (x - center_c) * scale_c + shift_c` for `coefficients[c] = (center_c, scale_c, shift_c)`.
///
/// Subtracting the mean first (rather than folding it into the shift) keeps f32 outputs
/// accurate when a channel's mean is large compared with its spread.
pub(super) fn affine<T: Stored>(
    x: &[T],
    coefficients: &[(f64, f64, f64)],
    g: &BatchNormGeometry,
) -> Vec<T> {
    let wide = has_avx512();
    let of = <T::Compute as Element>::of;
    let coefficients: Vec<[T::Compute; 3]> = coefficients
        .iter()
        .map(|&(center, scale, shift)| [of(center), of(scale), of(shift)])
        .collect();
    if g.spatial < SMALL_PLANE {
        return map_images(x.len(), g, |start, y| {
            let x = &x[start..start + y.len()];
            affine_planes(wide, x, y, &coefficients, g.spatial)
        });
    }
    map_planes(x.len(), g, |c, start, y| {
        let x = &x[start..start + y.len()];
        affine_planes(wide, x, y, &coefficients[c..=c], g.spatial);
    })
}

wide_loop! {
    /// `y = (x - center) * scale + shift` over consecutive planes (a whole image, or one
    /// plane), each with its channel's `[center, scale, shift]`.
    fn affine_planes<T: Stored>(
        x: &[T],
        y: &mut [T],
        coefficients: &[[T::Compute; 3]],
        spatial: usize,
    ) {
        let planes = y.chunks_exact_mut(spatial).zip(x.chunks_exact(spatial));
        for ((y, x), &[center, scale, shift]) in planes.zip(coefficients) {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = T::store((x.load() - center) * scale + shift);
            }
        }
    }
}

/// `dx = a_c * dy + b_c * (x - mean_c) + k_c` for `coefficients[c] = (mean_c, a_c, b_c, k_c)`.
///
/// `dy` and `dx` have the input's type: a bf16 gradient is widened as it is read and each
/// `dx` computed in f32 and rounded once as it is stored.
pub(super) fn input_grad<T: Stored>(
    x: &[T],
    dy: &[T],
    coefficients: &[(f64, f64, f64, f64)],
    g: &BatchNormGeometry,
) -> Vec<T> {
    let wide = has_avx512();
    let of = <T::Compute as Element>::of;
    let coefficients: Vec<[T::Compute; 4]> = coefficients
        .iter()
        .map(|&(mean, a, b, k)| [of(mean), of(a), of(b), of(k)])
        .collect();
    if g.spatial < SMALL_PLANE {
        return map_images(x.len(), g, |start, dx| {
            let range = start..start + dx.len();
            let (x, dy) = (&x[range.clone()], &dy[range]);
            input_grad_planes(wide, x, dy, dx, &coefficients, g.spatial)
        });
    }
    map_planes(x.len(), g, |c, start, dx| {
        let range = start..start + dx.len();
        let (x, dy) = (&x[range.clone()], &dy[range]);
        input_grad_planes(wide, x, dy, dx, &coefficients[c..=c], g.spatial);
    })
}

wide_loop! {
    /// `dx = a * dy + b * (x - mean) + k` over consecutive planes (a whole image, or one
    /// plane), each with its channel's `[mean, a, b, k]`.
    fn input_grad_planes<T: Stored>(
        x: &[T],
        dy: &[T],
        dx: &mut [T],
        coefficients: &[[T::Compute; 4]],
        spatial: usize,
    ) {
        let planes = dx
            .chunks_exact_mut(spatial)
            .zip(x.chunks_exact(spatial))
            .zip(dy.chunks_exact(spatial));
        for (((dx, x), dy), &[mean, a, b, k]) in planes.zip(coefficients) {
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                *dx = T::store(a * dy.load() + b * (x.load() - mean) + k);
            }
        }
    }
}
