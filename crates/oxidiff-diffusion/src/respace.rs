//! Picking a shorter inference schedule out of the training timesteps.

use crate::{DiffusionError, TimestepSpacing};

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
    fn rejects_bad_step_counts() {
        for n in [0, 11] {
            assert!(matches!(
                respace_timesteps(10, n, TimestepSpacing::Leading),
                Err(DiffusionError::InvalidArgument { .. })
            ));
        }
    }
}
