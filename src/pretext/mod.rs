//! Self-supervised pretext tasks: each turns a batch of unlabelled images into inputs and
//! targets of a classification problem.

pub mod rotation;

use tch::Tensor;

/// A pretext task built from the `pretext` section of the spec.
pub trait PretextTask: Send {
    /// Number of pretext classes.
    fn classes(&self) -> i64;

    /// Inputs produced per source image (rotation: one per angle).
    fn expansion(&self) -> usize;

    /// Builds inputs and targets from a batch of images.
    ///
    /// # Shapes
    ///
    /// `images`: `[batch, channels, height, width]` of any kind; returns inputs
    /// `[batch * expansion, channels, height, width]` and i64 targets `[batch * expansion]`.
    fn make_batch(&self, images: &Tensor) -> (Tensor, Tensor);

    /// Short description of how [`PretextTask::make_batch`] lays out a batch, used as the
    /// TensorBoard tag of the input grid.
    fn grid_tag(&self) -> String;
}
