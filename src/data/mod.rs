//! Data sets decoded once per process into u8 tensors, labelled subsets, and batches.
//!
//! Readers (one file each) turn files on disk into an [`ImageSet`]: images as a u8 tensor
//! `[N, C, H, W]` and labels as i64 `[N]`. Training batches are then sampled by index and
//! augmented on tensors ([`augment`]), so no image is decoded twice.

pub mod augment;
pub mod cifar_bin;
pub mod folder;
pub mod mnist;

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::registry;
use crate::spec::DataSpec;

/// Decoded images of one split.
#[derive(Debug)]
pub struct ImageSet {
    /// Pixels as u8, `[N, C, H, W]`.
    pub images: Tensor,
    /// Class indices as i64, `[N]`.
    pub labels: Tensor,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.images.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channels, height and width of one image.
    pub fn image_shape(&self) -> [i64; 3] {
        let size = self.images.size();
        [size[1], size[2], size[3]]
    }

    /// Number of images per class, indexed by label.
    pub fn class_counts(&self) -> Vec<i64> {
        let counts = self
            .labels
            .bincount::<Tensor>(None, self.classes.len() as i64);
        Vec::<i64>::try_from(&counts).unwrap_or_default()
    }

    /// Keeps the images at `indices`, in that order.
    pub fn select(&self, indices: &[i64]) -> ImageSet {
        let index = Tensor::from_slice(indices);
        ImageSet {
            images: self.images.index_select(0, &index),
            labels: self.labels.index_select(0, &index),
            classes: self.classes.clone(),
        }
    }

    /// Keeps `per_class` images of each class, chosen by `seed`; 0 keeps everything.
    pub fn labelled_subset(&self, per_class: usize, seed: u64) -> ImageSet {
        if per_class == 0 {
            return self.shallow_clone();
        }
        let labels = Vec::<i64>::try_from(&self.labels).unwrap_or_default();
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let mut selected_per_class = vec![0usize; self.classes.len()];
        let mut indices: Vec<i64> = Vec::new();
        for i in order {
            let class = labels[i] as usize;
            if selected_per_class[class] < per_class {
                selected_per_class[class] += 1;
                indices.push(i as i64);
            }
        }
        indices.sort_unstable();
        self.select(&indices)
    }

    pub fn shallow_clone(&self) -> ImageSet {
        ImageSet {
            images: self.images.shallow_clone(),
            labels: self.labels.shallow_clone(),
            classes: self.classes.clone(),
        }
    }

    /// Per-channel mean and standard deviation of the pixels scaled to [0, 1].
    pub fn channel_stats(&self) -> (Vec<f64>, Vec<f64>) {
        // Sums in chunks of images, so that no float copy of the whole set is made (50,000
        // CIFAR-10 images are 600 MB as floats).
        let channels = self.image_shape()[0];
        let mut sum = Tensor::zeros([channels], (Kind::Double, Device::Cpu));
        let mut sum_of_squares = Tensor::zeros([channels], (Kind::Double, Device::Cpu));
        let count = self.len() as i64;
        let chunk = 2_000;
        let mut start = 0;
        while start < count {
            let length = chunk.min(count - start);
            let pixels = self.images.narrow(0, start, length).to_kind(Kind::Double) / 255.0;
            sum += pixels.sum_dim_intlist(&[0i64, 2, 3][..], false, Kind::Double);
            sum_of_squares +=
                pixels
                    .square()
                    .sum_dim_intlist(&[0i64, 2, 3][..], false, Kind::Double);
            start += length;
        }
        let size = self.image_shape();
        let values = (count * size[1] * size[2]).max(1) as f64;
        let mean = &sum / values;
        let variance = (&sum_of_squares / values - mean.square()).clamp_min(0.0);
        let mean = Vec::<f64>::try_from(&mean).unwrap_or_default();
        let std = Vec::<f64>::try_from(variance.sqrt()).unwrap_or_default();
        (mean, std)
    }
}

/// The training and test splits of a data set.
#[derive(Debug)]
pub struct Splits {
    pub train: ImageSet,
    pub test: ImageSet,
}

/// Input of a dataset reader: the resolved root folder, the data spec and the seed.
pub struct ReadRequest<'a> {
    pub root: &'a Path,
    pub spec: &'a DataSpec,
    pub seed: u64,
}

/// Resolves `spec.root` against the data directory.
pub fn resolve_root(spec: &DataSpec, data_dir: &Path) -> PathBuf {
    let root = Path::new(&spec.root);
    if root.is_absolute() {
        root.to_path_buf()
    } else {
        data_dir.join(root)
    }
}

/// Reads both splits with the reader that `spec.kind` names.
pub fn load(spec: &DataSpec, data_dir: &Path, seed: u64) -> Result<Splits> {
    let root = resolve_root(spec, data_dir);
    if !root.is_dir() {
        return Err(Error::data(
            &root,
            format!(
                "data set folder not found (data.root = {:?} under data directory {}). \
                 Point `--data-dir` or RUNNER_DATA_DIR at the folder that contains it, \
                 or set `data.root` to its path. {}",
                spec.root,
                data_dir.display(),
                registry::DATASETS
                    .get(&spec.kind)
                    .map_or("", |entry| entry.build.how_to_get)
            ),
        ));
    }
    let reader = registry::DATASETS.get(&spec.kind).ok_or_else(|| {
        let (message, _) = registry::DATASETS.unknown(&spec.kind);
        Error::data(&root, message)
    })?;
    let request = ReadRequest {
        root: &root,
        spec,
        seed,
    };
    let train = (reader.build.read)(&request, &spec.train_split, spec.train_limit)?;
    let test = (reader.build.read)(&request, &spec.test_split, spec.test_limit)?;
    if train.classes != test.classes {
        return Err(Error::data(
            &root,
            format!(
                "splits `{}` and `{}` have different classes",
                spec.train_split, spec.test_split
            ),
        ));
    }
    if train.image_shape() != test.image_shape() {
        return Err(Error::data(
            &root,
            format!(
                "splits `{}` and `{}` have different image shapes ({:?} and {:?})",
                spec.train_split,
                spec.test_split,
                train.image_shape(),
                test.image_shape()
            ),
        ));
    }
    Ok(Splits { train, test })
}

/// Chooses `limit` of `count` indices by seeded shuffle, returned sorted (all of them when
/// `limit` is 0 or at least `count`).
pub fn choose_subset(count: usize, limit: usize, seed: u64) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..count).collect();
    if limit == 0 || limit >= count {
        return indices;
    }
    indices.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    indices.truncate(limit);
    indices.sort_unstable();
    indices
}

/// Builds an [`ImageSet`] from interleaved pixel bytes `[N, C, H, W]` and labels.
pub fn image_set_from_bytes(
    pixels: Vec<u8>,
    labels: Vec<i64>,
    shape: [i64; 3],
    classes: Vec<String>,
) -> ImageSet {
    let count = labels.len() as i64;
    ImageSet {
        images: Tensor::from_slice(&pixels).reshape([count, shape[0], shape[1], shape[2]]),
        labels: Tensor::from_slice(&labels),
        classes,
    }
}
