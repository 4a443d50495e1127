//! AdamW whose step is one pass over memory per parameter: [`FusedAdamW`].

use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::prelude::*;

use crate::kernels::{adamw_step, AdamwStep};

/// AdamW (decoupled weight decay, Loshchilov & Hutter) with the arithmetic of Burn's
/// `burn::optim::AdamW`, its step run by [`crate::kernels::adamw_step`]: on the CPU (flex,
/// float32) the parameter and both moments are updated in place in one parallel pass,
/// bit-identical to Burn's fourteen one-thread tensor operations; on every other backend the
/// same operators as Burn's. The state is Burn's [`AdamWState`], so optimiser records saved
/// with either optimiser load into the other.
///
/// Built by [`super::adamw_for`]; `Clone` shares nothing mutable.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FusedAdamW {
    /// β₁, the first moment's decay.
    pub beta_1: f32,
    /// β₂, the second moment's decay.
    pub beta_2: f32,
    /// ε, added to the root of the second moment.
    pub epsilon: f32,
    /// λ, the decoupled weight decay (the parameter is scaled by `1 − lr·λ` each step).
    pub weight_decay: f32,
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (time, m, v) = match state {
            Some(state) => {
                let momentum = state.momentum;
                (momentum.time + 1, momentum.moment_1, momentum.moment_2)
            }
            None => {
                // Zero moments make the first step's update `g·(1 − β)`, bit for bit what
                // Burn's first step computes.
                let zeros = || Tensor::zeros(grad.shape(), &grad.device());
                (1, zeros(), zeros())
            }
        };
        let step = AdamwStep::new(
            self.beta_1,
            self.beta_2,
            self.epsilon,
            self.weight_decay,
            lr,
            time,
        );
        let (tensor, m, v) = adamw_step(tensor, grad, m, v, step);
        let momentum = AdaptiveMomentumState::new(time, m, v);
        (tensor, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::AdamWConfig;

    fn ramp(n: usize, a: usize, b: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * a % 97) as f32 - 48.0) / b).collect()
    }

    /// Three steps of [`FusedAdamW`] and of Burn's `AdamW` from the same start, on flex (the
    /// fused pass) and with the kernels off (the fallback): the same bits.
    #[test]
    fn steps_bit_identical_to_burns_adamw() {
        let _lock = crate::kernels::isa::tests_lock(); // set_enabled is process-wide
        let device = Device::flex();
        let shape = [37, 29];
        let n = 37 * 29;
        let start = Tensor::<2>::from_data(TensorData::new(ramp(n, 17, 29.0), shape), &device);
        let fused = FusedAdamW {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.05,
        };
        let burn = AdamWConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.999)
            .with_epsilon(1e-8)
            .with_weight_decay(0.05)
            .build();
        for kernels_on in [true, false] {
            crate::kernels::set_enabled(kernels_on);
            let (mut a, mut b) = (start.clone(), start.clone());
            let (mut sa, mut sb) = (None, None);
            for t in 0..3 {
                let g = Tensor::<2>::from_data(
                    TensorData::new(ramp(n, 31 + 7 * t, 13.0), shape),
                    &device,
                );
                let lr = 1e-3 * (t + 1) as f64;
                (a, sa) = fused.step(lr, a, g.clone(), sa);
                (b, sb) = burn.step(lr, b, g, sb);
            }
            crate::kernels::set_enabled(true);
            a.into_data().assert_eq(&b.into_data(), true);
            let (sa, sb) = (sa.expect("state").momentum, sb.expect("state").momentum);
            assert_eq!(sa.time, sb.time);
            sa.moment_1
                .into_data()
                .assert_eq(&sb.moment_1.into_data(), true);
            sa.moment_2
                .into_data()
                .assert_eq(&sb.moment_2.into_data(), true);
        }
    }
}
