//! The two objectives every stage so far is made of: classification of images (labels or
//! pretext targets) through a [`Network`], and classification of precomputed features
//! through a probe head.

use tch::{nn, Device, Kind, Tensor};

use super::{batched_accuracy, count_correct, BatchLoss, Objective};
use crate::data::augment::Augmenter;
use crate::data::ImageSet;
use crate::error::Result;
use crate::logging::events::EventWriter;
use crate::models::{Head, Network};
use crate::pretext::PretextTask;

/// Test batches hold this many source images.
pub const EVAL_BATCH: usize = 200;

/// Trains a [`Network`] on augmented images, against class labels or, with a pretext task,
/// against the task's targets.
pub struct ImageObjective<'a> {
    pub network: &'a Network,
    pub train: &'a ImageSet,
    pub test: &'a ImageSet,
    pub augmenter: &'a Augmenter,
    pub pretext: Option<&'a dyn PretextTask>,
    pub device: Device,
}

impl ImageObjective<'_> {
    fn inputs_and_targets(&self, images: Tensor, labels: &Tensor) -> (Tensor, Tensor) {
        match self.pretext {
            Some(task) => task.make_batch(&images),
            None => (images, labels.to_device(self.device)),
        }
    }
}

impl Objective for ImageObjective<'_> {
    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn train_batch(&mut self, indices: &Tensor) -> Result<BatchLoss> {
        let images = self
            .augmenter
            .train(&self.train.images.index_select(0, indices));
        let labels = self.train.labels.index_select(0, indices);
        let (inputs, targets) = self.inputs_and_targets(images, &labels);
        let logits = self.network.forward(&inputs, true);
        let loss = logits.cross_entropy_for_logits(&targets);
        let (correct, count) = count_correct(&logits, &targets);
        Ok(BatchLoss {
            loss,
            correct,
            count,
        })
    }

    fn test_accuracy(&mut self) -> Result<f64> {
        let accuracy = batched_accuracy(self.test.len(), EVAL_BATCH, |start, length| {
            let images = self
                .augmenter
                .eval(&self.test.images.narrow(0, start, length));
            let labels = self.test.labels.narrow(0, start, length);
            let (inputs, targets) = self.inputs_and_targets(images, &labels);
            (self.network.forward(&inputs, false), targets)
        });
        Ok(accuracy)
    }

    fn variables(&self) -> Vec<(String, Tensor)> {
        self.network.named_variables()
    }

    fn log_inputs(&mut self, events: &mut EventWriter) -> Result<()> {
        let Some(task) = self.pretext else {
            return Ok(());
        };
        let columns = self.train.len().min(8) as i64;
        let (grid, _) = task.make_batch(&self.train.images.narrow(0, 0, columns));
        let (pixels, height, width) = image_grid(&grid, task.expansion() as i64, columns);
        events.image(&task.grid_tag(), pixels, height, width, 0)
    }
}

/// Lays out u8 images `[rows * columns, channels, height, width]` as an RGB grid with a
/// 2-pixel border, returning interleaved bytes, height and width.
pub fn image_grid(images: &Tensor, rows: i64, columns: i64) -> (Vec<u8>, u32, u32) {
    let size = images.size();
    let (channels, height, width) = (size[1], size[2], size[3]);
    let images = if channels == 1 {
        images.expand([size[0], 3, height, width], false)
    } else {
        images.shallow_clone()
    };
    let border = 2;
    let padded = images
        .to_kind(Kind::Uint8)
        .constant_pad_nd([border, border, border, border])
        .view([rows, columns, 3, height + 2 * border, width + 2 * border])
        .permute([0, 3, 1, 4, 2])
        .contiguous()
        .view([
            rows * (height + 2 * border),
            columns * (width + 2 * border) * 3,
        ]);
    let grid_height = rows * (height + 2 * border);
    let grid_width = columns * (width + 2 * border);
    let pixels =
        Vec::<u8>::try_from(padded.flatten(0, -1).to_device(Device::Cpu)).unwrap_or_default();
    (pixels, grid_height as u32, grid_width as u32)
}

/// Trains a probe head on fixed features.
pub struct FeatureObjective<'a> {
    pub head: &'a Head,
    pub store: &'a nn::VarStore,
    /// Training features `[examples, features]`.
    pub train_features: &'a Tensor,
    pub train_labels: &'a Tensor,
    pub test_features: &'a Tensor,
    pub test_labels: &'a Tensor,
}

impl Objective for FeatureObjective<'_> {
    fn train_len(&self) -> usize {
        self.train_features.size()[0] as usize
    }

    fn train_batch(&mut self, indices: &Tensor) -> Result<BatchLoss> {
        let device = self.train_features.device();
        let indices = indices.to_device(device);
        let features = self.train_features.index_select(0, &indices);
        let targets = self.train_labels.index_select(0, &indices);
        let logits = self.head.classify(&features, true);
        let loss = logits.cross_entropy_for_logits(&targets);
        let (correct, count) = count_correct(&logits, &targets);
        Ok(BatchLoss {
            loss,
            correct,
            count,
        })
    }

    fn test_accuracy(&mut self) -> Result<f64> {
        let count = self.test_features.size()[0] as usize;
        let accuracy = batched_accuracy(count, 4 * EVAL_BATCH, |start, length| {
            let features = self.test_features.narrow(0, start, length);
            let targets = self.test_labels.narrow(0, start, length);
            (self.head.classify(&features, false), targets)
        });
        Ok(accuracy)
    }

    fn variables(&self) -> Vec<(String, Tensor)> {
        let mut variables: Vec<(String, Tensor)> = self.store.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        variables
    }
}
