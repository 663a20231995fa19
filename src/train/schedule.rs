//! Learning-rate schedules of the `schedule` registry. Each maps the position in a stage to
//! a factor of the peak rate; linear warm-up is applied on top by [`learning_rate`].

use crate::registry;
use crate::spec::TrainSpec;

/// Position of an optimiser step within its stage.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    /// Steps taken before this one.
    pub step: usize,
    pub steps_per_epoch: usize,
    pub total_steps: usize,
}

impl Position {
    /// Fractional epoch at this step.
    pub fn epoch(&self) -> f64 {
        self.step as f64 / self.steps_per_epoch.max(1) as f64
    }
}

/// Learning rate for the step at `position`: the schedule's factor times `train.lr`,
/// scaled linearly from 0 during the warm-up epochs.
pub fn learning_rate(train: &TrainSpec, position: Position) -> f64 {
    let schedule = registry::SCHEDULES
        .get(&train.schedule.kind)
        .expect("schedule names are checked when the spec is loaded");
    let warmup_steps = (train.schedule.warmup_epochs * position.steps_per_epoch as f64).round();
    let warmup = if (position.step as f64) < warmup_steps {
        (position.step as f64 + 1.0) / warmup_steps
    } else {
        1.0
    };
    train.lr * warmup * (schedule.build)(train, position)
}

pub fn constant(_train: &TrainSpec, _position: Position) -> f64 {
    1.0
}

/// Multiplies by `gamma` at each milestone epoch passed.
pub fn step(train: &TrainSpec, position: Position) -> f64 {
    let epoch = position.epoch();
    let passed = train
        .schedule
        .milestones
        .iter()
        .filter(|&&milestone| epoch >= milestone as f64)
        .count();
    train.schedule.gamma.powi(passed as i32)
}

/// Half a cosine from 1 down to 0 over the steps after warm-up.
pub fn cosine(train: &TrainSpec, position: Position) -> f64 {
    let warmup_steps = train.schedule.warmup_epochs * position.steps_per_epoch as f64;
    let span = (position.total_steps as f64 - warmup_steps).max(1.0);
    let progress = ((position.step as f64 - warmup_steps) / span).clamp(0.0, 1.0);
    0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(step: usize) -> Position {
        Position {
            step,
            steps_per_epoch: 10,
            total_steps: 40,
        }
    }

    #[test]
    fn cosine_decays_from_peak_to_zero() {
        let train = TrainSpec {
            lr: 0.2,
            ..TrainSpec::default()
        };
        assert!((learning_rate(&train, at(0)) - 0.2).abs() < 1e-12);
        assert!((learning_rate(&train, at(20)) - 0.1).abs() < 1e-12);
        assert!(learning_rate(&train, at(40)).abs() < 1e-12);
    }

    #[test]
    fn step_schedule_applies_milestones() {
        let mut train = TrainSpec {
            lr: 1.0,
            ..TrainSpec::default()
        };
        train.schedule.kind = "step".into();
        train.schedule.milestones = vec![1, 3];
        train.schedule.gamma = 0.5;
        let rates: Vec<f64> = [0, 9, 10, 29, 30]
            .iter()
            .map(|&s| learning_rate(&train, at(s)))
            .collect();
        assert_eq!(rates, vec![1.0, 1.0, 0.5, 0.5, 0.25]);
    }

    #[test]
    fn warmup_ramps_linearly() {
        let mut train = TrainSpec {
            lr: 1.0,
            ..TrainSpec::default()
        };
        train.schedule.kind = "constant".into();
        train.schedule.warmup_epochs = 0.5;
        let rates: Vec<f64> = [0, 1, 4, 5]
            .iter()
            .map(|&s| learning_rate(&train, at(s)))
            .collect();
        assert_eq!(rates, vec![0.2, 0.4, 1.0, 1.0]);
    }
}
