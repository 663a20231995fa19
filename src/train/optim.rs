//! Optimisers of the `optimizer` registry, built over a var store's trainable variables.

use tch::nn::{self, OptimizerConfig};

use crate::error::Result;
use crate::spec::TrainSpec;

/// Stochastic gradient descent with momentum (optionally Nesterov) and weight decay.
pub fn sgd(store: &nn::VarStore, train: &TrainSpec) -> Result<nn::Optimizer> {
    let config = nn::Sgd {
        momentum: train.momentum,
        dampening: 0.0,
        wd: train.weight_decay,
        nesterov: train.nesterov,
    };
    Ok(config.build(store, train.lr)?)
}

/// Adam with L2 weight decay; `momentum` is used as beta1.
pub fn adam(store: &nn::VarStore, train: &TrainSpec) -> Result<nn::Optimizer> {
    let beta1 = if train.momentum > 0.0 {
        train.momentum
    } else {
        0.9
    };
    Ok(nn::adam(beta1, 0.999, train.weight_decay).build(store, train.lr)?)
}

/// AdamW (decoupled weight decay); `momentum` is used as beta1.
pub fn adamw(store: &nn::VarStore, train: &TrainSpec) -> Result<nn::Optimizer> {
    let beta1 = if train.momentum > 0.0 {
        train.momentum
    } else {
        0.9
    };
    Ok(nn::adamw(beta1, 0.999, train.weight_decay).build(store, train.lr)?)
}
