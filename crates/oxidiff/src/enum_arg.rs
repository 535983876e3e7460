//! Command-line flags that take a library enum: a newtype per enum implements clap's
//! `ValueEnum` from the enum's one name table (`named_enum!` in the library crates), so the
//! names a flag accepts, its `--help` listing (each value with its doc comment) and the error
//! for a bad value (which names the flag and lists the valid names) are those of the config.

use oxidiff_diffusion::TimestepSpacing;
use oxidiff_models::Preset;
use oxidiff_train::eval::EvalSplit;
use oxidiff_train::{AutoencoderPreset, SamplerKind};

/// Declares `pub struct $Arg(pub $Enum)` with clap's `ValueEnum` over `$Enum::ALL`, named by
/// `$Enum::name` and described by `$Enum::description`.
macro_rules! enum_arg {
    ($(#[$meta:meta])* $Arg:ident($Enum:ty)) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $Arg(pub $Enum);

        impl clap::ValueEnum for $Arg {
            fn value_variants<'a>() -> &'a [Self] {
                static VARIANTS: std::sync::OnceLock<Vec<$Arg>> = std::sync::OnceLock::new();
                VARIANTS.get_or_init(|| <$Enum>::ALL.into_iter().map($Arg).collect())
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.0.name()).help(self.0.description()))
            }
        }

        impl From<$Arg> for $Enum {
            fn from(arg: $Arg) -> Self {
                arg.0
            }
        }
    };
}

enum_arg! {
    /// `--sampler`: a [`SamplerKind`] by its config name.
    SamplerArg(SamplerKind)
}

enum_arg! {
    /// `--spacing`: which training timesteps a sampler with fewer steps visits (diffusers'
    /// `timestep_spacing`), chosen at sampling time over the run's `diffusion.timestep_spacing`.
    SpacingArg(TimestepSpacing)
}

enum_arg! {
    /// `--preset`: a [`Preset`] by its config name.
    PresetArg(Preset)
}

enum_arg! {
    /// `oxidiff eval --split`: an [`EvalSplit`] by its name.
    EvalSplitArg(EvalSplit)
}

enum_arg! {
    /// `oxidiff bench --autoencoder`: an [`AutoencoderPreset`] by its config name.
    AutoencoderPresetArg(AutoencoderPreset)
}
