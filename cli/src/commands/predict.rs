//! `predict`: the top-3 classes of images of any size, in any of the formats below, told
//! apart by their content rather than their file names. Every file gets its line: a
//! prediction, or why it could not be read; the exit status fails if any could not.

use std::io::{BufRead, Cursor, Seek};
use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;
use image::imageops::FilterType;
use image::{ImageReader, Limits};
use models::data::{CHANNELS, CLASSES, IMAGE_SIDE};
use models::{no_grad, Tensor};

use super::eval::{load_net, model_path};
use super::train::NormalizationChoice;
use crate::device::{resolve, DeviceChoice};
use crate::plot::saliency;
use crate::precision::PrecisionChoice;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A model.safetensors file, or a run folder holding one.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// PNG, JPEG, GIF, BMP or WebP files (recognised by content); each is resized to 32x32.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Arithmetic of the convolutions and linear layers: f32, or bf16 products summed in
    /// f32 (PyTorch's autocast; on the CPU needs AMX or AVX512-BF16; on CUDA, cuBLAS).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionChoice,
    /// Input normalization [default: the one recorded in the checkpoint].
    #[arg(long, value_enum)]
    pub normalization: Option<NormalizationChoice>,
    /// The network the checkpoint holds [default: the one recorded in it, else net].
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(models::networks::names()))]
    pub model: Option<String>,
    /// Also write IMAGE.saliency.png beside each image: how sensitive the predicted
    /// class's score is to each pixel, as a heat map beside the image.
    #[arg(long)]
    pub explain: bool,
}

/// Images larger than this on a side are refused before decoding (a photo is far smaller;
/// a damaged or hostile header could otherwise ask for gigabytes).
const MAX_SIDE: u32 = 16_384;
/// The most a decoder may allocate for one image.
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// Decodes an image from its bytes, whatever its file name says, within [`MAX_SIDE`] and
/// [`MAX_DECODE_BYTES`], and resizes it to 32x32 RGB.
pub fn decode_image(reader: impl BufRead + Seek) -> anyhow::Result<image::RgbImage> {
    let mut reader = ImageReader::new(reader).with_guessed_format()?;
    if reader.format().is_none() {
        bail!("not an image in a known format (PNG, JPEG, GIF, BMP or WebP)");
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode()?;
    Ok(image
        .resize_exact(IMAGE_SIDE as u32, IMAGE_SIDE as u32, FilterType::Triangle)
        .to_rgb8())
}

/// Reads `path` and turns it into normalized CHW values for the network.
fn load_image(path: &Path, normalization: NormalizationChoice) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path)?;
    let image = decode_image(Cursor::new(bytes))?;
    let normalization = normalization.values();
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    let mut values = vec![0.0f32; CHANNELS * plane];
    for (index, pixel) in image.pixels().enumerate() {
        for c in 0..CHANNELS {
            values[c * plane + index] = normalization.apply(c, pixel[c]);
        }
    }
    Ok(values)
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let device = resolve(args.device, false)?;
    let _precision = args.precision.enable(device)?;
    let (mut net, normalization) = load_net(
        &model_path(args.checkpoint),
        device,
        args.model.as_deref(),
        args.normalization,
    )?;
    net.set_training(false);
    // --explain needs the graph from the input to the logits.
    let _guard = (!args.explain).then(no_grad);
    let mut failed = 0;
    for path in &args.images {
        let values = match load_image(path, normalization) {
            Ok(values) => values,
            Err(e) => {
                eprintln!("{}: cannot read image: {e:#}", path.display());
                failed += 1;
                continue;
            }
        };
        let input = Tensor::from_vec(values, &[1, CHANNELS, IMAGE_SIDE, IMAGE_SIDE], device)?;
        let input = if args.explain {
            input.requires_grad_()
        } else {
            input
        };
        let logits = net.forward(&input)?;
        let probabilities = softmax(&logits.to_vec_f32()?);
        let mut ranked: Vec<(usize, f64)> = probabilities.into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = ranked
            .iter()
            .take(3)
            .map(|(class, p)| format!("{} {:.1}%", CLASSES[*class], 100.0 * p))
            .collect();
        println!("{}: {}", path.display(), top.join(", "));
        if args.explain {
            let written = saliency::explain(path, &input, &logits, normalization.values())?;
            println!("  saliency map: {}", written.display());
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be read (each is named above)",
            args.images.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Bounded fuzzing of the image decoding: mutated PNG, JPEG, GIF, BMP and WebP files
    //! must give an image or an error — never a panic, an abort or a huge allocation.

    use std::io::Cursor;

    use super::decode_image;

    use crate::fuzz_support;

    /// A small picture in each format, encoded by the `image` crate.
    fn seeds() -> Vec<Vec<u8>> {
        let picture = image::RgbImage::from_fn(9, 7, |x, y| {
            image::Rgb([(x * 28) as u8, (y * 36) as u8, ((x + y) * 15) as u8])
        });
        let mut seeds = Vec::new();
        for format in [
            image::ImageFormat::Png,
            image::ImageFormat::Jpeg,
            image::ImageFormat::Gif,
            image::ImageFormat::Bmp,
            image::ImageFormat::WebP,
        ] {
            let mut bytes = Cursor::new(Vec::new());
            image::DynamicImage::ImageRgb8(picture.clone())
                .write_to(&mut bytes, format)
                .unwrap();
            seeds.push(bytes.into_inner());
        }
        seeds
    }

    #[test]
    fn every_seed_decodes_whatever_its_file_name() {
        for seed in seeds() {
            let image = decode_image(Cursor::new(seed)).unwrap();
            assert_eq!(image.dimensions(), (32, 32));
        }
        let err = decode_image(Cursor::new(b"plain text, no image".to_vec())).unwrap_err();
        assert!(err.to_string().contains("not an image"), "{err}");
    }

    #[test]
    fn a_header_asking_for_a_huge_image_is_refused_before_decoding() {
        // A PNG whose header says 100,000 x 100,000 pixels (30 GB of RGB).
        let mut png = seeds().remove(0);
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(decode_image(Cursor::new(png)).is_err());
    }

    #[test]
    fn mutated_images_decode_or_fail_cleanly() {
        let seeds = seeds();
        let inputs = fuzz_support::fuzz(
            2_000,
            (0..seeds.len(), fuzz_support::mutation()),
            |(seed, edits)| {
                let _ = decode_image(Cursor::new(fuzz_support::mutate(
                    seeds[seed].clone(),
                    edits,
                )));
            },
        );
        eprintln!("fuzzed predict's image decoding with {inputs} mutated images");
    }
}
