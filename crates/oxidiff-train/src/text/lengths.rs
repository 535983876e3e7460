//! Caption lengths in tokens, for the data report and `oxidiff data inspect`: under the run's
//! tokenizer, or CLIP's (Stable Diffusion's 77-token context) when the run names no encoder.

use oxidiff_data::{Dataset, TokenLengths};
use oxidiff_models::text::TextTokenizer;

use crate::config::RunConfig;
use crate::error::TrainError;
use crate::text::TextSource;

/// Truncated captions a report quotes.
const EXAMPLES: usize = 5;

/// The token lengths of `data`'s distinct captions; `None` when it has no captions.
///
/// # Errors
/// The run's tokenizer cannot be read, or refuses a caption.
pub fn token_lengths(
    config: &RunConfig,
    data: &Dataset,
) -> Result<Option<TokenLengths>, TrainError> {
    if data.captions.is_none() {
        return Ok(None);
    }
    let (tokenizer, name) = match config.text_source()? {
        Some(source) => {
            let name = match &source {
                TextSource::Pretrained(p) => p.tokenizer_dir.display().to_string(),
                TextSource::Scratch(_) => "CLIP BPE (assets/clip)".to_string(),
            };
            (source.tokenizer(config.text.max_length)?, name)
        }
        None => (
            TextTokenizer::clip()?,
            "CLIP BPE (no text.encoder set)".to_string(),
        ),
    };
    // The tokenizer's refusal surfaces after the measurement, which cannot return early.
    let mut refused = None;
    let lengths = TokenLengths::measure(
        data,
        &name,
        tokenizer.context_length(),
        |caption| match tokenizer.count_tokens(caption) {
            Ok(n) => n,
            Err(e) => {
                refused.get_or_insert(e);
                0
            }
        },
        EXAMPLES,
    );
    match refused {
        Some(e) => Err(e.into()),
        None => Ok(Some(lengths)),
    }
}
