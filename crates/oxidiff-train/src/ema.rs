//! Exponential moving average of the weights (Polyak averaging), which diffusion models sample
//! from by default.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Collects every float parameter, flattened, in visiting order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

/// `ema ← decay·ema + (1 − decay)·online`, parameter by parameter in visiting order (both
/// modules come from the same config, so the orders agree).
struct Blend {
    online: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let online = self
            .online
            .next()
            .expect("the EMA and online models have the same parameters");
        let decay = self.decay;
        param.map(|ema| {
            let shape = ema.shape();
            ema * decay + online.reshape(shape) * (1.0 - decay)
        })
    }
}

/// The EMA weights (without autodiff) of a model `M` and how many updates they have seen.
#[derive(Clone)]
pub struct Ema<M> {
    pub model: M,
    pub updates: u64,
    pub max_decay: f64,
    pub warmup: bool,
}

impl<M: Module> Ema<M> {
    /// Starts from a copy of the online weights (without autodiff).
    pub fn new(online: &M, max_decay: f64, warmup: bool) -> Self {
        Self {
            model: online.valid(),
            updates: 0,
            max_decay,
            warmup,
        }
    }

    /// The decay used for the next update: with warm-up, min(max, (1 + n)/(10 + n)) as in
    /// diffusers' EMAModel and ADM, so early EMA weights are not dominated by the random init.
    pub fn decay(&self) -> f64 {
        if self.warmup {
            let n = self.updates as f64;
            self.max_decay.min((1.0 + n) / (10.0 + n))
        } else {
            self.max_decay
        }
    }

    /// Folds the current online weights into the average.
    pub fn update(&mut self, online: &M) {
        let mut collect = Collect(Vec::new());
        online.valid().visit(&mut collect);
        let mut blend = Blend {
            online: collect.0.into_iter(),
            decay: self.decay(),
        };
        self.model = self.model.clone().map(&mut blend);
        self.updates = self.updates.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::Device;
    use oxidiff_models::{ModelConfig, UNet};

    use super::*;

    fn first_weight(model: &UNet) -> Vec<f32> {
        model
            .conv_in
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn warmup_decay_follows_the_adm_formula() {
        let model = ModelConfig::default()
            .resolve()
            .unwrap()
            .init(&Device::flex());
        let mut ema = Ema::new(&model, 0.999, true);
        assert!((ema.decay() - 0.1).abs() < 1e-12, "(1 + 0)/(10 + 0)");
        ema.updates = 90;
        assert!((ema.decay() - 91.0 / 100.0).abs() < 1e-12);
        ema.updates = 100_000;
        assert_eq!(ema.decay(), 0.999);
        let fixed = Ema::new(&model, 0.99, false);
        assert_eq!(fixed.decay(), 0.99);
    }

    #[test]
    fn update_blends_every_parameter() {
        let device = Device::flex();
        let config = ModelConfig::default().resolve().unwrap();
        let a = config.init(&device);
        let b = config.init(&device);
        let mut ema = Ema::new(&a, 0.75, false);
        ema.update(&b);
        let (wa, wb, we) = (first_weight(&a), first_weight(&b), first_weight(&ema.model));
        for ((x, y), e) in wa.iter().zip(&wb).zip(&we) {
            assert!((e - (0.75 * x + 0.25 * y)).abs() < 1e-6);
        }
        assert_eq!(ema.updates, 1);
        assert_eq!(ema.model.num_params(), a.num_params());
    }
}
