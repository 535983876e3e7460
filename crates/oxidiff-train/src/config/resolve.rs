//! What a run config resolves to once the files it names are read: the UNet it trains, its
//! latent run's autoencoder and sizes, its text encoder.

use oxidiff_diffusion::VarianceType;
use oxidiff_models::UNetConfig;

use super::RunConfig;
use crate::error::TrainError;
use crate::latent::{FirstStage, LatentSizes};
use crate::text::TextSource;

impl RunConfig {
    /// The network this run trains: the model section resolved, with twice the output channels
    /// when the diffusion learns its variance.
    /// In a latent run, the UNet's `image_size` and `in_channels` are the latents' (see
    /// [`FirstStage::sizes`]).
    pub fn unet(&self) -> Result<UNetConfig, TrainError> {
        let first_stage = self.first_stage()?;
        let text_source = self.text_source()?;
        self.unet_for(first_stage.as_ref(), text_source.as_ref())
    }

    /// [`unet`](Self::unet) from this run's first stage and text encoder already resolved
    /// ([`first_stage`](Self::first_stage), [`text_source`](Self::text_source)), for a caller
    /// that needs them too and so reads their files once.
    pub fn unet_for(
        &self,
        first_stage: Option<&FirstStage>,
        text_source: Option<&TextSource>,
    ) -> Result<UNetConfig, TrainError> {
        let mut model = self.model.clone();
        if let Some(first) = first_stage {
            let sizes = first.sizes(self)?;
            model.image_size = Some(sizes.latent_size);
            model.in_channels = Some(sizes.latent_channels);
        }
        let mut unet = model.resolve()?;
        if let Some(source) = text_source {
            unet.cross_attention_dim = Some(source.hidden_size());
        }
        unet.out_channels *= match self.diffusion.variance_type {
            VarianceType::Fixed => 1,
            VarianceType::Learned => 2,
        };
        Ok(unet)
    }

    /// The autoencoder of a latent run (`latent.autoencoder`), read from its config files;
    /// `None` for a pixel-space run.
    pub fn first_stage(&self) -> Result<Option<FirstStage>, TrainError> {
        self.latent
            .autoencoder
            .as_deref()
            .map(FirstStage::resolve)
            .transpose()
    }

    /// A text-to-image run's text encoder (`text.encoder`), found (or sized) and its width
    /// read; `None` for a run without text.
    pub fn text_source(&self) -> Result<Option<TextSource>, TrainError> {
        TextSource::of_section(&self.text)
    }

    /// The image and latent sizes of a latent run; `None` for a pixel-space run.
    pub fn latent_sizes(&self) -> Result<Option<LatentSizes>, TrainError> {
        self.first_stage()?
            .map(|first| first.sizes(self))
            .transpose()
    }
}
