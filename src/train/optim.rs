//! Optimisers of the `optimizer` registry, built over a var store's trainable variables.
//!
//! They follow PyTorch's update rules (`torch.optim.SGD`, `Adam`, `AdamW`) and keep their
//! state in named tensors, so a checkpoint can hold the momentum buffers and moments and a
//! resumed stage continues exactly where it stopped. tch's own optimisers hide that state.

use std::collections::HashMap;

use tch::{nn, Tensor};

use crate::error::{Error, Result};
use crate::spec::TrainSpec;

/// Adam's epsilon, as in PyTorch.
const ADAM_EPS: f64 = 1e-8;
/// Adam's second-moment decay, as in PyTorch.
const ADAM_BETA2: f64 = 0.999;

/// Update rule of an [`Optimizer`].
#[derive(Debug, Clone, Copy)]
enum Rule {
    Sgd {
        momentum: f64,
        nesterov: bool,
    },
    /// `decoupled`: AdamW's weight decay applied to the weights instead of the gradient.
    Adam {
        beta1: f64,
        decoupled: bool,
    },
}

/// A first-order optimiser over named trainable variables, with inspectable state.
pub struct Optimizer {
    rule: Rule,
    weight_decay: f64,
    /// Trainable variables, sorted by name.
    parameters: Vec<(String, Tensor)>,
    /// Per-variable state: the momentum buffer (SGD), or the first and second moments
    /// (Adam), in the order of `parameters`.
    slots: Vec<Vec<Tensor>>,
    /// Optimiser steps taken so far.
    steps: i64,
}

impl Optimizer {
    fn new(store: &nn::VarStore, rule: Rule, weight_decay: f64) -> Self {
        let mut parameters: Vec<(String, Tensor)> = store
            .variables()
            .into_iter()
            .filter(|(_, tensor)| tensor.requires_grad())
            .collect();
        parameters.sort_by(|a, b| a.0.cmp(&b.0));
        let slot_count = match rule {
            Rule::Sgd { momentum, .. } if momentum > 0.0 => 1,
            Rule::Sgd { .. } => 0,
            Rule::Adam { .. } => 2,
        };
        let slots = parameters
            .iter()
            .map(|(_, tensor)| {
                (0..slot_count)
                    .map(|_| tch::no_grad(|| tensor.zeros_like()))
                    .collect()
            })
            .collect();
        Self {
            rule,
            weight_decay,
            parameters,
            slots,
            steps: 0,
        }
    }

    /// Computes the gradients of `loss` and applies one update with learning rate `lr`.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) {
        for (_, parameter) in &mut self.parameters {
            parameter.zero_grad();
        }
        loss.backward();
        self.steps += 1;
        tch::no_grad(|| {
            for ((_, parameter), slots) in self.parameters.iter_mut().zip(&mut self.slots) {
                let gradient = parameter.grad();
                if !gradient.defined() {
                    continue;
                }
                update(
                    self.rule,
                    self.weight_decay,
                    self.steps,
                    lr,
                    parameter,
                    &gradient,
                    slots,
                );
            }
        });
    }

    /// Returns the state as named tensors: `optimizer.steps` and `optimizer.<variable>.<slot>`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = vec![("optimizer.steps".to_string(), Tensor::from(self.steps))];
        for ((name, _), slots) in self.parameters.iter().zip(&self.slots) {
            for (index, slot) in slots.iter().enumerate() {
                state.push((format!("optimizer.{name}.{index}"), slot.shallow_clone()));
            }
        }
        state
    }

    /// Restores the state written by [`Optimizer::state`].
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, source: &str) -> Result<()> {
        let missing = |name: &str| {
            Error::data(
                source,
                format!("optimizer state `{name}` is missing; the checkpoint was written with another optimizer"),
            )
        };
        self.steps = tensors
            .get("optimizer.steps")
            .ok_or_else(|| missing("optimizer.steps"))?
            .int64_value(&[]);
        for ((name, _), slots) in self.parameters.iter().zip(&mut self.slots) {
            for (index, slot) in slots.iter_mut().enumerate() {
                let key = format!("optimizer.{name}.{index}");
                let saved = tensors.get(&key).ok_or_else(|| missing(&key))?;
                if saved.size() != slot.size() {
                    return Err(missing(&key));
                }
                tch::no_grad(|| slot.copy_(saved));
            }
        }
        Ok(())
    }
}

/// Applies one update to `parameter` in place.
fn update(
    rule: Rule,
    weight_decay: f64,
    steps: i64,
    lr: f64,
    parameter: &mut Tensor,
    gradient: &Tensor,
    slots: &mut [Tensor],
) {
    match rule {
        Rule::Sgd { momentum, nesterov } => {
            let mut direction = if weight_decay != 0.0 {
                gradient + &*parameter * weight_decay
            } else {
                gradient.shallow_clone()
            };
            if let Some(buffer) = slots.first_mut() {
                // A zero buffer makes the first step's buffer equal the gradient, as
                // PyTorch's lazily created one does.
                let _ = buffer.g_mul_scalar_(momentum).g_add_(&direction);
                direction = if nesterov {
                    direction + &*buffer * momentum
                } else {
                    buffer.shallow_clone()
                };
            }
            let _ = parameter.g_add_(&(direction * -lr));
        }
        Rule::Adam { beta1, decoupled } => {
            let gradient = if weight_decay != 0.0 && !decoupled {
                gradient + &*parameter * weight_decay
            } else {
                gradient.shallow_clone()
            };
            if decoupled && weight_decay != 0.0 {
                let _ = parameter.g_mul_scalar_(1.0 - lr * weight_decay);
            }
            let (first, second) = slots.split_at_mut(1);
            let (first, second) = (&mut first[0], &mut second[0]);
            let _ = first.lerp_(&gradient, 1.0 - beta1);
            let _ = second
                .g_mul_scalar_(ADAM_BETA2)
                .g_add_(&(&gradient * &gradient * (1.0 - ADAM_BETA2)));
            let correction1 = 1.0 - beta1.powi(steps as i32);
            let correction2 = 1.0 - ADAM_BETA2.powi(steps as i32);
            let denominator = second.sqrt() / correction2.sqrt() + ADAM_EPS;
            let _ = parameter.g_add_(&(&*first / denominator * (-lr / correction1)));
        }
    }
}

/// Stochastic gradient descent with momentum (optionally Nesterov) and weight decay.
pub fn sgd(store: &nn::VarStore, train: &TrainSpec) -> Result<Optimizer> {
    let rule = Rule::Sgd {
        momentum: train.momentum,
        nesterov: train.nesterov,
    };
    Ok(Optimizer::new(store, rule, train.weight_decay))
}

/// Adam with L2 weight decay; `momentum` is used as beta1.
pub fn adam(store: &nn::VarStore, train: &TrainSpec) -> Result<Optimizer> {
    let rule = Rule::Adam {
        beta1: beta1(train),
        decoupled: false,
    };
    Ok(Optimizer::new(store, rule, train.weight_decay))
}

/// AdamW (decoupled weight decay); `momentum` is used as beta1.
pub fn adamw(store: &nn::VarStore, train: &TrainSpec) -> Result<Optimizer> {
    let rule = Rule::Adam {
        beta1: beta1(train),
        decoupled: true,
    };
    Ok(Optimizer::new(store, rule, train.weight_decay))
}

fn beta1(train: &TrainSpec) -> f64 {
    if train.momentum > 0.0 {
        train.momentum
    } else {
        0.9
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Runs three steps of `build` on f(w) = sum((w - 1)^2) from w = [0, 2, 4] and returns w.
    fn three_steps(
        build: fn(&nn::VarStore, &TrainSpec) -> Result<Optimizer>,
        train: &TrainSpec,
    ) -> Vec<f64> {
        let store = nn::VarStore::new(Device::Cpu);
        let weight = store
            .root()
            .var_copy("w", &Tensor::from_slice(&[0.0f32, 2.0, 4.0]));
        let mut optimizer = build(&store, train).unwrap();
        for _ in 0..3 {
            let loss = (&weight - 1.0).square().sum(Kind::Float);
            optimizer.backward_step(&loss, train.lr);
        }
        Vec::<f64>::try_from(weight.to_kind(Kind::Double)).unwrap()
    }

    fn close(actual: &[f64], expected: &[f64]) {
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-4, "{actual:?} != {expected:?}");
        }
    }

    // Expected values computed with torch 2.11's torch.optim on the same problem.
    #[test]
    fn sgd_with_momentum_and_weight_decay_matches_pytorch() {
        let train = TrainSpec {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov: false,
            ..TrainSpec::default()
        };
        close(&three_steps(sgd, &train), &[0.9371, 1.0535, 1.1699]);
    }

    #[test]
    fn nesterov_sgd_matches_pytorch() {
        let train = TrainSpec {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: true,
            ..TrainSpec::default()
        };
        close(&three_steps(sgd, &train), &[1.1084, 0.8916, 0.6749]);
    }

    #[test]
    fn adam_and_adamw_match_pytorch() {
        let train = TrainSpec {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.1,
            ..TrainSpec::default()
        };
        close(&three_steps(adam, &train), &[0.2983, 1.7015, 3.7004]);
        close(&three_steps(adamw, &train), &[0.2954, 1.6457, 3.5848]);
    }

    #[test]
    fn state_round_trips() {
        let train = TrainSpec {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            ..TrainSpec::default()
        };
        let store = nn::VarStore::new(Device::Cpu);
        let weight = store
            .root()
            .var_copy("w", &Tensor::from_slice(&[0.0f32, 2.0]));
        let mut optimizer = sgd(&store, &train).unwrap();
        optimizer.backward_step(&(&weight * 3.0).sum(Kind::Float), 0.1);
        let saved: HashMap<String, Tensor> = optimizer
            .state()
            .into_iter()
            .map(|(name, tensor)| (name, tensor.copy()))
            .collect();
        let mut restored = sgd(&store, &train).unwrap();
        restored.load_state(&saved, "test").unwrap();
        assert_eq!(restored.steps, 1);
        assert_eq!(
            Vec::<f32>::try_from(&restored.slots[0][0]).unwrap(),
            vec![3.0, 3.0]
        );
    }
}
