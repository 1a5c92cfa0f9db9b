//! Training-time augmentation: torchvision's `RandomCrop(32, padding=p)` followed by
//! `RandomHorizontalFlip()`, applied to the raw bytes before normalisation.
//!
//! Padding is zero-filled, as torchvision pads with fill 0 before `ToTensor`, so a padded
//! pixel normalises to `-mean / std` like a black pixel.

use rand::RngExt;

/// Which random transforms to apply. The default applies none.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Augmentation {
    /// Pad each side by this many zero pixels, then crop a random 32×32 window.
    /// 0 turns cropping off; 4 is the usual CIFAR-10 value.
    pub random_crop_padding: usize,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
}

impl Augmentation {
    /// No augmentation (the default, and what evaluation uses).
    pub const NONE: Augmentation = Augmentation {
        random_crop_padding: 0,
        horizontal_flip: false,
    };
    /// The usual CIFAR-10 recipe: pad 4 and crop, random flip.
    pub const STANDARD: Augmentation = Augmentation {
        random_crop_padding: 4,
        horizontal_flip: true,
    };

    /// Whether any transform is on.
    pub fn is_active(&self) -> bool {
        self.random_crop_padding > 0 || self.horizontal_flip
    }

    /// Draws one image's transform: crop offset first, then the flip, always in that
    /// order so the draws for a given generator state never change.
    pub(crate) fn draw(&self, rng: &mut impl rand::Rng) -> Draw {
        let p = self.random_crop_padding;
        let (dy, dx) = if p > 0 {
            (rng.random_range(0..=2 * p), rng.random_range(0..=2 * p))
        } else {
            (0, 0)
        };
        let flip = self.horizontal_flip && rng.random_bool(0.5);
        Draw {
            padding: p,
            dy,
            dx,
            flip,
        }
    }
}

/// One image's drawn transform. The crop window's top-left corner is at (`dy`, `dx`) in
/// the padded image, each in `0..=2 * padding`; `padding`, `padding` is the centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Draw {
    pub padding: usize,
    pub dy: usize,
    pub dx: usize,
    pub flip: bool,
}

/// Writes the crop-then-flip of the CHW image `src` (`channels` planes of
/// `height`×`width`) into `out` (same shape):
/// `out[c][y][x] = src[c][y + dy - p][x' + dx - p]` with `x' = width - 1 - x` when
/// flipped, else `x`, and 0 where that falls outside `src`.
pub(crate) fn crop_flip(
    src: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    draw: Draw,
    out: &mut [u8],
) {
    let plane = height * width;
    debug_assert_eq!(src.len(), channels * plane);
    debug_assert_eq!(out.len(), channels * plane);
    let p = draw.padding as isize;
    for c in 0..channels {
        let src_plane = &src[c * plane..(c + 1) * plane];
        let out_plane = &mut out[c * plane..(c + 1) * plane];
        for (y, out_row) in out_plane.chunks_exact_mut(width).enumerate() {
            let sy = y as isize + draw.dy as isize - p;
            if sy < 0 || sy >= height as isize {
                out_row.fill(0);
                continue;
            }
            let src_row = &src_plane[sy as usize * width..(sy as usize + 1) * width];
            for (x, o) in out_row.iter_mut().enumerate() {
                let xs = if draw.flip { width - 1 - x } else { x };
                let sx = xs as isize + draw.dx as isize - p;
                *o = if sx < 0 || sx >= width as isize {
                    0
                } else {
                    src_row[sx as usize]
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One channel, 3×3:      1 2 3
    //                        4 5 6
    //                        7 8 9
    const IMG: [u8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];

    fn apply(padding: usize, dy: usize, dx: usize, flip: bool) -> [u8; 9] {
        let mut out = [0xAA; 9];
        let draw = Draw {
            padding,
            dy,
            dx,
            flip,
        };
        crop_flip(&IMG, 1, 3, 3, draw, &mut out);
        out
    }

    #[test]
    fn centre_crop_without_flip_is_identity() {
        assert_eq!(apply(1, 1, 1, false), IMG);
        assert_eq!(apply(0, 0, 0, false), IMG);
    }

    #[test]
    fn flip_mirrors_each_row() {
        assert_eq!(apply(0, 0, 0, true), [3, 2, 1, 6, 5, 4, 9, 8, 7]);
    }

    #[test]
    fn top_left_crop_shifts_image_down_right_with_zero_border() {
        // Window at (0,0) of the 5×5 zero-padded image.
        assert_eq!(apply(1, 0, 0, false), [0, 0, 0, 0, 1, 2, 0, 4, 5]);
    }

    #[test]
    fn bottom_right_crop_shifts_image_up_left() {
        assert_eq!(apply(1, 2, 2, false), [5, 6, 0, 8, 9, 0, 0, 0, 0]);
    }

    #[test]
    fn crop_then_flip() {
        // Crop at (0, 2): rows [0 0 0], [2 3 0], [5 6 0]; then mirror.
        assert_eq!(apply(1, 0, 2, true), [0, 0, 0, 0, 3, 2, 0, 6, 5]);
    }

    #[test]
    fn channels_are_transformed_independently() {
        let src: Vec<u8> = (1..=8).collect(); // two 2×2 planes
        let mut out = vec![0; 8];
        let draw = Draw {
            padding: 0,
            dy: 0,
            dx: 0,
            flip: true,
        };
        crop_flip(&src, 2, 2, 2, draw, &mut out);
        assert_eq!(out, [2, 1, 4, 3, 6, 5, 8, 7]);
    }

    #[test]
    fn draws_stay_in_range_and_respect_switches() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let aug = Augmentation {
            random_crop_padding: 2,
            horizontal_flip: false,
        };
        let mut seen_offsets = std::collections::HashSet::new();
        for _ in 0..500 {
            let d = aug.draw(&mut rng);
            assert!(d.dy <= 4 && d.dx <= 4 && !d.flip);
            seen_offsets.insert((d.dy, d.dx));
        }
        assert_eq!(seen_offsets.len(), 25, "every window position gets drawn");

        let flips = Augmentation {
            random_crop_padding: 0,
            horizontal_flip: true,
        };
        let n_flipped = (0..1000).filter(|_| flips.draw(&mut rng).flip).count();
        assert!(
            (400..600).contains(&n_flipped),
            "{n_flipped} of 1000 flipped"
        );
        assert_eq!(Augmentation::NONE.draw(&mut rng).padding, 0);
        assert!(!Augmentation::default().is_active());
    }
}
