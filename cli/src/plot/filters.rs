//! `filters.png`: the first convolution's filters as small images, the classic picture of
//! what a first layer learns. The first convolution is the first 4-D weight of the model's
//! `state_dict`, whatever its name, number of filters or kernel size.

use std::path::Path;

use image::{Rgb, RgbImage};
use models::layers::{Module, StateEntry};
use plotters::prelude::*;

use super::{bold, draw_heading, upscale, Canvas};

/// A filter is shown about this many pixels wide, whatever its kernel size.
const TILE: usize = 48;
const GAP: i32 = 6;
const MARGIN: i32 = 20;
const TOP: i32 = 82;
/// Enough room for the title.
const MIN_WIDTH: i32 = 560;
const TITLE_SIZE: u32 = 18;

/// The first convolution's weight: `[filters, input channels, height, width]` values.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvWeight {
    pub name: String,
    pub shape: [usize; 4],
    pub values: Vec<f32>,
}

impl ConvWeight {
    /// The first 4-D parameter of `model`'s `state_dict`.
    pub fn first_of(model: &mut dyn Module) -> anyhow::Result<ConvWeight> {
        let mut first = None;
        model.visit_state(&mut |name, entry| {
            if let StateEntry::Parameter(tensor) = entry {
                if first.is_none() && tensor.shape().len() == 4 {
                    first = Some((name.to_string(), tensor.clone()));
                }
            }
        });
        let (name, tensor) =
            first.ok_or_else(|| anyhow::anyhow!("the model has no convolution (no 4-D weight)"))?;
        let s = tensor.shape();
        Ok(ConvWeight {
            shape: [s[0], s[1], s[2], s[3]],
            values: tensor.to_vec_f32()?,
            name,
        })
    }

    /// Filter `index` as an RGB image of its kernel's size. Each filter is scaled by its own
    /// largest magnitude so that 0 is mid-grey: the sign of every weight stays visible,
    /// and weak filters are as readable as strong ones. Three input channels are shown as
    /// red, green and blue; any other number as grey levels of their mean.
    pub fn filter_image(&self, index: usize) -> RgbImage {
        let [_, channels, height, width] = self.shape;
        let plane = height * width;
        let filter = &self.values[index * channels * plane..(index + 1) * channels * plane];
        let largest = filter.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if largest > 0.0 { 0.5 / largest } else { 0.0 };
        let level = |v: f32| ((0.5 + v * scale) * 255.0).round().clamp(0.0, 255.0) as u8;
        RgbImage::from_fn(width as u32, height as u32, |x, y| {
            let at = y as usize * width + x as usize;
            if channels == 3 {
                Rgb([0, 1, 2].map(|c| level(filter[c * plane + at])))
            } else {
                let mean = (0..channels).map(|c| filter[c * plane + at]).sum::<f32>()
                    / channels.max(1) as f32;
                Rgb([level(mean); 3])
            }
        })
    }
}

/// Filters per row: about square, at most 16, and a little wider where that fills every
/// row (24 filters: 4 rows of 6, not 5 rows of 5).
fn columns(filters: usize) -> usize {
    let square = ((filters as f64).sqrt().ceil() as usize).clamp(1, 16);
    (square..=(square + 2).min(16))
        .find(|c| filters.is_multiple_of(*c))
        .unwrap_or(square)
}

/// How the input channels are shown, for the title.
fn colours(channels: usize) -> String {
    match channels {
        3 => "RGB".to_string(),
        1 => "grey".to_string(),
        n => format!("grey: mean of {n} input channels"),
    }
}

/// The title, and how wide the picture must be for it.
fn title(weight: &ConvWeight) -> (String, i32) {
    let [filters, channels, height, width] = weight.shape;
    let title = format!(
        "First convolution: {} ({filters} filters, {height}x{width}, {})",
        weight.name,
        colours(channels)
    );
    // Font metrics need no drawing backend; if they failed, the drawing would too.
    let text_width = bold(TITLE_SIZE)
        .font
        .box_size(&title)
        .map_or(0, |(w, _)| w as i32);
    (title, text_width + 2 * MARGIN)
}

/// How many screen pixels one weight takes: about [`TILE`] pixels a filter.
fn pixels_per_weight(kernel: usize) -> u32 {
    (TILE / kernel.max(1)).max(2) as u32
}

/// The picture's size for `weight`.
pub fn size(weight: &ConvWeight) -> (u32, u32) {
    let [filters, _, height, width] = weight.shape;
    let scale = pixels_per_weight(height.max(width)) as i32;
    let columns = columns(filters) as i32;
    let rows = filters.div_ceil(columns as usize) as i32;
    let grid_width = columns * (width as i32 * scale + GAP) - GAP;
    let grid_height = rows * (height as i32 * scale + GAP) - GAP;
    (
        (grid_width + 2 * MARGIN)
            .max(MIN_WIDTH)
            .max(title(weight).1) as u32,
        (TOP + grid_height + MARGIN) as u32,
    )
}

/// Draws every filter of `weight`.
pub fn draw(weight: &ConvWeight, path: &Path) -> anyhow::Result<()> {
    let [filters, _, height, width] = weight.shape;
    if filters == 0 || height == 0 || width == 0 {
        anyhow::bail!("{} has no filters to show", weight.name);
    }
    let (canvas_width, canvas_height) = size(weight);
    let scale = pixels_per_weight(height.max(width));
    let columns = columns(filters);
    let tile_width = width as i32 * scale as i32;
    let tile_height = height as i32 * scale as i32;
    let grid_width = columns as i32 * (tile_width + GAP) - GAP;
    let left = (canvas_width as i32 - grid_width) / 2;
    let origin = |index: usize| {
        (
            left + (index % columns) as i32 * (tile_width + GAP),
            TOP + (index / columns) as i32 * (tile_height + GAP),
        )
    };
    let mut canvas = Canvas::new(canvas_width, canvas_height);
    canvas.draw(|area| {
        area.fill(&WHITE)?;
        let (title, _) = title(weight);
        draw_heading(
            area,
            &title,
            TITLE_SIZE,
            "each filter scaled to its own largest |weight|; grey is 0",
        )
    })?;
    for index in 0..filters {
        let (x, y) = origin(index);
        canvas.paste(
            &upscale(&weight.filter_image(index), scale),
            x as u32,
            y as u32,
        );
    }
    canvas.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(shape: [usize; 4]) -> ConvWeight {
        let count = shape.iter().product();
        ConvWeight {
            name: "conv.weight".into(),
            shape,
            values: (0..count).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect(),
        }
    }

    #[test]
    fn zero_is_grey_and_the_largest_weight_is_full_scale() {
        let w = ConvWeight {
            name: "w".into(),
            shape: [1, 3, 1, 2],
            // Red: -2, 1; green: 0, 0; blue: 2, -1.
            values: vec![-2.0, 1.0, 0.0, 0.0, 2.0, -1.0],
        };
        let image = w.filter_image(0);
        assert_eq!(image.get_pixel(0, 0).0, [0, 128, 255]);
        assert_eq!(image.get_pixel(1, 0).0, [191, 128, 64]);
    }

    #[test]
    fn other_channel_counts_are_shown_in_grey() {
        let w = ConvWeight {
            name: "w".into(),
            shape: [1, 2, 1, 1],
            values: vec![1.0, 0.0],
        };
        // The mean 0.5 of a filter whose largest weight is 1.
        assert_eq!(w.filter_image(0).get_pixel(0, 0).0, [191; 3]);
    }

    #[test]
    fn any_number_of_filters_and_kernel_size_is_drawn() {
        let dir = tempfile::tempdir().unwrap();
        for shape in [
            [64, 3, 3, 3],
            [24, 3, 2, 2],
            [12, 3, 5, 5],
            [7, 1, 7, 7],
            [200, 3, 1, 1],
        ] {
            let path = dir.path().join("filters.png");
            let w = weight(shape);
            draw(&w, &path).unwrap();
            let image = image::open(&path).unwrap().to_rgb8();
            assert_eq!(image.dimensions(), size(&w), "{shape:?}");
            // The last filter is inside the picture.
            let [filters, _, height, _] = shape;
            let rows = filters.div_ceil(columns(filters));
            let scale = pixels_per_weight(height.max(shape[3])) as i32;
            assert!(TOP + rows as i32 * (height as i32 * scale + GAP) <= image.height() as i32);
        }
        // The notebook's network: 64 RGB 3x3 filters, 8 by 8; 24 filters 6 by 4.
        assert_eq!(columns(64), 8);
        assert_eq!(columns(24), 6);
        assert_eq!(columns(7), 3);
        assert_eq!(size(&weight([64, 3, 3, 3])), (560, 82 + 8 * 54 - 6 + 20));
        // A long name widens the picture to fit its title.
        let mut long = weight([4, 1, 3, 3]);
        long.name = "a.very.long.module.path.to.the.first.convolution.weight".into();
        let (title, needed) = title(&long);
        assert!(needed > MIN_WIDTH, "{title}");
        assert_eq!(size(&long).0, needed as u32);
    }
}
