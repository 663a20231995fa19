//! Block kinds and pooling kinds of the `block` and `pool` registries.

use tch::{nn, Tensor};

use super::ConvLayer;
use crate::spec::BlockSpec;

/// `conv`: every convolution uses the block's kernel size.
pub fn conv_block(path: &nn::Path, in_channels: i64, spec: &BlockSpec) -> Vec<ConvLayer> {
    layers(path, in_channels, spec, |_| spec.kernel)
}

/// `nin` (network in network): the first convolution uses the block's kernel size and the
/// following ones are 1x1, as in the blocks of the RotNet paper's NIN model.
pub fn nin_block(path: &nn::Path, in_channels: i64, spec: &BlockSpec) -> Vec<ConvLayer> {
    layers(path, in_channels, spec, |index| {
        if index == 0 {
            spec.kernel
        } else {
            1
        }
    })
}

fn layers(
    path: &nn::Path,
    in_channels: i64,
    spec: &BlockSpec,
    kernel: impl Fn(usize) -> i64,
) -> Vec<ConvLayer> {
    let mut channels = in_channels;
    let mut layers = Vec::new();
    for (index, &out) in spec.channels.iter().enumerate() {
        let layer_path = path / format!("layer{index}");
        layers.push(ConvLayer::new(
            &layer_path,
            channels,
            out,
            kernel(index),
            spec.batch_norm,
        ));
        channels = out;
    }
    layers
}

pub fn max_pool(x: &Tensor, spec: &BlockSpec) -> Tensor {
    let (kernel, stride, padding) = (spec.pool_kernel, spec.pool_stride, spec.pool_padding);
    x.max_pool2d(
        [kernel, kernel],
        [stride, stride],
        [padding, padding],
        [1, 1],
        false,
    )
}

pub fn avg_pool(x: &Tensor, spec: &BlockSpec) -> Tensor {
    let (kernel, stride, padding) = (spec.pool_kernel, spec.pool_stride, spec.pool_padding);
    x.avg_pool2d(
        [kernel, kernel],
        [stride, stride],
        [padding, padding],
        false,
        true,
        None,
    )
}

pub fn no_pool(x: &Tensor, _spec: &BlockSpec) -> Tensor {
    x.shallow_clone()
}
