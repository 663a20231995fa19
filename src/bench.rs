//! `runner bench`: throughput of a spec's pretext stage, for `scripts/bench`.
//!
//! Modes, each timed after warm-up steps:
//! - `end-to-end`: the training step as `fit` runs it (index sampling, tensor augmentation,
//!   pretext expansion, forward, backward, optimiser step);
//! - `compute`: the same step repeated on one pre-built batch;
//! - `data`: decoding (from the data load) and batched augmentation alone;
//! - `sgemm`: single-precision matrix products, for the machine's ceiling.
//!
//! Each prints one JSON object with rotated inputs per second and the step's floating-point
//! operations per input image.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

pub use crate::cli::BenchMode;
use crate::data::{self, augment::Augmenter};
use crate::error::Result;
use crate::models::Network;
use crate::registry;
use crate::run::select_device;
use crate::spec::Spec;
use crate::train::objectives::ImageObjective;
use crate::train::Objective;

/// Figures of one benchmark run.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub side: &'static str,
    pub mode: BenchMode,
    /// Pretext inputs per second (source images per second for `data`), or GFLOP/s for
    /// `sgemm`.
    pub images_per_second: f64,
    pub seconds: f64,
    /// Forward and backward floating-point operations per pretext input. This is an estimate:
    /// three times the forward pass, which counts 2 operations per multiply-add.
    pub train_flops_per_image: f64,
    /// Images per second of the data load (decoding), for `data`.
    pub decode_images_per_second: Option<f64>,
    pub threads: i32,
    pub peak_rss_mib: f64,
}

/// Runs one benchmark of `spec`'s pretext stage.
pub fn bench(
    spec: &Spec,
    data_dir: &Path,
    mode: BenchMode,
    warmup: usize,
    steps: usize,
) -> Result<BenchResult> {
    let device = select_device(&spec.device.kind)?;
    if spec.device.threads > 0 {
        tch::set_num_threads(spec.device.threads as i32);
    }
    tch::manual_seed(spec.experiment.seed as i64);
    let in_channels = if spec.data.kind == "mnist" { 1 } else { 3 };
    let train_flops = 3.0 * forward_flops(spec, in_channels, 32, 32);

    if mode == BenchMode::Sgemm {
        let gflops = sgemm_gflops(device, warmup.max(1), steps.max(1));
        return Ok(result(mode, gflops, 0.0, train_flops, None));
    }

    let load_started = Instant::now();
    let splits = data::load(&spec.data, data_dir, spec.experiment.seed)?;
    let decode_rate =
        (splits.train.len() + splits.test.len()) as f64 / load_started.elapsed().as_secs_f64();
    let (mean, std) = splits.train.channel_stats();
    let augmenter = Augmenter::new(&spec.data.augment, &mean, &std, device);
    let builder = registry::PRETEXTS
        .get(&spec.pretext.kind)
        .expect("pretext names are checked when the spec is loaded");
    let task = (builder.build)(&spec.pretext);
    let network = Network::trainable(
        &spec.model,
        splits.train.image_shape()[0],
        task.classes(),
        device,
        spec.device.channels_last,
    );
    let optimizer_entry = registry::OPTIMIZERS
        .get(&spec.train.optimizer)
        .expect("optimizer names are checked when the spec is loaded");
    let mut optimizer = (optimizer_entry.build)(&network.trainable_store, &spec.train)?;
    let mut objective = ImageObjective {
        network: &network,
        train: &splits.train,
        test: &splits.test,
        augmenter: &augmenter,
        pretext: Some(task.as_ref()),
        device,
    };
    let batch = spec.train.batch_size.min(splits.train.len()) as i64;
    let random_batch = || {
        Tensor::randint(
            splits.train.len() as i64,
            [batch],
            (Kind::Int64, Device::Cpu),
        )
    };
    let inputs_per_step = batch as f64 * task.expansion() as f64;

    let mut started = Instant::now();
    match mode {
        BenchMode::EndToEnd => {
            for step in 0..warmup + steps {
                if step == warmup {
                    started = Instant::now();
                }
                let output = objective.train_batch(&random_batch())?;
                let _ = output.loss.double_value(&[]);
                optimizer.backward_step(&output.loss, spec.train.lr);
            }
        }
        BenchMode::Compute => {
            let images = augmenter.train(&splits.train.images.index_select(0, &random_batch()));
            let (inputs, targets) = task.make_batch(&images);
            for step in 0..warmup + steps {
                if step == warmup {
                    started = Instant::now();
                }
                let loss = network
                    .forward(&inputs, true)
                    .cross_entropy_for_logits(&targets);
                let _ = loss.double_value(&[]);
                optimizer.backward_step(&loss, spec.train.lr);
            }
        }
        BenchMode::Data => {
            for step in 0..warmup + steps {
                if step == warmup {
                    started = Instant::now();
                }
                let images = augmenter.train(&splits.train.images.index_select(0, &random_batch()));
                let _ = images.double_value(&[0, 0, 0, 0]);
            }
            let rate = batch as f64 * steps as f64 / started.elapsed().as_secs_f64();
            let seconds = started.elapsed().as_secs_f64();
            return Ok(result(mode, rate, seconds, train_flops, Some(decode_rate)));
        }
        BenchMode::Sgemm => unreachable!("handled above"),
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(result(
        mode,
        inputs_per_step * steps as f64 / seconds,
        seconds,
        train_flops,
        None,
    ))
}

fn result(
    mode: BenchMode,
    rate: f64,
    seconds: f64,
    train_flops: f64,
    decode: Option<f64>,
) -> BenchResult {
    BenchResult {
        side: "runner",
        mode,
        images_per_second: rate,
        seconds,
        train_flops_per_image: train_flops,
        decode_images_per_second: decode,
        threads: tch::get_num_threads(),
        peak_rss_mib: crate::train::peak_rss_mib(),
    }
}

/// Forward-pass floating-point operations (2 per multiply-add) of the backbone and the
/// pretext head for one `height` x `width` input.
pub fn forward_flops(spec: &Spec, in_channels: i64, height: i64, width: i64) -> f64 {
    let outputs = crate::models::block_output_sizes(&spec.model, height, width);
    let (mut channels, mut height, mut width) = (in_channels, height, width);
    let mut flops = 0.0;
    for (block, output) in spec.model.blocks.iter().zip(outputs) {
        for (index, &out) in block.channels.iter().enumerate() {
            let kernel = if block.kind == "nin" && index > 0 {
                1
            } else {
                block.kernel
            };
            flops += 2.0 * (channels * out * kernel * kernel * height * width) as f64;
            channels = out;
        }
        (height, width) = output;
    }
    flops + 2.0 * (channels * spec.pretext.angles.len() as i64) as f64
}

/// Measures single-precision matrix-product throughput in GFLOP/s with 1024 x 1024
/// matrices, the rate libtorch's BLAS reaches on this machine.
pub fn sgemm_gflops(device: Device, warmup: usize, steps: usize) -> f64 {
    let size = 1024;
    let a = Tensor::randn([size, size], (Kind::Float, device));
    let b = Tensor::randn([size, size], (Kind::Float, device));
    let out = Tensor::zeros([size, size], (Kind::Float, device));
    let repeats = 4 * steps;
    for _ in 0..warmup {
        let _ = a.mm_out(&out, &b);
    }
    let started = Instant::now();
    for _ in 0..repeats {
        let _ = a.mm_out(&out, &b);
    }
    let _ = out.double_value(&[0, 0]);
    let seconds = started.elapsed().as_secs_f64();
    2.0 * (size * size * size) as f64 * repeats as f64 / seconds / 1e9
}
