//! `predict`: the top-3 classes of PNG or JPEG images of any size.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use image::imageops::FilterType;
use models::data::{CHANNELS, CLASSES, IMAGE_SIDE};
use models::layers::Module;
use models::{no_grad, Tensor};

use super::eval::{load_net, model_path};
use super::train::NormalizationChoice;
use crate::device::{resolve, DeviceChoice};
use crate::plot::saliency;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A model.safetensors file, or a run folder holding one.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// PNG or JPEG files; each is resized to 32x32.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Input normalization [default: the one recorded in the checkpoint].
    #[arg(long, value_enum)]
    pub normalization: Option<NormalizationChoice>,
    /// Also write IMAGE.saliency.png beside each image: how sensitive the predicted
    /// class's score is to each pixel, as a heat map beside the image.
    #[arg(long)]
    pub explain: bool,
}

/// Decodes `path`, resizes it to 32x32 and normalizes it into CHW values.
fn load_image(
    path: &std::path::Path,
    normalization: NormalizationChoice,
) -> anyhow::Result<Vec<f32>> {
    let image = image::open(path)
        .with_context(|| format!("cannot read image {}", path.display()))?
        .resize_exact(IMAGE_SIDE as u32, IMAGE_SIDE as u32, FilterType::Triangle)
        .to_rgb8();
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
    let (mut net, normalization) =
        load_net(&model_path(args.checkpoint), device, args.normalization)?;
    net.set_training(false);
    // --explain needs the graph from the input to the logits.
    let _guard = (!args.explain).then(no_grad);
    for path in &args.images {
        let values = load_image(path, normalization)?;
        let input = Tensor::from_vec(values, &[1, CHANNELS, IMAGE_SIDE, IMAGE_SIDE], device)?;
        let input = if args.explain {
            input.requires_grad()
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
    Ok(())
}
