//! Samplers of the training timestep t: uniform, or importance sampling by the loss's second
//! moment (Nichol & Dhariwal 2021, §3.3), which lowers the variance of the bound's gradient
//! enough to train on L_vlb directly.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::noise::sample_timesteps;

crate::named_enum! {
    /// How training draws t.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum TimestepSampling {
        /// t ~ U{0, …, T − 1} (Ho et al. 2020, Algorithm 1).
        #[default]
        Uniform = "uniform",
        /// p_t ∝ √E\[L_t²\] over the last [`HISTORY_PER_T`] losses seen at each t, uniform until
        /// every t has that many; each sample's loss is weighted by 1 / (T p_t) so the objective's
        /// expectation is unchanged.
        LossSecondMoment = "loss-second-moment",
    }
}

/// Losses remembered per timestep (improved-diffusion keeps 10).
pub const HISTORY_PER_T: usize = 10;

/// Probability mass spread uniformly over all t even when warmed up, so that no t starves
/// (improved-diffusion's `uniform_prob`).
const UNIFORM_PROB: f64 = 0.001;

/// The recent losses at every timestep, for [`TimestepSampling::LossSecondMoment`]. Part of a
/// checkpoint: a resumed run must draw the same timesteps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossHistory {
    /// `[T][≤ HISTORY_PER_T]`, oldest first.
    pub losses: Vec<Vec<f64>>,
}

/// Timesteps for one batch and the weight each sample's loss gets.
#[derive(Debug, Clone, PartialEq)]
pub struct TimestepDraw {
    /// `[B]`
    pub t: Vec<usize>,
    /// `[B]`: 1 / (T p_t); all 1 for uniform draws.
    pub weights: Vec<f64>,
}

impl LossHistory {
    pub fn new(num_timesteps: usize) -> Self {
        Self {
            losses: vec![Vec::with_capacity(HISTORY_PER_T); num_timesteps],
        }
    }

    /// True once every timestep has [`HISTORY_PER_T`] losses.
    pub fn warmed_up(&self) -> bool {
        self.losses.iter().all(|h| h.len() == HISTORY_PER_T)
    }

    /// Records the loss of each sample at its timestep, dropping the oldest beyond the history.
    /// Non-finite losses are ignored (they would poison p_t for good).
    ///
    /// # Shapes
    /// - `t`, `losses`: `[B]`
    pub fn update(&mut self, t: &[usize], losses: &[f64]) {
        for (&ti, &loss) in t.iter().zip(losses) {
            let Some(history) = self.losses.get_mut(ti) else {
                continue;
            };
            if !loss.is_finite() {
                continue;
            }
            if history.len() == HISTORY_PER_T {
                history.remove(0);
            }
            history.push(loss);
        }
    }

    /// p_t for every t: uniform until warmed up, then ∝ √(mean of the squared losses), mixed with
    /// a little uniform mass.
    ///
    /// # Shapes
    /// - returns `[T]`, summing to 1
    pub fn probabilities(&self) -> Vec<f64> {
        let n = self.losses.len();
        let uniform = 1.0 / n as f64;
        if !self.warmed_up() {
            return vec![uniform; n];
        }
        // Nichol & Dhariwal 2021, eq. 18: p_t ∝ √E[L_t²]
        let rms: Vec<f64> = self
            .losses
            .iter()
            .map(|h| (h.iter().map(|l| l * l).sum::<f64>() / h.len() as f64).sqrt())
            .collect();
        let total: f64 = rms.iter().sum();
        if !(total.is_finite() && total > 0.0) {
            return vec![uniform; n];
        }
        rms.iter()
            .map(|r| r / total * (1.0 - UNIFORM_PROB) + UNIFORM_PROB * uniform)
            .collect()
    }
}

/// Draws `batch` timesteps out of `num_timesteps` per `sampling`; `history` is required for
/// [`TimestepSampling::LossSecondMoment`] (without one it draws uniformly). Uniform draws take
/// exactly the random numbers [`sample_timesteps`] takes, so runs from before importance
/// sampling existed resume unchanged.
pub fn draw_timesteps(
    sampling: TimestepSampling,
    history: Option<&LossHistory>,
    rng: &mut impl Rng,
    batch: usize,
    num_timesteps: usize,
) -> TimestepDraw {
    let history = match (sampling, history) {
        (TimestepSampling::LossSecondMoment, Some(h)) => h,
        _ => {
            return TimestepDraw {
                t: sample_timesteps(rng, batch, num_timesteps),
                weights: vec![1.0; batch],
            };
        }
    };
    let p = history.probabilities();
    let mut cumulative = Vec::with_capacity(p.len());
    let mut acc = 0.0;
    for &pi in &p {
        acc += pi;
        cumulative.push(acc);
    }
    let mut t = Vec::with_capacity(batch);
    let mut weights = Vec::with_capacity(batch);
    for _ in 0..batch {
        let u = rng.random::<f64>() * acc;
        let ti = cumulative
            .partition_point(|&c| c <= u)
            .min(num_timesteps - 1);
        t.push(ti);
        // Importance weight 1/(T p_t) keeps E[w L_t] equal to the uniform mean of L_t.
        weights.push(1.0 / (num_timesteps as f64 * p[ti]));
    }
    TimestepDraw { t, weights }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn uniform_until_warm_then_proportional_to_rms_loss() {
        let mut h = LossHistory::new(4);
        assert_eq!(h.probabilities(), vec![0.25; 4]);
        for _ in 0..HISTORY_PER_T {
            h.update(&[0, 1, 2], &[1.0, 2.0, 3.0]);
        }
        assert!(!h.warmed_up());
        for k in 0..HISTORY_PER_T + 3 {
            // Old values fall out: only the last 10 (all 4.0) stay at t = 3.
            h.update(&[3], &[if k < 3 { 100.0 } else { 4.0 }]);
        }
        assert!(h.warmed_up());
        assert_eq!(h.losses[3], vec![4.0; HISTORY_PER_T]);
        let p = h.probabilities();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let expected = |r: f64| r / 10.0 * (1.0 - UNIFORM_PROB) + UNIFORM_PROB / 4.0;
        for (ti, r) in [1.0, 2.0, 3.0, 4.0].into_iter().enumerate() {
            assert!((p[ti] - expected(r)).abs() < 1e-12, "{p:?}");
        }
        h.update(&[2, 9], &[f64::NAN, 1.0]);
        assert_eq!(h.losses[2].len(), HISTORY_PER_T);
    }

    #[test]
    fn importance_draws_follow_p_and_weights_undo_it() {
        let mut h = LossHistory::new(3);
        for _ in 0..HISTORY_PER_T {
            h.update(&[0, 1, 2], &[1.0, 1.0, 8.0]);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let draw = draw_timesteps(
            TimestepSampling::LossSecondMoment,
            Some(&h),
            &mut rng,
            20_000,
            3,
        );
        let p = h.probabilities();
        let share = draw.t.iter().filter(|&&t| t == 2).count() as f64 / 20_000.0;
        assert!((share - p[2]).abs() < 0.01, "{share} vs {}", p[2]);
        // E[w] = Σ p_t / (T p_t) = 1.
        let mean_w = draw.weights.iter().sum::<f64>() / 20_000.0;
        assert!((mean_w - 1.0).abs() < 0.03, "{mean_w}");
        // Uniform draws are the plain sampler's.
        let mut a = ChaCha8Rng::seed_from_u64(9);
        let mut b = ChaCha8Rng::seed_from_u64(9);
        let uniform = draw_timesteps(TimestepSampling::Uniform, Some(&h), &mut a, 8, 3);
        assert_eq!(uniform.t, sample_timesteps(&mut b, 8, 3));
        assert_eq!(uniform.weights, vec![1.0; 8]);
    }
}
