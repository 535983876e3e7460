//! The caption an image gets at one training step: one of its captions drawn, maybe dropped to
//! the empty prompt (for classifier-free guidance), maybe with its tags shuffled — each choice a
//! pure function of one seed, like the crops of [`crate::crop_into`], so a resumed run draws
//! the captions an uninterrupted one would.
//!
//! The order of the draws (dropout, then which caption, then the shuffle) is part of a run's
//! reproducibility: changing it changes every caption a seed gives.

use crate::seeds::SplitMix64;

/// How captions are varied per step: `train.caption_dropout`, `[data]`'s `shuffle_caption` and
/// `keep_tokens`, in kohya's sd-scripts' sense.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CaptionOptions {
    /// Probability that an image is shown with the empty prompt instead of its caption.
    pub dropout_rate: f64,
    /// Shuffle the comma-separated tags of the drawn caption.
    pub shuffle: bool,
    /// With `shuffle`: the first this many tags stay where they are (a trigger word, a
    /// subject), the rest are shuffled.
    pub keep_tokens: usize,
}

/// The caption for one image at one step, from its `captions` (empty: the image has none, so
/// the empty prompt), drawn with `seed`.
pub fn draw_caption<S: AsRef<str>>(captions: &[S], options: &CaptionOptions, seed: u64) -> String {
    let mut rng = SplitMix64::new(seed);
    if drop_caption(options.dropout_rate, &mut rng) || captions.is_empty() {
        return String::new();
    }
    let caption = pick_caption(captions, &mut rng);
    if options.shuffle {
        shuffle_tags(caption, options.keep_tokens, &mut rng)
    } else {
        caption.to_string()
    }
}

/// Whether this draw replaces the caption by the empty prompt: true with probability `rate`
/// (one draw, always taken, so later draws do not depend on `rate`).
pub fn drop_caption(rate: f64, rng: &mut SplitMix64) -> bool {
    // 53 random bits: a uniform double in [0, 1).
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    u < rate
}

/// One of `captions`, uniformly (the first one, without a draw, when there is only one).
///
/// # Panics
/// If `captions` is empty.
pub fn pick_caption<'a, S: AsRef<str>>(captions: &'a [S], rng: &mut SplitMix64) -> &'a str {
    let i = match captions.len() {
        1 => 0,
        n => rng.below(n as u64) as usize,
    };
    captions[i].as_ref()
}

/// kohya's `shuffle_caption`: the caption split at commas into tags (blanks around each
/// trimmed, empty tags dropped), the tags after the first `keep_tokens` shuffled, joined again
/// with `", "`.
pub fn shuffle_tags(caption: &str, keep_tokens: usize, rng: &mut SplitMix64) -> String {
    let mut tags: Vec<&str> = caption
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let keep = keep_tokens.min(tags.len());
    let flexible = &mut tags[keep..];
    // Fisher–Yates.
    for i in (1..flexible.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        flexible.swap(i, j);
    }
    tags.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_keeps_the_tags_and_the_first_k() {
        let caption = "sks dog, sitting , grass,, sunny, outdoors";
        let mut rng = SplitMix64::new(3);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..200 {
            let s = shuffle_tags(caption, 1, &mut rng);
            let tags: Vec<&str> = s.split(", ").collect();
            assert_eq!(tags[0], "sks dog");
            let mut sorted = tags.clone();
            sorted.sort();
            assert_eq!(sorted, ["grass", "outdoors", "sitting", "sks dog", "sunny"]);
            orders.insert(s);
        }
        assert_eq!(orders.len(), 24, "all 4! orders of the free tags appear");
        assert_eq!(shuffle_tags("a, b", 5, &mut rng), "a, b");
        assert_eq!(shuffle_tags("", 0, &mut rng), "");
    }
}
