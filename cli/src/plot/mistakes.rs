//! `mistakes.png`: the test images the model got wrong with the most confidence, each
//! enlarged, under it the true class and the model's class with its probability.

use std::path::Path;

use models::data::{Split, IMAGE_SIDE};
use models::train::Prediction;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{chw_to_rgb, draw_heading, font, thousands, upscale, Canvas};

pub const COLUMNS: usize = 6;
pub const ROWS: usize = 4;
/// Each 32x32 image is shown 4 times larger, pixels as squares.
const SCALE: u32 = 4;
const CELL_WIDTH: i32 = 150;
const CELL_HEIGHT: i32 = IMAGE_SIDE as i32 * SCALE as i32 + 46;
const TOP: i32 = 84;
const MARGIN: i32 = 20;

pub const WIDTH: u32 = (2 * MARGIN + COLUMNS as i32 * CELL_WIDTH) as u32;
pub const HEIGHT: u32 = (TOP + ROWS as i32 * CELL_HEIGHT + 8) as u32;

/// The wrong predictions, most confident first (file order among equals).
pub fn most_confident_mistakes(predictions: &[Prediction]) -> Vec<(usize, Prediction)> {
    let mut mistakes: Vec<(usize, Prediction)> = predictions
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, p)| !p.is_correct())
        .collect();
    mistakes.sort_by(|a, b| b.1.confidence.total_cmp(&a.1.confidence));
    mistakes
}

/// Draws the first `COLUMNS * ROWS` mistakes; `predictions[i]` is about `test.image(i)`.
pub fn draw(
    test: &Split,
    predictions: &[Prediction],
    classes: &[&str],
    path: &Path,
) -> anyhow::Result<()> {
    if predictions.len() > test.len() {
        anyhow::bail!(
            "{} predictions for {} test images",
            predictions.len(),
            test.len()
        );
    }
    let mistakes = most_confident_mistakes(predictions);
    let shown = &mistakes[..mistakes.len().min(COLUMNS * ROWS)];
    let class = |c: usize| classes.get(c).copied().unwrap_or("?");
    let image_side = IMAGE_SIDE as i32 * SCALE as i32;
    let cell_origin = |slot: usize| {
        (
            MARGIN + (slot % COLUMNS) as i32 * CELL_WIDTH,
            TOP + (slot / COLUMNS) as i32 * CELL_HEIGHT,
        )
    };
    let mut canvas = Canvas::new(WIDTH, HEIGHT);
    canvas.draw(|area| {
        area.fill(&WHITE)?;
        let title = if mistakes.is_empty() {
            format!(
                "No mistakes on {} test images",
                thousands(predictions.len() as u64)
            )
        } else {
            format!(
                "The {} most confident of {} mistakes on {} test images",
                shown.len(),
                thousands(mistakes.len() as u64),
                thousands(predictions.len() as u64)
            )
        };
        draw_heading(
            area,
            &title,
            20,
            "under each image: its true class, then the model's class and softmax probability",
        )?;
        for (slot, (_, prediction)) in shown.iter().enumerate() {
            let (x, y) = cell_origin(slot);
            let middle = x + CELL_WIDTH / 2;
            area.draw(&Text::new(
                format!("true: {}", class(prediction.label)),
                (middle, y + image_side + 6),
                font(13)
                    .color(&RGBColor(30, 110, 30))
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
            area.draw(&Text::new(
                format!(
                    "said: {} {:.0}%",
                    class(prediction.predicted),
                    100.0 * prediction.confidence
                ),
                (middle, y + image_side + 24),
                font(13)
                    .color(&RGBColor(190, 30, 30))
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
        Ok(())
    })?;
    for (slot, (index, _)) in shown.iter().enumerate() {
        let (x, y) = cell_origin(slot);
        let image = upscale(&chw_to_rgb(test.image(*index), IMAGE_SIDE as u32), SCALE);
        canvas.paste(&image, (x + (CELL_WIDTH - image_side) / 2) as u32, y as u32);
    }
    canvas.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(label: usize, predicted: usize, confidence: f32) -> Prediction {
        Prediction {
            label,
            predicted,
            confidence,
        }
    }

    #[test]
    fn mistakes_come_most_confident_first() {
        let predictions = [
            prediction(1, 1, 0.99),
            prediction(2, 3, 0.40),
            prediction(4, 5, 0.90),
            prediction(6, 7, 0.40),
        ];
        let order: Vec<usize> = most_confident_mistakes(&predictions)
            .iter()
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(order, vec![2, 1, 3]);
    }

    #[test]
    fn the_most_confident_mistake_is_pasted_first() {
        // Image i is filled with grey level 20 * i, so the pasted pixels say which it is.
        let count = 5;
        let images = (0..count)
            .flat_map(|i| vec![20 * i as u8; 3 * IMAGE_SIDE * IMAGE_SIDE])
            .collect();
        let test = Split {
            images,
            labels: vec![0; count],
        };
        let predictions: Vec<Prediction> = (0..count)
            .map(|i| prediction(0, usize::from(i != 2), 0.1 * i as f32))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mistakes.png");
        draw(&test, &predictions, &models::data::CLASSES, &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
        let side = IMAGE_SIDE as i32 * SCALE as i32;
        let first_x = (MARGIN + (CELL_WIDTH - side) / 2 + 5) as u32;
        let second_x = first_x + CELL_WIDTH as u32;
        // Image 4 (0.4) first, then 3; image 2 was right and image 0 (0.0) comes last.
        assert_eq!(image.get_pixel(first_x, TOP as u32 + 5).0, [80; 3]);
        assert_eq!(image.get_pixel(second_x, TOP as u32 + 5).0, [60; 3]);
    }
}
