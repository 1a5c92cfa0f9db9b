//! Test-time augmentation: a network's logits averaged over mirrored and shifted copies of
//! each image, as airbench's `infer` does at its `tta_level`s.
//!
//! ```text
//! level 0 (Plain):            f(x)
//! level 1 (Mirror):           m(x) = ½ f(x) + ½ f(mirror x)
//! level 2 (MirrorTranslate):  ½ m(x) + ½ · mean(m(shift(x, -1)), m(shift(x, +1)))
//! ```
//!
//! `shift(x, d)` moves the image by one pixel along both axes with PyTorch's reflect
//! padding at the border: `shift(x, -1)` is airbench's `F.pad(x, (1,)*4, "reflect")[:, :,
//! 0:32, 0:32]` (content moves down and right; row -1 reads row 1), `shift(x, +1)` its
//! `[2:34, 2:34]` (content moves up and left). Level 2 runs 6 forward passes per image.
//! The arithmetic is airbench's, in its order, in f32.

use autograd::{no_grad, Device, Error, Result, Tensor};

use crate::data::{normalized_images, reflect, Normalization, Split, CHANNELS, IMAGE_SIDE};
use crate::error::Result as ModelsResult;
use crate::layers::Module;
use crate::train::{tally_logits, Evaluation};

/// How many variants of each image to average; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtaLevel {
    Plain,
    Mirror,
    MirrorTranslate,
}

impl TtaLevel {
    /// Forward passes per image.
    pub fn passes(self) -> usize {
        match self {
            TtaLevel::Plain => 1,
            TtaLevel::Mirror => 2,
            TtaLevel::MirrorTranslate => 6,
        }
    }
}

fn check(images: &[f32], shape: [usize; 4]) -> Result<()> {
    if images.len() == shape.iter().product::<usize>() {
        Ok(())
    } else {
        Err(Error::shape(
            "tta",
            format!(
                "{} values cannot be images of shape {shape:?}",
                images.len()
            ),
        ))
    }
}

/// Each NCHW image mirrored left-right.
pub fn mirror(images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
    check(images, shape)?;
    let w = shape[3];
    Ok(images
        .chunks_exact(w.max(1))
        .flat_map(|row| row.iter().rev().copied())
        .collect())
}

/// Each NCHW image read at `(y + offset, x + offset)`, reflected at the border: see the
/// module documentation. `offset` must be smaller than the image's sides.
pub fn shift(images: &[f32], shape: [usize; 4], offset: isize) -> Result<Vec<f32>> {
    check(images, shape)?;
    let [_, _, h, w] = shape;
    if offset.unsigned_abs() >= h.min(w) {
        return Err(Error::shape(
            "tta",
            format!("cannot shift {h}x{w} images by {offset} with reflect padding"),
        ));
    }
    let mut out = Vec::with_capacity(images.len());
    for plane in images.chunks_exact(h * w) {
        for y in 0..h {
            let row = &plane[reflect(y as isize + offset, h) * w..][..w];
            out.extend((0..w).map(|x| row[reflect(x as isize + offset, w)]));
        }
    }
    Ok(out)
}

/// `model`'s logits for the NCHW `images` (host values, run on `device`) at `level`, as
/// host f32 `[n, classes]`. Runs the model as it is (call `set_training(false)` and
/// `no_grad` first for evaluation).
pub fn tta_logits(
    model: &mut dyn Module,
    images: &[f32],
    shape: [usize; 4],
    level: TtaLevel,
    device: Device,
) -> Result<Vec<f32>> {
    check(images, shape)?;
    let mut forward = |values: Vec<f32>| -> Result<Vec<f32>> {
        model
            .forward(&Tensor::from_vec(values, &shape, device)?)?
            .to_vec_f32()
    };
    // ½ f(x) + ½ f(mirror x), elementwise in f32.
    let mut mirrored = |values: &[f32]| -> Result<Vec<f32>> {
        let plain = forward(values.to_vec())?;
        let flipped = forward(mirror(values, shape)?)?;
        Ok(plain
            .iter()
            .zip(&flipped)
            .map(|(a, b)| 0.5 * a + 0.5 * b)
            .collect())
    };
    match level {
        TtaLevel::Plain => forward(images.to_vec()),
        TtaLevel::Mirror => mirrored(images),
        TtaLevel::MirrorTranslate => {
            let centre = mirrored(images)?;
            let down_right = mirrored(&shift(images, shape, -1)?)?;
            let up_left = mirrored(&shift(images, shape, 1)?)?;
            Ok(centre
                .iter()
                .zip(down_right.iter().zip(&up_left))
                .map(|(c, (a, b))| 0.5 * c + 0.5 * ((a + b) / 2.0))
                .collect())
        }
    }
}

/// [`crate::train::evaluate_until`] with test-time augmentation: `model`'s [`tta_logits`]
/// at `level` over `split` (normalised with `normalization`) in batches of `batch_size`,
/// in evaluation mode, asking `stop` before every batch (`None` when it said to stop).
/// The loss is the mean cross-entropy of the averaged logits.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_tta_until(
    model: &mut dyn Module,
    split: &Split,
    normalization: &Normalization,
    level: TtaLevel,
    batch_size: usize,
    device: Device,
    classes: usize,
    stop: &dyn Fn() -> bool,
) -> ModelsResult<Option<Evaluation>> {
    if batch_size == 0 {
        return Err(Error::invalid("tta", "the batch size must be at least 1").into());
    }
    model.set_training(false);
    let _guard = no_grad();
    let image = CHANNELS * IMAGE_SIDE * IMAGE_SIDE;
    let images = normalized_images(split, split.len(), normalization);
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut predictions = Vec::with_capacity(split.len());
    let mut loss_sum = 0.0;
    for (values, labels) in images
        .chunks(batch_size * image)
        .zip(split.labels.chunks(batch_size))
    {
        if stop() {
            return Ok(None);
        }
        let shape = [labels.len(), CHANNELS, IMAGE_SIDE, IMAGE_SIDE];
        let logits = tta_logits(model, values, shape, level, device)?;
        let logits = Tensor::from_vec(logits, &[labels.len(), classes], Device::Cpu)?;
        let labels: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        loss_sum += tally_logits(&mut confusion, &mut predictions, &logits, &labels)?;
    }
    Ok(Some(Evaluation {
        confusion,
        loss: loss_sum / split.len().max(1) as f64,
        predictions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // One 1-channel 3x3 image:  1 2 3
    //                           4 5 6
    //                           7 8 9
    const IMAGE: [f32; 9] = [1., 2., 3., 4., 5., 6., 7., 8., 9.];
    const SHAPE: [usize; 4] = [1, 1, 3, 3];

    #[test]
    fn mirror_reverses_each_row() {
        assert_eq!(
            mirror(&IMAGE, SHAPE).unwrap(),
            [3., 2., 1., 6., 5., 4., 9., 8., 7.]
        );
    }

    #[test]
    fn shifts_are_airbenchs_reflect_padded_slices() {
        // F.pad(x, (1, 1, 1, 1), "reflect") is the 5x5    5 4 5 6 5
        //                                                 2 1 2 3 2
        //                                                 5 4 5 6 5
        //                                                 8 7 8 9 8
        //                                                 5 4 5 6 5
        // [0:3, 0:3] is its top-left 3x3, [2:5, 2:5] its bottom-right 3x3.
        assert_eq!(
            shift(&IMAGE, SHAPE, -1).unwrap(),
            [5., 4., 5., 2., 1., 2., 5., 4., 5.]
        );
        assert_eq!(
            shift(&IMAGE, SHAPE, 1).unwrap(),
            [5., 6., 5., 8., 9., 8., 5., 6., 5.]
        );
        assert!(shift(&IMAGE, SHAPE, 3).is_err());
        assert!(shift(&IMAGE[..8], SHAPE, 1).is_err());
    }

    /// A "network" whose logits are the image's pixels themselves, so each pass's
    /// contribution can be followed by hand.
    struct Identity;

    impl Module for Identity {
        fn forward(&mut self, input: &Tensor) -> Result<Tensor> {
            Ok(input.clone())
        }
        fn kind(&self) -> crate::layers::LayerKind {
            crate::layers::LayerKind::Flatten
        }
    }

    #[test]
    fn levels_average_the_variants_as_airbench() {
        let logits = |level| tta_logits(&mut Identity, &IMAGE, SHAPE, level, Device::Cpu).unwrap();
        assert_eq!(logits(TtaLevel::Plain), IMAGE);
        // m(x) = (x + mirror x) / 2: each row becomes its mean... at the ends.
        let m = [2., 2., 2., 5., 5., 5., 8., 8., 8.];
        assert_eq!(logits(TtaLevel::Mirror), m);
        // m(shift -1) = rows (5 4 5 | 2 1 2 | 5 4 5) mirrored-averaged: themselves (they
        // are palindromes); m(shift +1) likewise (5 6 5 | 8 9 8 | 5 6 5). Their mean:
        // (5 5 5 | 5 5 5 | 5 5 5). Level 2 = ½ m + ½ that.
        let expected: Vec<f32> = m.iter().map(|v| 0.5 * v + 0.5 * 5.0).collect();
        assert_eq!(logits(TtaLevel::MirrorTranslate), expected);
        assert_eq!(TtaLevel::MirrorTranslate.passes(), 6);
    }
}
