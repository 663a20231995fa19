//! Rotation prediction (Gidaris et al., "Unsupervised Representation Learning by Predicting
//! Image Rotations", ICLR 2018): every image is shown at each angle in the same batch and
//! the network classifies the angle.

use tch::Tensor;

use super::PretextTask;
use crate::spec::PretextSpec;

/// Rotation prediction over a configurable set of angles (multiples of 90 degrees).
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Angles in degrees; the target of an input is the index of its angle here.
    pub angles: Vec<i64>,
}

impl Rotation {
    pub fn new(spec: &PretextSpec) -> Self {
        Self {
            angles: spec.angles.clone(),
        }
    }
}

/// Rotates every image by every angle, counter-clockwise, angle-major.
///
/// # Shapes
///
/// `images`: `[batch, channels, height, width]` with height equal to width when an angle is
/// 90 or 270; returns `[angles * batch, channels, height, width]` and i64 targets where
/// rows `a * batch .. (a + 1) * batch` hold angle index `a`.
pub fn rotate_batch(images: &Tensor, angles: &[i64]) -> (Tensor, Tensor) {
    let batch = images.size()[0];
    let rotated: Vec<Tensor> = angles
        .iter()
        .map(|angle| match angle.rem_euclid(360) / 90 {
            0 => images.shallow_clone(),
            quarter_turns => images.rot90(quarter_turns, [2, 3]),
        })
        .collect();
    let targets: Vec<Tensor> = (0..angles.len() as i64)
        .map(|index| Tensor::full([batch], index, (tch::Kind::Int64, images.device())))
        .collect();
    (Tensor::cat(&rotated, 0), Tensor::cat(&targets, 0))
}

impl PretextTask for Rotation {
    fn classes(&self) -> i64 {
        self.angles.len() as i64
    }

    fn expansion(&self) -> usize {
        self.angles.len()
    }

    fn make_batch(&self, images: &Tensor) -> (Tensor, Tensor) {
        rotate_batch(images, &self.angles)
    }

    fn grid_tag(&self) -> String {
        let angles: Vec<String> = self.angles.iter().map(|a| a.to_string()).collect();
        format!("inputs/rows_rotated_by_{}_degrees", angles.join("_"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Reference from PyTorch 2.11:
    /// `x = torch.arange(6).view(1, 1, 2, 3)`;
    /// `torch.rot90(x, 1, [2, 3])` is `[[2, 5], [1, 4], [0, 3]]`,
    /// `torch.rot90(x, 2, [2, 3])` is `[[5, 4, 3], [2, 1, 0]]`.
    #[test]
    fn rotate_batch_matches_pytorch() {
        let x = Tensor::arange(6, (Kind::Int64, Device::Cpu)).view([1, 1, 2, 3]);
        let (rotated, _) = rotate_batch(&x, &[90]);
        let expected = Tensor::from_slice(&[2i64, 5, 1, 4, 0, 3]).view([1, 1, 3, 2]);
        assert!(rotated.equal(&expected), "{rotated}");
        let (rotated, _) = rotate_batch(&x, &[180]);
        let expected = Tensor::from_slice(&[5i64, 4, 3, 2, 1, 0]).view([1, 1, 2, 3]);
        assert!(rotated.equal(&expected), "{rotated}");
    }

    #[test]
    fn rotate_batch_lays_out_angles_and_targets() {
        let x = Tensor::arange(2 * 4, (Kind::Int64, Device::Cpu)).view([2, 1, 2, 2]);
        let (rotated, targets) = rotate_batch(&x, &[0, 90, 180, 270]);
        assert_eq!(rotated.size(), vec![8, 1, 2, 2]);
        assert_eq!(
            Vec::<i64>::try_from(&targets).unwrap(),
            vec![0, 0, 1, 1, 2, 2, 3, 3]
        );
        assert!(rotated.narrow(0, 0, 2).equal(&x));
        // Four quarter turns bring every image back.
        assert!(rotated.narrow(0, 6, 2).rot90(1, [2, 3]).equal(&x));
        assert!(rotated.narrow(0, 2, 2).rot90(3, [2, 3]).equal(&x));
    }

    #[test]
    fn rotate_batch_uses_angle_index_as_target() {
        let x = Tensor::zeros([3, 1, 2, 2], (Kind::Float, Device::Cpu));
        let (rotated, targets) = rotate_batch(&x, &[0, 180]);
        assert_eq!(rotated.size(), vec![6, 1, 2, 2]);
        assert_eq!(
            Vec::<i64>::try_from(&targets).unwrap(),
            vec![0, 0, 0, 1, 1, 1]
        );
    }
}
