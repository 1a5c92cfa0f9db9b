//! Pictures of a run: training curves, the confusion matrix, the most confident mistakes,
//! the first layer's filters and saliency maps. Each is drawn with `plotters` into an RGB
//! buffer (text in the embedded DejaVu Sans, so no system font is needed) and encoded as
//! PNG with `image`, written atomically.

pub mod confusion;
pub mod curves;
pub mod filters;
pub mod history;
pub mod mistakes;
pub mod saliency;

use std::path::Path;
use std::sync::Once;

use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// What drawing with plotters into a [`Canvas`] can fail with.
pub type DrawResult<T> =
    Result<T, DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

/// The area every picture is drawn on.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// The family name the embedded font is registered under.
const FONT_FAMILY: &str = "sans-serif";

/// Black text in the embedded font, `size` pixels high.
pub fn font(size: u32) -> TextStyle<'static> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // Both faces are valid TrueType files shipped by the `dejavu` crate: registering
        // them cannot fail, and if it ever did, drawing text reports FontUnavailable.
        let _ = register_font(FONT_FAMILY, FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font(FONT_FAMILY, FontStyle::Bold, dejavu::sans::bold());
    });
    TextStyle::from(FontDesc::new(
        FontFamily::Name(FONT_FAMILY),
        size as f64,
        FontStyle::Normal,
    ))
}

/// A bold [`font`].
pub fn bold(size: u32) -> TextStyle<'static> {
    let style = font(size);
    TextStyle {
        font: style.font.style(FontStyle::Bold),
        ..style
    }
}

/// Colours for the lines of up to two runs (train, test), from matplotlib's palette so they
/// look familiar to the notebook's readers.
pub const RUN_COLORS: [(RGBColor, RGBColor); 2] = [
    (RGBColor(31, 119, 180), RGBColor(255, 127, 14)),
    (RGBColor(44, 160, 44), RGBColor(214, 39, 40)),
];

/// Light grey for grid lines and frames.
pub const GRID: RGBColor = RGBColor(220, 220, 220);

/// An RGB picture being drawn: plotters draws into its pixels, images are pasted in
/// directly, and [`Canvas::save`] writes it as PNG.
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![255; width as usize * height as usize * 3],
        }
    }

    /// Runs `draw` on the whole canvas as a plotters drawing area.
    pub fn draw<T>(&mut self, draw: impl FnOnce(&Area<'_>) -> DrawResult<T>) -> anyhow::Result<T> {
        let area = BitMapBackend::with_buffer(&mut self.pixels, (self.width, self.height))
            .into_drawing_area();
        let result = draw(&area).map_err(|e| anyhow::anyhow!("drawing failed: {e}"))?;
        area.present()
            .map_err(|e| anyhow::anyhow!("drawing failed: {e}"))?;
        Ok(result)
    }

    /// Copies `image` with its top-left corner at (`x`, `y`); what falls outside is cut off.
    pub fn paste(&mut self, image: &RgbImage, x: u32, y: u32) {
        for (dx, dy, pixel) in image.enumerate_pixels() {
            let (px, py) = (x + dx, y + dy);
            if px < self.width && py < self.height {
                let at = (py as usize * self.width as usize + px as usize) * 3;
                self.pixels[at..at + 3].copy_from_slice(&pixel.0);
            }
        }
    }

    /// Encodes the canvas as PNG and writes it to `path` through a temporary file, so a
    /// picture is never left half-written.
    pub fn save(self, path: &Path) -> anyhow::Result<()> {
        let image = RgbImage::from_raw(self.width, self.height, self.pixels)
            .expect("the buffer holds width * height RGB pixels");
        let mut bytes = Vec::new();
        // Best compression: the pictures are small and drawn once, and flat colours and
        // enlarged pixels shrink several times over the fast default.
        let encoder =
            PngEncoder::new_with_quality(&mut bytes, CompressionType::Best, PngFilter::Adaptive);
        image
            .write_with_encoder(encoder)
            .map_err(|e| anyhow::anyhow!("cannot encode {} as PNG: {e}", path.display()))?;
        models::checkpoint::write_atomically(path, &bytes)?;
        Ok(())
    }
}

/// A CIFAR-10 image (3,072 CHW bytes) as an RGB image.
pub fn chw_to_rgb(chw: &[u8], side: u32) -> RgbImage {
    let plane = (side * side) as usize;
    RgbImage::from_fn(side, side, |x, y| {
        let at = (y * side + x) as usize;
        image::Rgb([chw[at], chw[plane + at], chw[2 * plane + at]])
    })
}

/// `image` enlarged `factor` times with each pixel a square block, so what the network saw
/// is shown as it is, not smoothed.
pub fn upscale(image: &RgbImage, factor: u32) -> RgbImage {
    image::imageops::resize(
        image,
        image.width() * factor,
        image.height() * factor,
        image::imageops::FilterType::Nearest,
    )
}

/// A bold title of `size` pixels and a grey line under it explaining how to read the
/// picture, centred at the top of `area`.
pub fn draw_heading(area: &Area<'_>, title: &str, size: u32, explanation: &str) -> DrawResult<()> {
    let centre = area.dim_in_pixel().0 as i32 / 2;
    area.draw(&Text::new(
        title.to_string(),
        (centre, 14),
        bold(size).pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    area.draw(&Text::new(
        explanation.to_string(),
        (centre, 46),
        font(13)
            .color(&RGBColor(90, 90, 90))
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))
}

/// Black or white, whichever reads better on `background`.
pub fn text_color_on(background: RGBColor) -> RGBColor {
    let RGBColor(r, g, b) = background;
    let luminance = 0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64;
    if luminance > 140.0 {
        BLACK
    } else {
        WHITE
    }
}

/// A count with its thousands separated, as tables and titles print it: 10000 -> "10,000".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(10000), "10,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
