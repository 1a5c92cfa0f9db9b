//! `curves.png`: loss and accuracy per epoch (train and test), and the training loss of
//! every logged window of steps against the images seen, for one run or two overlaid.

use std::ops::Range;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::history::History;
use super::{bold, font, Area, Canvas, DrawResult, GRID, RUN_COLORS};

pub const WIDTH: u32 = 1500;
pub const HEIGHT: u32 = 520;

/// Where one panel's data lands in the picture: its plotting area in pixels and the data
/// range that area spans (y grows upwards in data, downwards in pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub x_pixels: Range<i32>,
    pub y_pixels: Range<i32>,
    pub x: Range<f64>,
    pub y: Range<f64>,
}

/// The three panels of `curves.png`.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub loss: Panel,
    pub accuracy: Panel,
    pub steps: Panel,
}

/// One line of a panel: its points and colour (the legend row says what it is).
struct Series {
    points: Vec<(f64, f64)>,
    color: RGBColor,
}

/// What a panel shows.
struct PanelSpec<'a> {
    title: String,
    x_label: &'a str,
    y_label: &'a str,
    x: Range<f64>,
    y: Range<f64>,
    series: Vec<Series>,
    /// Said in the panel when it has no series.
    empty: &'a str,
    /// How many key points the x axis may label, and how.
    x_labels: usize,
    x_format: fn(&f64) -> String,
}

/// Draws `curves.png` for `runs` (one, or two to compare) into `path`.
pub fn draw(runs: &[History], path: &Path) -> anyhow::Result<Layout> {
    let mut canvas = Canvas::new(WIDTH, HEIGHT);
    let layout = canvas.draw(|area| {
        area.fill(&WHITE)?;
        let title = match runs {
            [one] => format!("Training curves: {}", one.name),
            _ => runs
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(" vs "),
        };
        let body = area.titled(&title, bold(22))?;
        let (legend_row, body) = body.split_vertically(LEGEND_HEIGHT);
        draw_legend(&legend_row, &legend_entries(runs))?;
        let panels = body.split_evenly((1, 3));
        Ok(Layout {
            loss: draw_panel(&panels[0], loss_panel(runs))?,
            accuracy: draw_panel(&panels[1], accuracy_panel(runs))?,
            steps: draw_panel(&panels[2], steps_panel(runs))?,
        })
    })?;
    canvas.save(path)?;
    Ok(layout)
}

/// The height of the legend row under the title, shared by the three panels (the colours
/// mean the same in each), so it never hides a line.
const LEGEND_HEIGHT: u32 = 30;

/// Each run's train and test colours with their labels.
fn legend_entries(runs: &[History]) -> Vec<(String, RGBColor)> {
    let mut entries = Vec::new();
    for index in 0..runs.len() {
        let (train, test) = RUN_COLORS[index % RUN_COLORS.len()];
        entries.push((label(runs, index, "train"), train));
        entries.push((label(runs, index, "test"), test));
    }
    entries
}

/// A line and a marker in each entry's colour, then its label, centred in `area`.
fn draw_legend(area: &Area<'_>, entries: &[(String, RGBColor)]) -> DrawResult<()> {
    const SWATCH: i32 = 26;
    const SPACING: i32 = 28;
    let style = font(14);
    let widths = entries
        .iter()
        .map(|(label, _)| Ok(area.estimate_text_size(label, &style)?.0 as i32))
        .collect::<DrawResult<Vec<i32>>>()?;
    let total: i32 = widths.iter().map(|w| SWATCH + 6 + w).sum::<i32>()
        + SPACING * (entries.len() as i32 - 1).max(0);
    let (width, height) = area.dim_in_pixel();
    let y = height as i32 / 2;
    let mut x = (width as i32 - total) / 2;
    for ((label, color), text_width) in entries.iter().zip(widths) {
        area.draw(&PathElement::new(
            vec![(x, y), (x + SWATCH, y)],
            color.stroke_width(3),
        ))?;
        area.draw(&Circle::new((x + SWATCH / 2, y), 3, color.filled()))?;
        area.draw(&Text::new(
            label.clone(),
            (x + SWATCH + 6, y),
            style.pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        x += SWATCH + 6 + text_width + SPACING;
    }
    Ok(())
}

/// The legend label of `split` ("train", "test") of run `index`.
fn label(runs: &[History], index: usize, split: &str) -> String {
    if runs.len() == 1 {
        split.to_string()
    } else {
        format!("{} {split}", runs[index].name)
    }
}

/// From the first epoch to the last, with a little room so end markers are not cut.
fn epoch_range(runs: &[History]) -> Range<f64> {
    let first = runs
        .iter()
        .filter_map(|r| r.epochs.first().map(|e| e.epoch))
        .min()
        .unwrap_or(1);
    let last = runs
        .iter()
        .map(History::last_epoch)
        .max()
        .unwrap_or(1)
        .max(first);
    let pad = (0.04 * (last - first) as f64).max(0.25);
    first as f64 - pad..last as f64 + pad
}

/// One label per epoch up to ten epochs, then about ten.
fn epoch_labels(runs: &[History]) -> usize {
    let range = epoch_range(runs);
    ((range.end - range.start).round() as usize + 1).min(11)
}

/// The values of every series, with some room above and below; never below 0.
fn loss_range(series: &[Series]) -> Range<f64> {
    let values = || series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let low = values().fold(f64::INFINITY, f64::min);
    let high = values().fold(f64::NEG_INFINITY, f64::max);
    if !low.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((high - low) * 0.08).max(0.02);
    (low - pad).max(0.0)..high + pad
}

/// Both splits of every run, each as (epoch, value) points where the value is recorded.
fn per_epoch(
    runs: &[History],
    train: impl Fn(&super::history::EpochPoint) -> f64,
    test: impl Fn(&super::history::EpochPoint) -> Option<f64>,
) -> Vec<Series> {
    let mut series = Vec::new();
    for (index, run) in runs.iter().enumerate() {
        let (train_color, test_color) = RUN_COLORS[index % RUN_COLORS.len()];
        series.push(Series {
            points: run
                .epochs
                .iter()
                .map(|e| (e.epoch as f64, train(e)))
                .collect(),
            color: train_color,
        });
        series.push(Series {
            points: run
                .epochs
                .iter()
                .filter_map(|e| test(e).map(|v| (e.epoch as f64, v)))
                .collect(),
            color: test_color,
        });
    }
    series.retain(|s| !s.points.is_empty());
    series
}

fn loss_panel(runs: &[History]) -> PanelSpec<'static> {
    let series = per_epoch(runs, |e| e.train_loss, |e| e.test_loss);
    PanelSpec {
        title: "Loss per epoch".into(),
        x_label: "epoch",
        y_label: "cross-entropy loss",
        x: epoch_range(runs),
        y: loss_range(&series),
        series,
        empty: "no finished epoch yet",
        x_labels: epoch_labels(runs),
        x_format: whole_number,
    }
}

fn accuracy_panel(runs: &[History]) -> PanelSpec<'static> {
    let series = per_epoch(runs, |e| e.train_accuracy, |e| e.test_accuracy);
    let values = || series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let low = values().fold(f64::INFINITY, f64::min);
    let high = values().fold(f64::NEG_INFINITY, f64::max);
    // Whole tens around the data, with room for the markers: differences between runs
    // stay visible.
    let (low, high) = if low.is_finite() {
        let low = (((low - 1.0) / 10.0).floor() * 10.0).clamp(0.0, 90.0);
        let high = (((high + 1.0) / 10.0).ceil() * 10.0).clamp(low + 10.0, 100.0);
        (low, high)
    } else {
        (0.0, 100.0)
    };
    PanelSpec {
        title: "Accuracy per epoch".into(),
        x_label: "epoch",
        y_label: "accuracy (%)",
        x: epoch_range(runs),
        y: low..high,
        series,
        empty: "no finished epoch yet",
        x_labels: epoch_labels(runs),
        x_format: whole_number,
    }
}

fn steps_panel(runs: &[History]) -> PanelSpec<'static> {
    // Images seen compare runs with different batch sizes; logs written before train
    // recorded them fall back to optimizer steps.
    let by_images = runs
        .iter()
        .all(|r| r.steps.iter().all(|s| s.images_seen.is_some()));
    let series: Vec<Series> = runs
        .iter()
        .enumerate()
        .map(|(index, run)| Series {
            points: run
                .steps
                .iter()
                .map(|s| {
                    let x = if by_images {
                        s.images_seen.unwrap_or(0)
                    } else {
                        s.global_step
                    };
                    (x as f64, s.loss)
                })
                .collect(),
            color: RUN_COLORS[index % RUN_COLORS.len()].0,
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let right = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    // The first record of a run comes after one window: its step within the epoch.
    let mut windows: Vec<u64> = runs
        .iter()
        .filter_map(|r| r.steps.first().map(|s| s.step_in_epoch))
        .collect();
    windows.dedup();
    let title = match windows.as_slice() {
        [steps] => format!("Training loss, mean of every {steps} steps"),
        _ => "Training loss, mean of each logged window".to_string(),
    };
    PanelSpec {
        title,
        x_label: if by_images {
            "training images seen"
        } else {
            "optimizer steps"
        },
        y_label: "cross-entropy loss",
        x: 0.0..(right * 1.02).max(1.0),
        y: loss_range(&series),
        series,
        empty: "no step logged: train logs every --log-every steps",
        x_labels: 6,
        x_format: abbreviated,
    }
}

/// Tick labels with as many decimals as the ticks of an axis spanning `span` need.
/// plotters puts at most `ticks` key points at a step of 1, 2 or 5 times a power of ten;
/// taking the smallest such step that fits errs towards one decimal too many, never too few.
fn decimals_for(span: f64, ticks: usize) -> usize {
    if span <= 0.0 || !span.is_finite() {
        return 2;
    }
    let mut power = 10f64.powf(span.log10().floor() - 2.0);
    loop {
        for factor in [1.0, 2.0, 5.0] {
            let step = factor * power;
            if span / step <= ticks as f64 {
                return (-step.log10().floor()).max(0.0) as usize;
            }
        }
        power *= 10.0;
    }
}

/// At most this many labelled key points on a y axis.
const Y_TICKS: usize = 8;

/// Whole numbers only: epochs have no halves.
fn whole_number(value: &f64) -> String {
    if (value - value.round()).abs() < 1e-6 {
        format!("{}", value.round())
    } else {
        String::new()
    }
}

/// 25000 -> 25k, 1500000 -> 1.5M.
fn abbreviated(value: &f64) -> String {
    let v = value.abs();
    let (scaled, suffix) = if v >= 1e6 {
        (value / 1e6, "M")
    } else if v >= 1e3 {
        (value / 1e3, "k")
    } else {
        (*value, "")
    };
    let text = format!("{scaled:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}{suffix}")
}

fn draw_panel(area: &Area<'_>, spec: PanelSpec<'_>) -> DrawResult<Panel> {
    let decimals = decimals_for(spec.y.end - spec.y.start, Y_TICKS);
    let y_format = |v: &f64| format!("{v:.decimals$}");
    let mut chart = ChartBuilder::on(area)
        .caption(&spec.title, font(17))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(spec.x.clone(), spec.y.clone())?;
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .x_labels(spec.x_labels)
        .y_labels(Y_TICKS)
        .x_label_formatter(&spec.x_format)
        .y_label_formatter(&y_format)
        .x_desc(spec.x_label)
        .y_desc(spec.y_label)
        .label_style(font(13))
        .axis_desc_style(font(14))
        .draw()?;
    for series in &spec.series {
        let color = series.color;
        chart.draw_series(LineSeries::new(
            series.points.iter().copied(),
            color.stroke_width(2),
        ))?;
        // Markers show where the measurements are, until they would crowd the line.
        if series.points.len() <= 60 {
            chart.draw_series(
                series
                    .points
                    .iter()
                    .map(|&p| Circle::new(p, 3, color.filled())),
            )?;
        }
    }
    if spec.series.is_empty() {
        let (width, height) = chart.plotting_area().dim_in_pixel();
        chart.plotting_area().strip_coord_spec().draw(&Text::new(
            spec.empty,
            (width as i32 / 2, height as i32 / 2),
            font(14)
                .color(&RGBColor(110, 110, 110))
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
    }
    let (x_pixels, y_pixels) = chart.plotting_area().get_pixel_range();
    Ok(Panel {
        x_pixels,
        y_pixels,
        x: spec.x,
        y: spec.y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::history::{EpochPoint, StepPoint};

    /// Four epochs whose train accuracy rises 20, 40, 60, 80% and test accuracy 25..55%.
    fn known_run() -> History {
        History {
            name: "known".into(),
            epochs: (1..=4)
                .map(|epoch| EpochPoint {
                    epoch,
                    global_step: epoch * 100,
                    train_loss: 2.0 - 0.4 * epoch as f64,
                    train_accuracy: 20.0 * epoch as f64,
                    test_loss: Some(2.1 - 0.3 * epoch as f64),
                    test_accuracy: Some(15.0 + 10.0 * epoch as f64),
                })
                .collect(),
            steps: (1..=8)
                .map(|i| StepPoint {
                    global_step: 50 * i,
                    images_seen: Some(1600 * i),
                    loss: 2.0 - 0.2 * i as f64,
                    step_in_epoch: 50,
                })
                .collect(),
        }
    }

    /// The pixel of data point (x, y) in `panel`, by the panel's linear scales.
    fn pixel_of(panel: &Panel, x: f64, y: f64) -> (i32, i32) {
        let fx = (x - panel.x.start) / (panel.x.end - panel.x.start);
        let fy = (y - panel.y.start) / (panel.y.end - panel.y.start);
        let width = (panel.x_pixels.end - panel.x_pixels.start - 1) as f64;
        let height = (panel.y_pixels.end - panel.y_pixels.start - 1) as f64;
        (
            panel.x_pixels.start + (fx * width).round() as i32,
            panel.y_pixels.end - 1 - (fy * height).round() as i32,
        )
    }

    /// The rows of column `x` whose pixel is within a small distance of `color`.
    fn rows_of_color(image: &image::RgbImage, x: i32, color: RGBColor) -> Vec<i32> {
        (0..image.height())
            .filter(|&y| {
                let p = image.get_pixel(x as u32, y).0;
                let d = |a: u8, b: u8| (a as i32 - b as i32).abs();
                d(p[0], color.0) + d(p[1], color.1) + d(p[2], color.2) < 30
            })
            .map(|y| y as i32)
            .collect()
    }

    #[test]
    fn the_curves_pass_through_their_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let layout = draw(&[known_run()], &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
        // Accuracy from 20% to 80%: the axis spans whole tens around the data.
        assert_eq!(layout.accuracy.y, 10.0..90.0);
        assert_eq!(layout.accuracy.x, 0.75..4.25);
        let (train, test) = RUN_COLORS[0];
        for epoch in 1..=4 {
            let train_value = 20.0 * epoch as f64;
            let test_value = 15.0 + 10.0 * epoch as f64;
            let (x, train_y) = pixel_of(&layout.accuracy, epoch as f64, train_value);
            let (_, test_y) = pixel_of(&layout.accuracy, epoch as f64, test_value);
            let train_rows = rows_of_color(&image, x, train);
            let test_rows = rows_of_color(&image, x, test);
            assert!(
                train_rows.iter().any(|&y| (y - train_y).abs() <= 2),
                "epoch {epoch}: train accuracy expected near row {train_y}, found {train_rows:?}"
            );
            assert!(
                test_rows.iter().any(|&y| (y - test_y).abs() <= 2),
                "epoch {epoch}: test accuracy expected near row {test_y}, found {test_rows:?}"
            );
            // Only the marker: nothing of the train colour far from its point in this column.
            assert!(
                train_rows.iter().all(|&y| (y - train_y).abs() <= 6),
                "epoch {epoch}: stray train pixels {train_rows:?} (point at {train_y})"
            );
        }
        // Loss at epoch 2: train 1.2 (test 1.5).
        let (x, y) = pixel_of(&layout.loss, 2.0, 1.2);
        assert!(rows_of_color(&image, x, train)
            .iter()
            .any(|&r| (r - y).abs() <= 2));
        // The step curve against images seen: 1.2 after 6,400 images.
        let (x, y) = pixel_of(&layout.steps, 6400.0, 1.2);
        assert!(rows_of_color(&image, x, train)
            .iter()
            .any(|&r| (r - y).abs() <= 2));
    }

    #[test]
    fn two_runs_get_their_own_colours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let mut other = known_run();
        other.name = "other".into();
        for e in &mut other.epochs {
            e.train_accuracy -= 10.0;
        }
        let layout = draw(&[known_run(), other], &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        let (x, y) = pixel_of(&layout.accuracy, 2.0, 30.0);
        let second_train = RUN_COLORS[1].0;
        assert!(rows_of_color(&image, x, second_train)
            .iter()
            .any(|&r| (r - y).abs() <= 2));
    }

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(abbreviated(&25000.0), "25k");
        assert_eq!(abbreviated(&1_500_000.0), "1.5M");
        assert_eq!(abbreviated(&500.0), "500");
        assert_eq!(whole_number(&3.0), "3");
        assert_eq!(whole_number(&2.5), "");
        // Ticks every 0.1, 0.05, 5 and 0.2.
        assert_eq!(decimals_for(0.55, 8), 1);
        assert_eq!(decimals_for(0.3, 8), 2);
        assert_eq!(decimals_for(20.0, 8), 0);
        assert_eq!(decimals_for(1.6, 8), 1);
    }
}
