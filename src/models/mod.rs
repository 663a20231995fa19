//! The backbone (named blocks of convolutions) and the heads put on top of it.
//!
//! A [`Network`] keeps frozen blocks and trainable parts in two separate var stores. The
//! optimiser is built from the trainable store only, and the frozen store runs in evaluation
//! mode under `no_grad`, so frozen weights and batch-norm statistics cannot change. Variable names follow the spec (`backbone.conv2.layer0.conv.weight`), so a
//! checkpoint of one stage loads into another by name.

pub mod blocks;

use std::collections::HashMap;
use std::path::Path;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::registry;
use crate::spec::{BlockSpec, ModelSpec};

/// One convolution followed by optional batch norm and a ReLU.
#[derive(Debug)]
pub struct ConvLayer {
    conv: nn::Conv2D,
    batch_norm: Option<nn::BatchNorm>,
}

impl ConvLayer {
    pub fn new(
        path: &nn::Path,
        in_channels: i64,
        out_channels: i64,
        kernel: i64,
        batch_norm: bool,
    ) -> Self {
        let config = nn::ConvConfig {
            padding: kernel / 2,
            bias: !batch_norm,
            ..Default::default()
        };
        Self {
            conv: nn::conv2d(path / "conv", in_channels, out_channels, kernel, config),
            batch_norm: batch_norm
                .then(|| nn::batch_norm2d(path / "bn", out_channels, Default::default())),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x.apply(&self.conv);
        let x = match &self.batch_norm {
            Some(bn) => x.apply_t(bn, train),
            None => x,
        };
        x.relu()
    }
}

/// A named block of the backbone.
#[derive(Debug)]
pub struct Block {
    pub name: String,
    layers: Vec<ConvLayer>,
    spec: BlockSpec,
    pub out_channels: i64,
}

impl Block {
    /// Runs the block's convolutions and pooling.
    ///
    /// # Shapes
    ///
    /// `x`: `[batch, in_channels, height, width]`; returns `[batch, out_channels, height',
    /// width']` with the size after pooling.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for layer in &self.layers {
            x = layer.forward(&x, train);
        }
        let pool = registry::POOLS
            .get(&self.spec.pool)
            .expect("pool names are checked when the spec is loaded");
        (pool.build)(&x, &self.spec)
    }
}

/// Builds block `spec` under `path` with the layers its kind defines.
pub fn build_block(path: &nn::Path, in_channels: i64, spec: &BlockSpec) -> Block {
    let builder = registry::BLOCKS
        .get(&spec.kind)
        .expect("block kinds are checked when the spec is loaded");
    let layers = (builder.build)(path, in_channels, spec);
    Block {
        name: spec.name.clone(),
        layers,
        spec: spec.clone(),
        out_channels: *spec.channels.last().unwrap_or(&in_channels),
    }
}

/// Layers on top of the backbone.
#[derive(Debug)]
pub enum Head {
    /// Global average pooling and a linear layer.
    GlobalPoolLinear(nn::Linear),
    /// Adaptive average pooling to `pool x pool`, flattening, batch norm without affine
    /// parameters (so the probe receives standardised features), and a linear layer.
    Probe {
        pool: i64,
        norm: nn::BatchNorm,
        linear: nn::Linear,
    },
}

impl Head {
    pub fn global_pool_linear(path: &nn::Path, in_features: i64, classes: i64) -> Self {
        Head::GlobalPoolLinear(nn::linear(
            path / "linear",
            in_features,
            classes,
            Default::default(),
        ))
    }

    pub fn probe(path: &nn::Path, channels: i64, pool: i64, classes: i64) -> Self {
        let features = channels * pool * pool;
        let norm_config = nn::BatchNormConfig {
            affine: false,
            ..Default::default()
        };
        Head::Probe {
            pool,
            norm: nn::batch_norm1d(path / "bn", features, norm_config),
            linear: nn::linear(path / "linear", features, classes, Default::default()),
        }
    }

    /// Pools a feature map into the vector the linear layer reads (no parameters involved).
    ///
    /// # Shapes
    ///
    /// `x`: `[batch, channels, height, width]`; returns `[batch, features]`.
    pub fn pool(&self, x: &Tensor) -> Tensor {
        match self {
            Head::GlobalPoolLinear(_) => x.mean_dim(&[2i64, 3][..], false, Kind::Float),
            Head::Probe { pool, .. } => x.adaptive_avg_pool2d([*pool, *pool]).flatten(1, -1),
        }
    }

    /// Maps pooled features to logits.
    pub fn classify(&self, features: &Tensor, train: bool) -> Tensor {
        match self {
            Head::GlobalPoolLinear(linear) => linear.forward(features),
            Head::Probe { norm, linear, .. } => features.apply_t(norm, train).apply(linear),
        }
    }
}

/// A backbone truncated after some block, split into frozen and trainable parts, plus a
/// head.
pub struct Network {
    /// Blocks that keep their weights; never given to an optimiser.
    pub frozen_store: nn::VarStore,
    /// Trainable blocks and the head.
    pub trainable_store: nn::VarStore,
    blocks: Vec<Block>,
    frozen_count: usize,
    channels_last: bool,
    pub head: Head,
}

/// How to build a [`Network`].
pub struct NetworkConfig<'a> {
    pub model: &'a ModelSpec,
    pub in_channels: i64,
    /// Number of leading blocks that are frozen.
    pub frozen_count: usize,
    /// Number of leading blocks used (the rest of the backbone is dropped).
    pub depth: usize,
    pub device: Device,
    /// Convert inputs to channels-last layout (see the spec's `device.channels_last`).
    pub channels_last: bool,
}

impl Network {
    /// Builds the blocks and lets `head` build the head from the last block's channels.
    pub fn new(config: &NetworkConfig, head: impl FnOnce(&nn::Path, i64) -> Head) -> Self {
        let frozen_store = nn::VarStore::new(config.device);
        let trainable_store = nn::VarStore::new(config.device);
        let mut blocks = Vec::new();
        let mut channels = config.in_channels;
        for (index, spec) in config.model.blocks.iter().take(config.depth).enumerate() {
            let store = if index < config.frozen_count {
                &frozen_store
            } else {
                &trainable_store
            };
            let block = build_block(
                &(store.root() / "backbone" / spec.name.as_str()),
                channels,
                spec,
            );
            channels = block.out_channels;
            blocks.push(block);
        }
        let head = head(&(trainable_store.root() / "head"), channels);
        let mut network = Self {
            frozen_store,
            trainable_store,
            blocks,
            frozen_count: config.frozen_count,
            channels_last: config.channels_last,
            head,
        };
        network.frozen_store.freeze();
        network
    }

    /// Builds every block of `model`, all trainable, with global average pooling and a
    /// linear classifier over `classes` on top (the pretext and supervised networks).
    pub fn trainable(
        model: &ModelSpec,
        in_channels: i64,
        classes: i64,
        device: Device,
        channels_last: bool,
    ) -> Self {
        let config = NetworkConfig {
            model,
            in_channels,
            frozen_count: 0,
            depth: model.blocks.len(),
            device,
            channels_last,
        };
        Network::new(&config, |path, channels| {
            Head::global_pool_linear(path, channels, classes)
        })
    }

    /// Runs the frozen blocks (evaluation mode, no gradient) and then the trainable blocks.
    ///
    /// # Shapes
    ///
    /// `x`: `[batch, channels, height, width]`; returns the last block's feature map.
    pub fn features(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = tch::no_grad(|| {
            let mut x = self.layout(x);
            for block in &self.blocks[..self.frozen_count] {
                x = block.forward(&x, false);
            }
            x
        });
        for block in &self.blocks[self.frozen_count..] {
            x = block.forward(&x, train);
        }
        x
    }

    /// Returns `x` in the layout the network runs in: the same logical
    /// `[batch, channels, height, width]` tensor, stored channels-last when configured.
    /// libtorch reads the layout from the strides, so the permuted copy selects its
    /// channels-last kernels.
    fn layout(&self, x: &Tensor) -> Tensor {
        if self.channels_last {
            x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
        } else {
            x.shallow_clone()
        }
    }

    /// Runs the whole network and returns logits `[batch, classes]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let features = self.head.pool(&self.features(x, train));
        self.head.classify(&features, train)
    }

    /// Copies the variables whose names start with `backbone.<block>.` for each block in
    /// `blocks` from `checkpoint` into whichever store holds them.
    pub fn load_blocks(&mut self, checkpoint: &Checkpoint, blocks: &[&str]) -> Result<()> {
        let mut copied = 0;
        for store in [&self.frozen_store, &self.trainable_store] {
            for (name, mut variable) in store.variables() {
                let requested = blocks
                    .iter()
                    .any(|block| name.starts_with(&format!("backbone.{block}.")));
                if !requested {
                    continue;
                }
                let source = checkpoint.tensors.get(&name).ok_or_else(|| {
                    Error::data(
                        &checkpoint.path,
                        format!(
                            "variable `{name}` is missing; the checkpoint was written for \
                             another model"
                        ),
                    )
                })?;
                if source.size() != variable.size() {
                    return Err(Error::data(
                        &checkpoint.path,
                        format!(
                            "variable `{name}` has shape {:?}, the model expects {:?}; the \
                             checkpoint was written for another model",
                            source.size(),
                            variable.size()
                        ),
                    ));
                }
                tch::no_grad(|| variable.copy_(source));
                copied += 1;
            }
        }
        tracing::debug!(copied, ?blocks, "loaded pretrained blocks");
        Ok(())
    }

    /// Collects every variable of both stores, sorted by name.
    pub fn named_variables(&self) -> Vec<(String, Tensor)> {
        let mut variables: Vec<(String, Tensor)> = self
            .frozen_store
            .variables()
            .into_iter()
            .chain(self.trainable_store.variables())
            .collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        variables
    }
}

/// Reads a safetensors checkpoint, such as a stage's `checkpoint.safetensors`.
pub fn read_checkpoint(path: &Path, device: Device) -> Result<Checkpoint> {
    if !path.is_file() {
        return Err(Error::data(path, "checkpoint file not found"));
    }
    let tensors = Tensor::read_safetensors(path).map_err(|error| {
        Error::data(
            path,
            format!("cannot read checkpoint as safetensors: {error}"),
        )
    })?;
    let tensors = tensors
        .into_iter()
        .map(|(name, tensor)| (name, tensor.to_device(device)))
        .collect();
    Ok(Checkpoint {
        path: path.to_path_buf(),
        tensors,
    })
}

/// Variables of a checkpoint file, by name.
pub struct Checkpoint {
    pub path: std::path::PathBuf,
    pub tensors: HashMap<String, Tensor>,
}

impl Network {
    /// Runs the blocks in evaluation mode without gradient and returns the feature maps
    /// after each block in `indices` (block positions, in increasing order).
    pub fn features_at(&self, x: &Tensor, indices: &[usize]) -> Vec<Tensor> {
        tch::no_grad(|| {
            let mut outputs = Vec::new();
            let mut x = self.layout(x);
            for (index, block) in self.blocks.iter().enumerate() {
                if outputs.len() == indices.len() {
                    break;
                }
                x = block.forward(&x, false);
                if indices.contains(&index) {
                    outputs.push(x.shallow_clone());
                }
            }
            outputs
        })
    }
}

/// Sum of every variable of `store` (parameters and batch-norm buffers), by name. Two equal
/// maps before and after a stage show that the stage changed nothing in the store.
pub fn checksums(store: &nn::VarStore) -> std::collections::BTreeMap<String, f64> {
    store
        .variables()
        .into_iter()
        .map(|(name, tensor)| {
            let sum = tensor
                .to_kind(Kind::Double)
                .abs()
                .sum(Kind::Double)
                .double_value(&[]);
            (name, sum)
        })
        .collect()
}

/// Height and width after each block for an input of `height` x `width`. Convolutions keep
/// the size (odd kernels, half padding) and pooling follows the usual floor formula.
pub fn block_output_sizes(model: &ModelSpec, height: i64, width: i64) -> Vec<(i64, i64)> {
    let pooled = |block: &BlockSpec, size: i64| {
        let padded = size + 2 * block.pool_padding;
        if block.pool == "none" {
            size
        } else if padded < block.pool_kernel {
            0
        } else {
            (padded - block.pool_kernel) / block.pool_stride + 1
        }
    };
    let mut size = (height, width);
    model
        .blocks
        .iter()
        .map(|block| {
            size = (pooled(block, size.0), pooled(block, size.1));
            size
        })
        .collect()
}

/// Fails when pooling shrinks a `height` x `width` input to nothing before the last block.
pub fn check_input_size(model: &ModelSpec, height: i64, width: i64) -> Result<()> {
    let mut input = (height, width);
    for (block, output) in model
        .blocks
        .iter()
        .zip(block_output_sizes(model, height, width))
    {
        if output.0 < 1 || output.1 < 1 {
            return Err(Error::data(
                Path::new(&block.name),
                format!(
                    "block `{}` pools its {}x{} input to nothing; use fewer or smaller pooling \
                     layers (`pool`, `pool_kernel`, `pool_stride`) for {height}x{width} images",
                    block.name, input.0, input.1
                ),
            ));
        }
        input = output;
    }
    Ok(())
}
