//! `confusion.png`: the confusion matrix as a heat map with the counts written in, the
//! class names on both axes, and each class's accuracy in a column of its own.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::{bold, draw_heading, font, text_color_on, thousands, Area, Canvas, DrawResult};

pub const WIDTH: u32 = 840;
pub const HEIGHT: u32 = 800;

const LEFT: i32 = 130;
const TOP: i32 = 96;
const CELL: i32 = 58;
/// The accuracy column, right of the matrix.
const GAP: i32 = 18;
const ACCURACY_WIDTH: i32 = 76;

/// matplotlib's "Blues": white for none, dark blue for all of a row.
fn blues() -> DerivedColorMap<RGBColor> {
    DerivedColorMap::new(&[
        RGBColor(247, 251, 255),
        RGBColor(198, 219, 239),
        RGBColor(107, 174, 214),
        RGBColor(33, 113, 181),
        RGBColor(8, 48, 107),
    ])
}

/// Draws `confusion[true][predicted]` (square, one row and column per class name).
pub fn draw(confusion: &[Vec<u64>], classes: &[&str], path: &Path) -> anyhow::Result<()> {
    let n = classes.len();
    if confusion.len() != n || confusion.iter().any(|row| row.len() != n) {
        anyhow::bail!("the confusion matrix is not {n} x {n}, one row and column per class");
    }
    let mut canvas = Canvas::new(WIDTH, HEIGHT);
    canvas.draw(|area| {
        area.fill(&WHITE)?;
        draw_titles(area, confusion)?;
        draw_matrix(area, confusion)?;
        draw_accuracy_column(area, confusion)?;
        draw_class_names(area, classes)
    })?;
    canvas.save(path)
}

fn draw_titles(area: &Area<'_>, confusion: &[Vec<u64>]) -> DrawResult<()> {
    let total: u64 = confusion.iter().flatten().sum();
    let correct: u64 = (0..confusion.len()).map(|c| confusion[c][c]).sum();
    let title = format!(
        "Confusion matrix: {} test images, {:.1}% correct",
        thousands(total),
        100.0 * correct as f64 / total.max(1) as f64
    );
    draw_heading(
        area,
        &title,
        20,
        "each cell: images of the row's true class given the column's class; colour: share of the row",
    )?;
    let accuracy_centre = LEFT + CELL * confusion.len() as i32 + GAP + ACCURACY_WIDTH / 2;
    area.draw(&Text::new(
        "accuracy",
        (accuracy_centre, TOP - 8),
        bold(13).pos(Pos::new(HPos::Center, VPos::Bottom)),
    ))
}

fn draw_matrix(area: &Area<'_>, confusion: &[Vec<u64>]) -> DrawResult<()> {
    let map = blues();
    for (row, counts) in confusion.iter().enumerate() {
        let row_total: u64 = counts.iter().sum();
        for (column, &count) in counts.iter().enumerate() {
            let share = count as f32 / row_total.max(1) as f32;
            let color = map.get_color(share);
            let x = LEFT + column as i32 * CELL;
            let y = TOP + row as i32 * CELL;
            area.draw(&Rectangle::new(
                [(x, y), (x + CELL, y + CELL)],
                color.filled(),
            ))?;
            area.draw(&Text::new(
                count.to_string(),
                (x + CELL / 2, y + CELL / 2),
                font(15)
                    .color(&text_color_on(color))
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
        }
    }
    let side = CELL * confusion.len() as i32;
    area.draw(&Rectangle::new(
        [(LEFT, TOP), (LEFT + side, TOP + side)],
        RGBColor(120, 120, 120).stroke_width(1),
    ))
}

fn draw_accuracy_column(area: &Area<'_>, confusion: &[Vec<u64>]) -> DrawResult<()> {
    let map = blues();
    let x = LEFT + CELL * confusion.len() as i32 + GAP;
    for (class, counts) in confusion.iter().enumerate() {
        let total: u64 = counts.iter().sum();
        let y = TOP + class as i32 * CELL;
        let (color, text) = if total == 0 {
            (RGBColor(235, 235, 235), "n/a".to_string())
        } else {
            let accuracy = counts[class] as f64 / total as f64;
            (
                map.get_color(accuracy as f32),
                format!("{:.1}%", 100.0 * accuracy),
            )
        };
        area.draw(&Rectangle::new(
            [(x, y), (x + ACCURACY_WIDTH, y + CELL)],
            color.filled(),
        ))?;
        area.draw(&Text::new(
            text,
            (x + ACCURACY_WIDTH / 2, y + CELL / 2),
            font(15)
                .color(&text_color_on(color))
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
    }
    let bottom = TOP + CELL * confusion.len() as i32;
    area.draw(&Rectangle::new(
        [(x, TOP), (x + ACCURACY_WIDTH, bottom)],
        RGBColor(120, 120, 120).stroke_width(1),
    ))
}

fn draw_class_names(area: &Area<'_>, classes: &[&str]) -> DrawResult<()> {
    let side = CELL * classes.len() as i32;
    for (index, class) in classes.iter().enumerate() {
        let middle = index as i32 * CELL + CELL / 2;
        // Rows: the true class, right-aligned against the matrix.
        area.draw(&Text::new(
            class.to_string(),
            (LEFT - 10, TOP + middle),
            font(15).pos(Pos::new(HPos::Right, VPos::Center)),
        ))?;
        // Columns: the predicted class, written upwards below the matrix.
        area.draw(&Text::new(
            class.to_string(),
            (LEFT + middle, TOP + side + 10),
            font(15)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))?;
    }
    area.draw(&Text::new(
        "predicted class",
        (LEFT + side / 2, TOP + side + 100),
        bold(15).pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    area.draw(&Text::new(
        "true class",
        (22, TOP + side / 2),
        bold(15)
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_is_as_dark_as_its_share_of_the_row() {
        let classes = ["a", "b", "c"];
        let confusion = vec![vec![10, 0, 0], vec![5, 5, 0], vec![0, 0, 0]];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confusion.png");
        draw(&confusion, &classes, &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
        // A cell's colour, sampled in a corner away from its number.
        let cell = |row: i32, column: i32| {
            let x = LEFT + column * CELL + 4;
            let y = TOP + row * CELL + 4;
            image.get_pixel(x as u32, y as u32).0
        };
        let map = blues();
        assert_eq!(cell(0, 0), {
            let c = map.get_color(1.0);
            [c.0, c.1, c.2]
        });
        assert_eq!(cell(1, 1), {
            let c = map.get_color(0.5);
            [c.0, c.1, c.2]
        });
        assert_eq!(cell(0, 1), {
            let c = map.get_color(0.0);
            [c.0, c.1, c.2]
        });
        let wrong = vec![vec![1, 2], vec![3, 4]];
        assert!(draw(&wrong, &classes, &path).is_err());
    }
}
