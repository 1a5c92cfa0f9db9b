//! `IMAGE.saliency.png` (`predict --explain`): which pixels the predicted class's score is
//! most sensitive to. The saliency of a pixel is the largest magnitude, over its three
//! channels, of the gradient of the class's logit with respect to the input (Simonyan et
//! al., 2013), shown as a heat map beside the image the network saw.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use models::data::{Normalization, CHANNELS, CLASSES, IMAGE_SIDE};
use models::Tensor;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{draw_heading, font, upscale, Canvas};

/// Each 32x32 panel is shown 8 times larger.
const SCALE: u32 = 8;
const PANEL: i32 = IMAGE_SIDE as i32 * SCALE as i32;
const MARGIN: i32 = 24;
const TOP: i32 = 84;

pub const WIDTH: u32 = (4 * MARGIN + 3 * PANEL) as u32;
pub const HEIGHT: u32 = (TOP + PANEL + 40) as u32;

/// Where `predict --explain` writes the picture of `image`: beside it, `cat.jpg` ->
/// `cat.jpg.saliency.png`.
pub fn output_path(image: &Path) -> PathBuf {
    let mut name = image.as_os_str().to_owned();
    name.push(".saliency.png");
    PathBuf::from(name)
}

/// `predict --explain`: the saliency of the predicted class for the image at `path`, whose
/// normalised values are `input` (a leaf marked with `requires_grad_()`) and whose `logits` were computed
/// from it with the graph recorded, drawn into [`output_path`]. Returns that path.
pub fn explain(
    path: &Path,
    input: &Tensor,
    logits: &Tensor,
    normalization: Normalization,
) -> anyhow::Result<PathBuf> {
    let scores = logits.to_vec_f32()?;
    let predicted = models::train::predictions(logits)?[0];
    let largest = scores[predicted];
    let total: f32 = scores.iter().map(|s| (s - largest).exp()).sum();
    let class = CLASSES.get(predicted).copied().unwrap_or("?");
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let caption = format!("{name}: {class} {:.1}%", 100.0 / total);
    let map = saliency(input, logits, predicted)?;
    let image = denormalize(&input.to_vec_f32()?, &normalization);
    let out = output_path(path);
    draw(&image, &map, &caption, &out)?;
    Ok(out)
}

/// The saliency of each of the 32x32 pixels for `class`: `input` is the `[1, 3, 32, 32]`
/// leaf marked with `requires_grad_()` and `logits` the `[1, classes]` output computed from it
/// with the graph recorded. Consumes the graph.
pub fn saliency(input: &Tensor, logits: &Tensor, class: usize) -> anyhow::Result<Vec<f32>> {
    let classes = logits.numel();
    if class >= classes {
        anyhow::bail!("class {class} is not one of the {classes} outputs");
    }
    // d logit[class] / d input, as the gradient of the sum of the one-hot-masked logits.
    let mut mask = vec![0.0f32; classes];
    mask[class] = 1.0;
    let mask = Tensor::from_vec(mask, logits.shape(), logits.device())?.to_dtype(logits.dtype())?;
    logits.mul(&mask)?.sum()?.backward()?;
    let gradient = input
        .grad()
        .ok_or_else(|| anyhow::anyhow!("no gradient reached the input image"))?
        .to_vec_f32()?;
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    if gradient.len() != CHANNELS * plane {
        anyhow::bail!(
            "the input gradient has {} values, expected {}",
            gradient.len(),
            CHANNELS * plane
        );
    }
    Ok((0..plane)
        .map(|p| {
            (0..CHANNELS)
                .map(|c| gradient[c * plane + p].abs())
                .fold(0.0, f32::max)
        })
        .collect())
}

/// The normalised CHW values the network saw, back as an RGB image.
pub fn denormalize(values: &[f32], normalization: &Normalization) -> RgbImage {
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    RgbImage::from_fn(IMAGE_SIDE as u32, IMAGE_SIDE as u32, |x, y| {
        let at = y as usize * IMAGE_SIDE + x as usize;
        Rgb([0, 1, 2].map(|c| {
            let v = values[c * plane + at] * normalization.std[c] + normalization.mean[c];
            (v * 255.0).round().clamp(0.0, 255.0) as u8
        }))
    })
}

/// matplotlib's "inferno": black through purple and orange to pale yellow.
fn inferno() -> DerivedColorMap<RGBColor> {
    DerivedColorMap::new(&[
        RGBColor(0, 0, 4),
        RGBColor(87, 16, 110),
        RGBColor(188, 55, 84),
        RGBColor(249, 142, 9),
        RGBColor(252, 255, 164),
    ])
}

/// The saliency scaled to its largest value, as heat-map colours, and the same colours laid
/// over a grey copy of `image` in proportion to the saliency.
fn heat_images(image: &RgbImage, saliency: &[f32]) -> (RgbImage, RgbImage) {
    let largest = saliency.iter().fold(0.0f32, |m, &v| m.max(v));
    let level = |x: u32, y: u32| {
        let s = saliency[(y * IMAGE_SIDE as u32 + x) as usize];
        if largest > 0.0 {
            s / largest
        } else {
            0.0
        }
    };
    let map = inferno();
    let side = IMAGE_SIDE as u32;
    let heat = RgbImage::from_fn(side, side, |x, y| {
        let RGBColor(r, g, b) = map.get_color(level(x, y));
        Rgb([r, g, b])
    });
    let overlay = RgbImage::from_fn(side, side, |x, y| {
        let [r, g, b] = image.get_pixel(x, y).0;
        let grey = 0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32;
        let weight = level(x, y);
        let hot = heat.get_pixel(x, y).0;
        Rgb(hot.map(|h| ((1.0 - weight) * grey + weight * h as f32).round() as u8))
    });
    (heat, overlay)
}

/// Draws `image` (32x32), its saliency map and the two laid over each other; `caption`
/// says what was predicted.
pub fn draw(image: &RgbImage, saliency: &[f32], caption: &str, path: &Path) -> anyhow::Result<()> {
    let side = IMAGE_SIDE as u32;
    if image.dimensions() != (side, side) || saliency.len() != IMAGE_SIDE * IMAGE_SIDE {
        anyhow::bail!("a saliency map is drawn for a 32x32 image");
    }
    let (heat, overlay) = heat_images(image, saliency);
    let left = |panel: i32| MARGIN + panel * (PANEL + MARGIN);
    let mut canvas = Canvas::new(WIDTH, HEIGHT);
    canvas.draw(|area| {
        area.fill(&WHITE)?;
        draw_heading(
            area,
            caption,
            20,
            "saliency: |gradient of the class's logit w.r.t. each pixel|, largest over RGB, scaled to the image's maximum",
        )?;
        for (panel, label) in ["input, 32x32 as the network saw it", "saliency", "saliency over the image"]
            .into_iter()
            .enumerate()
        {
            area.draw(&Text::new(
                label,
                (left(panel as i32) + PANEL / 2, TOP + PANEL + 10),
                font(14).pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
        Ok(())
    })?;
    for (panel, picture) in [image, &heat, &overlay].into_iter().enumerate() {
        canvas.paste(
            &upscale(picture, SCALE),
            left(panel as i32) as u32,
            TOP as u32,
        );
    }
    canvas.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use models::Device;

    #[test]
    fn the_picture_goes_beside_the_image() {
        assert_eq!(
            output_path(Path::new("photos/cat.jpg")),
            PathBuf::from("photos/cat.jpg.saliency.png")
        );
    }

    #[test]
    fn denormalizing_gives_back_the_pixels() {
        let normalization = Normalization::CIFAR10;
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        let bytes: Vec<u8> = (0..3 * plane).map(|i| (i * 31 % 256) as u8).collect();
        let values: Vec<f32> = bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| normalization.apply(i / plane, b))
            .collect();
        let image = denormalize(&values, &normalization);
        assert_eq!(
            image.get_pixel(5, 2).0,
            [0, 1, 2].map(|c| bytes[c * plane + 2 * 32 + 5])
        );
    }

    /// A linear "network" logits = W x: the gradient of logit k is row k of W, so the
    /// saliency is known exactly.
    #[test]
    fn the_saliency_is_the_largest_gradient_magnitude_over_channels() {
        let plane = IMAGE_SIDE * IMAGE_SIDE;
        let inputs = 3 * plane;
        let input = Tensor::from_vec(vec![0.5f32; inputs], &[1, 3, 32, 32], Device::Cpu)
            .unwrap()
            .requires_grad_();
        // Row 1 of W: pixel p has weights (p % 7 - 3) in red, 2 in green, -5 in blue at pixel 0.
        let mut weights = vec![0.0f32; 2 * inputs];
        for p in 0..plane {
            weights[inputs + p] = (p % 7) as f32 - 3.0;
            weights[inputs + plane + p] = 2.0;
        }
        weights[inputs + 2 * plane] = -5.0;
        let w = Tensor::from_vec(weights, &[2, inputs], Device::Cpu).unwrap();
        let logits = input
            .reshape(&[1, inputs])
            .unwrap()
            .linear(&w, None)
            .unwrap();
        let map = saliency(&input, &logits, 1).unwrap();
        assert_eq!(map[0], 5.0);
        for (p, &value) in map.iter().enumerate().skip(1) {
            let expected = (((p % 7) as f32) - 3.0).abs().max(2.0);
            assert_eq!(value, expected, "pixel {p}");
        }
        assert!(saliency(&input, &logits, 2).is_err());
    }

    #[test]
    fn the_picture_has_its_size_and_the_hottest_pixel_is_brightest() {
        let side = IMAGE_SIDE as u32;
        let image = RgbImage::from_fn(side, side, |x, y| Rgb([(x * 8) as u8, (y * 8) as u8, 90]));
        let mut map = vec![0.1f32; IMAGE_SIDE * IMAGE_SIDE];
        map[3 * IMAGE_SIDE + 4] = 2.0;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.saliency.png");
        draw(&image, &map, "cat 90.0%", &path).unwrap();
        let picture = image::open(&path).unwrap().to_rgb8();
        assert_eq!(picture.dimensions(), (WIDTH, HEIGHT));
        let heat_left = (2 * MARGIN + PANEL) as u32;
        let at = |x: u32, y: u32| {
            picture
                .get_pixel(heat_left + x * SCALE + 2, TOP as u32 + y * SCALE + 2)
                .0
        };
        let RGBColor(r, g, b) = inferno().get_color(1.0);
        assert_eq!(at(4, 3), [r, g, b]);
        let RGBColor(r, g, b) = inferno().get_color(0.05);
        assert_eq!(at(0, 0), [r, g, b]);
    }
}
