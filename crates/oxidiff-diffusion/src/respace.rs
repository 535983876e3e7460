//! Picking a shorter inference schedule out of the training timesteps.

use crate::{DiffusionConfig, DiffusionError, GaussianDiffusion, TimestepSpacing};

impl GaussianDiffusion {
    /// The `num_inference_steps` timesteps the samplers visit, in descending order:
    /// [`respace_timesteps`] by `config.timestep_spacing`, `leading` ones shifted by
    /// `config.steps_offset` ([`apply_steps_offset`]).
    ///
    /// # Errors
    ///
    /// [`DiffusionError::InvalidArgument`] when `num_inference_steps` is not in 1..=T, or the
    /// offset takes a timestep to T or beyond.
    pub fn inference_timesteps(
        &self,
        num_inference_steps: usize,
    ) -> Result<Vec<usize>, DiffusionError> {
        let timesteps = respace_timesteps(
            self.num_timesteps(),
            num_inference_steps,
            self.config.timestep_spacing,
        )?;
        apply_steps_offset(timesteps, &self.config)
    }

    /// ᾱ after the last DDIM or PNDM step: 1 with `config.set_alpha_to_one`, else ᾱ_0 (diffusers'
    /// `final_alpha_cumprod`).
    pub fn final_alpha_cumprod(&self) -> f64 {
        if self.config.set_alpha_to_one {
            1.0
        } else {
            self.schedule.alphas_cumprod[0]
        }
    }
}

/// `timesteps` picked with `config.timestep_spacing`, shifted by `config.steps_offset` when that
/// spacing is `leading`: diffusers' schedulers add `steps_offset` to leading timesteps only.
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] naming `steps_offset` when a shifted timestep reaches T.
pub(crate) fn apply_steps_offset(
    mut timesteps: Vec<usize>,
    config: &DiffusionConfig,
) -> Result<Vec<usize>, DiffusionError> {
    let offset = config.steps_offset;
    if offset == 0 || config.timestep_spacing != TimestepSpacing::Leading {
        return Ok(timesteps);
    }
    let total = config.num_train_timesteps;
    if let Some(&first) = timesteps.first()
        && first + offset >= total
    {
        return Err(DiffusionError::argument(
            "steps_offset",
            format!(
                "{offset} takes the leading timestep {first} to {}, beyond the {total} training \
                 timesteps: take fewer steps",
                first + offset
            ),
        ));
    }
    for t in &mut timesteps {
        *t += offset;
    }
    Ok(timesteps)
}

/// The `num_inference_steps` training timesteps a sampler visits, in descending order, exactly
/// as diffusers' `DDIMScheduler.set_timesteps` with `steps_offset = 0` (numpy's round half to
/// even included).
///
/// One deliberate difference: for `trailing`, numpy's `arange(T, 0, -T/n)` returns n + 1 values
/// for some (T, n) (111,398 pairs with T ≤ 2000, e.g. T = 1000, n = 61) because T/(T/n) rounds
/// above n; diffusers then yields a spurious final timestep −1. This returns the first n values,
/// which match diffusers exactly (checked for every 1 ≤ n ≤ T ≤ 2000).
///
/// # Errors
///
/// [`DiffusionError::InvalidArgument`] when `num_inference_steps` is 0 or larger than
/// `num_train_timesteps`.
pub fn respace_timesteps(
    num_train_timesteps: usize,
    num_inference_steps: usize,
    spacing: TimestepSpacing,
) -> Result<Vec<usize>, DiffusionError> {
    let (t, n) = (num_train_timesteps, num_inference_steps);
    if n == 0 || n > t {
        return Err(DiffusionError::argument(
            "num_inference_steps",
            format!("must be in 1..={t} (the number of training timesteps), got {n}"),
        ));
    }
    let timesteps: Vec<usize> = match spacing {
        // diffusers: (np.arange(0, n) * (T // n)).round()[::-1]
        TimestepSpacing::Leading => (0..n).rev().map(|i| i * (t / n)).collect(),
        // diffusers: np.round(np.arange(T, 0, -T / n)) - 1
        TimestepSpacing::Trailing => {
            let (start, ratio) = (t as f64, t as f64 / n as f64);
            // numpy's arange fills start + i·δ with δ = (start + step) − start, which can
            // differ from −ratio in the last bit; copying it keeps every rounding identical.
            let delta = (start - ratio) - start;
            (0..n)
                .map(|i| (start + i as f64 * delta).round_ties_even() as usize - 1)
                .collect()
        }
        // diffusers: np.linspace(0, T - 1, n).round()[::-1]; numpy gives [0] for n = 1
        TimestepSpacing::Linspace => {
            if n == 1 {
                vec![0]
            } else {
                let step = (t - 1) as f64 / (n - 1) as f64;
                (0..n)
                    .rev()
                    .map(|i| {
                        if i == n - 1 {
                            t - 1
                        } else {
                            (i as f64 * step).round_ties_even() as usize
                        }
                    })
                    .collect()
            }
        }
    };
    Ok(timesteps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_schedules() {
        use TimestepSpacing::*;
        assert_eq!(
            respace_timesteps(1000, 10, Leading).unwrap(),
            vec![900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
        );
        assert_eq!(
            respace_timesteps(1000, 10, Trailing).unwrap(),
            vec![999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
        );
        assert_eq!(
            respace_timesteps(1000, 10, Linspace).unwrap(),
            vec![999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
        );
        assert_eq!(respace_timesteps(5, 1, Trailing).unwrap(), vec![4]);
        assert_eq!(respace_timesteps(5, 1, Leading).unwrap(), vec![0]);
    }

    #[test]
    fn steps_offset_shifts_leading_timesteps_only() {
        let sd = |spacing| {
            GaussianDiffusion::new(DiffusionConfig {
                timestep_spacing: spacing,
                steps_offset: 1,
                ..DiffusionConfig::default()
            })
            .unwrap()
        };
        // Stable Diffusion 1.x's scheduler config: leading spacing with steps_offset = 1.
        let leading = sd(TimestepSpacing::Leading)
            .inference_timesteps(50)
            .unwrap();
        assert_eq!((leading[0], leading[1], leading[49]), (981, 961, 1));
        assert_eq!(
            sd(TimestepSpacing::Trailing)
                .inference_timesteps(10)
                .unwrap(),
            respace_timesteps(1000, 10, TimestepSpacing::Trailing).unwrap()
        );
        // 1000 steps of 1000 would need t = 1000.
        assert!(matches!(
            sd(TimestepSpacing::Leading).inference_timesteps(1000),
            Err(DiffusionError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn rejects_bad_step_counts() {
        for n in [0, 11] {
            assert!(matches!(
                respace_timesteps(10, n, TimestepSpacing::Leading),
                Err(DiffusionError::InvalidArgument { .. })
            ));
        }
    }
}
