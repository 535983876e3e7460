//! diffusers' format for whole runs, in and out: a run exported as a pipeline directory
//! ([`export_run`]), a pipeline or `UNet2DModel` directory sampled from like a run
//! ([`crate::load_for_sampling`]), and a fresh run started from either's weights
//! (`[model] init_from`). The networks' own directories are `oxidiff_models`'
//! (`save_diffusers_unet`, `save_diffusers_autoencoder`); this adds the scheduler, the
//! pipeline around them and the run config they amount to. docs/diffusers.md has the user's
//! view.

mod export;
mod init_from;
mod pipeline;
mod scheduler;
mod text;

pub use export::{EXPORT_RECORD, ExportKind, Exported, export_run};
pub(crate) use pipeline::{
    find as find_diffusers_model, is_diffusers_dir, load as load_diffusers_model, not_a_checkpoint,
};
pub use scheduler::{
    SCHEDULER_CONFIG, diffusion_config_from_scheduler_json, scheduler_config_json,
    scheduler_sampler,
};
