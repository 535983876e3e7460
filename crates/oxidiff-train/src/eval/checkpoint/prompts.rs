//! Prompt following of a text-to-image model whose data has classes: one sample per evaluated
//! image, prompted with one of that image's captions and labelled by the run's FD-oxidiff
//! classifier; the score is how often the label is the class of the prompt's image, against
//! how often it would be for a random prompt. A model that ignores its prompts scores the
//! chance rate; one whose samples pass for real images of their class scores the classifier's
//! accuracy on real images.

use std::collections::HashSet;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Evaluated, Features, Measuring};
use crate::TrainError;
use crate::config::SampleConfig;
use crate::eval::features::classify;
use crate::eval::image_rng;
use crate::generate::{LoadedModel, generate};
use oxidiff_data::Dataset;

/// Keeps the draw of each image's prompt apart from the other per-image draws.
const PROMPT_DRAW: u64 = 200;

/// How often samples land in their prompt's class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptFollowing {
    pub guidance: f64,
    /// One per evaluated image with a caption.
    pub samples: usize,
    /// Share of samples the classifier puts in the class of the image whose caption prompted
    /// them.
    pub rate: f64,
    /// The rate for random prompts: the same samples against the class of a prompt drawn at
    /// random from the evaluated ones, Σ_c p̂(c)·q(c) with p̂ the predicted and q the prompts'
    /// class frequencies.
    pub chance: f64,
    /// Samples whose prompt is in no training image's captions.
    pub unseen_prompts: usize,
    /// The rate over those samples (`None` when there are none).
    pub unseen_rate: Option<f64>,
    /// The classifier's accuracy on the evaluated real images: the rate of samples that pass
    /// for real images of their class.
    pub classifier_accuracy: f64,
    pub per_class: Vec<ClassFollowing>,
}

/// Prompt following within one class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassFollowing {
    pub class: String,
    /// Samples prompted with a caption of an image of this class.
    pub samples: usize,
    /// Of those, how many the classifier puts in this class.
    pub right: usize,
}

/// What [`measure`] needs besides the model.
pub(super) struct PromptTask<'a> {
    pub evaluated: &'a Evaluated,
    /// Every caption of every training image.
    pub training_captions: &'a HashSet<String>,
    pub features: &'a Features,
    pub sample: &'a SampleConfig,
    pub guidance: f64,
}

fn no_labels() -> TrainError {
    TrainError::Eval {
        message: "prompt following needs class labels to check samples against (e.g. \
                  data.folder_labels = \"subfolders\" over a folder per class); this run's \
                  images have one class"
            .into(),
    }
}

fn no_text() -> TrainError {
    TrainError::Eval {
        message: "prompt following needs a text-to-image model (a run with text.encoder)".into(),
    }
}

/// Refuses prompt following, before any work, for a model without text or data without
/// classes.
pub(super) fn check_possible(loaded: &LoadedModel, data: &Dataset) -> Result<(), TrainError> {
    if loaded.text.is_none() {
        return Err(no_text());
    }
    if data.num_classes < 2 {
        return Err(no_labels());
    }
    Ok(())
}

/// Draws a sample per evaluated image with a caption (one of its captions, drawn by the
/// evaluation seed), classifies them and scores them; progress as `(done, total)`.
///
/// # Errors
/// A model without text or a classifier, no captioned image, a sampling error.
pub(super) fn measure(
    m: &Measuring,
    task: &PromptTask,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PromptFollowing, TrainError> {
    let Some(classifier_accuracy) = task.features.accuracy else {
        return Err(no_labels());
    };
    let data = &task.evaluated.data;
    let mut prompts = Vec::new();
    let mut classes = Vec::new();
    for (k, &i) in task.evaluated.indices.iter().enumerate() {
        let captions = data.captions_of(i);
        let captions: Vec<&String> = captions.iter().filter(|c| !c.is_empty()).collect();
        if captions.is_empty() {
            continue;
        }
        let pick = image_rng(m.c.seed, k, PROMPT_DRAW).random_range(0..captions.len());
        prompts.push(captions[pick].clone());
        classes.push(data.labels[i]);
    }
    if prompts.is_empty() {
        return Err(TrainError::Eval {
            message: format!(
                "prompt following: none of the {} evaluated images has a caption",
                task.evaluated.indices.len()
            ),
        });
    }

    let [c, s, _] = m.model_shape;
    let batch = m.c.batch;
    let mut predicted = Vec::with_capacity(prompts.len());
    for (chunk_no, chunk) in prompts.chunks(batch).enumerate() {
        let Some(model) = m
            .loaded
            .prompts_guidance(chunk, "", task.guidance, m.c.device)?
        else {
            return Err(no_text());
        };
        let first = chunk_no * batch;
        let latents = generate(
            &model,
            &m.loaded.diffusion,
            task.sample,
            [chunk.len(), c, s, s],
            m.c.seed.wrapping_add(first as u64 + 1),
            m.c.device,
            &mut |_, _| {},
        )?;
        let images = m.loaded.to_images(latents).clamp(-1.0, 1.0);
        predicted.extend(classify(&task.features.net, images, batch));
        progress(predicted.len(), prompts.len());
    }
    Ok(score(
        &predicted,
        &classes,
        &prompts,
        task.training_captions,
        &data.class_names,
        task.guidance,
        classifier_accuracy,
    ))
}

/// The numbers of [`PromptFollowing`] from each sample's predicted class, its prompt's class
/// and its prompt.
fn score(
    predicted: &[usize],
    classes: &[usize],
    prompts: &[String],
    training_captions: &HashSet<String>,
    class_names: &[String],
    guidance: f64,
    classifier_accuracy: f64,
) -> PromptFollowing {
    let n = predicted.len();
    let rate_of = |picked: &[usize]| {
        let right = picked
            .iter()
            .filter(|&&k| predicted[k] == classes[k])
            .count();
        right as f64 / picked.len().max(1) as f64
    };
    let all: Vec<usize> = (0..n).collect();
    let unseen: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&k| !training_captions.contains(&prompts[k]))
        .collect();
    let num_classes = class_names.len();
    let frequency = |labels: &[usize]| {
        let mut f = vec![0.0f64; num_classes];
        for &l in labels {
            if l < num_classes {
                f[l] += 1.0 / n as f64;
            }
        }
        f
    };
    let chance = frequency(predicted)
        .iter()
        .zip(frequency(classes))
        .map(|(p, q)| p * q)
        .sum();
    let per_class = class_names
        .iter()
        .enumerate()
        .map(|(class, name)| {
            let of_class: Vec<usize> = all
                .iter()
                .copied()
                .filter(|&k| classes[k] == class)
                .collect();
            ClassFollowing {
                class: name.clone(),
                samples: of_class.len(),
                right: of_class.iter().filter(|&&k| predicted[k] == class).count(),
            }
        })
        .filter(|c| c.samples > 0)
        .collect();
    PromptFollowing {
        guidance,
        samples: n,
        rate: rate_of(&all),
        chance,
        unseen_prompts: unseen.len(),
        unseen_rate: (!unseen.is_empty()).then(|| rate_of(&unseen)),
        classifier_accuracy,
        per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_chance_and_unseen_prompts() {
        let names: Vec<String> = ["cat", "dog", "fish"].map(String::from).to_vec();
        let prompts: Vec<String> = ["a cat", "a dog", "a new dog", "a fish"]
            .map(String::from)
            .to_vec();
        let seen: HashSet<String> = ["a cat", "a dog", "a fish"].map(String::from).into();
        // Prompted classes 0, 1, 1, 2; predicted 0, 1, 0, 0.
        let s = score(
            &[0, 1, 0, 0],
            &[0, 1, 1, 2],
            &prompts,
            &seen,
            &names,
            3.0,
            0.9,
        );
        assert_eq!(s.samples, 4);
        assert!((s.rate - 0.5).abs() < 1e-12);
        // p̂ = (3/4, 1/4, 0), q = (1/4, 2/4, 1/4): 3/16 + 2/16.
        assert!((s.chance - 5.0 / 16.0).abs() < 1e-12, "{}", s.chance);
        assert_eq!(s.unseen_prompts, 1);
        assert_eq!(s.unseen_rate, Some(0.0));
        let dog = &s.per_class[1];
        assert_eq!((dog.class.as_str(), dog.samples, dog.right), ("dog", 2, 1));
    }

    #[test]
    fn a_model_ignoring_prompts_scores_about_chance() {
        // Predictions independent of the prompts' classes: the rate is near Σ p̂·q.
        let names: Vec<String> = (0..4).map(|c| c.to_string()).collect();
        let n = 4000;
        let classes: Vec<usize> = (0..n).map(|k| k % 4).collect();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
        let predicted: Vec<usize> = (0..n).map(|_| rng.random_range(0..4)).collect();
        let prompts: Vec<String> = (0..n).map(|k| k.to_string()).collect();
        let s = score(
            &predicted,
            &classes,
            &prompts,
            &HashSet::new(),
            &names,
            1.0,
            1.0,
        );
        assert!(
            (s.rate - s.chance).abs() < 0.02,
            "{} vs {}",
            s.rate,
            s.chance
        );
        assert_eq!(s.unseen_prompts, n);
    }
}
