//! `--prompt`, `--negative-prompt` and `--guidance` of the commands that edit images with a
//! text-to-image model (`inpaint`, `denoise`); `sample` has its own `--guidance`, shared with
//! `--class`.

use anyhow::{Result, bail};
use oxidiff_train::{LoadedModel, Prompt};

#[derive(clap::Args, Debug, Clone)]
pub struct PromptArgs {
    /// Text-to-image models: what the image should show (without it, such a model uses the
    /// empty prompt: its unconditional model).
    #[arg(long)]
    pub prompt: Option<String>,
    /// With --prompt: guide away from this prompt instead of the empty one.
    #[arg(long, requires = "prompt")]
    pub negative_prompt: Option<String>,
    /// With --prompt: the classifier-free guidance scale w, ε(∅) + w·(ε(c) − ε(∅)) (default:
    /// the run's `sample.guidance_scale`).
    #[arg(
        long,
        value_name = "W",
        requires = "prompt",
        allow_negative_numbers = true
    )]
    pub guidance: Option<f64>,
}

impl PromptArgs {
    /// The prompt asked for, with the run's guidance scale where none was given.
    pub fn prompt(&self, loaded: &LoadedModel) -> Result<Option<Prompt>> {
        let Some(prompt) = &self.prompt else {
            return Ok(None);
        };
        let guidance = self.guidance.unwrap_or(loaded.config.sample.guidance_scale);
        if !guidance.is_finite() {
            bail!("--guidance {guidance}: must be a finite number");
        }
        Ok(Some(Prompt {
            prompt: prompt.clone(),
            negative: self.negative_prompt.clone().unwrap_or_default(),
            guidance,
        }))
    }
}
