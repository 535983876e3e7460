//! The held-out validation split: which images the model never trains on.
//!
//! Deterministic and stable: an image goes to validation by the rank of a seeded hash of its
//! *key* (its path relative to the source, or its index for array sources) within its class, not
//! by its position in a listing. So the split depends only on (keys, labels, seed, fraction), is
//! stratified by label, and adding a few files to a folder moves only those files' places. It is
//! saved with the run (`split.json`) and reused on resume, so evaluation always sees exactly the
//! images training never did.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::seeds::{GAMMA, mix64};

/// Indices into a dataset: the images to train on and the held-out ones, each ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

/// What a run saves as `split.json`: enough to rebuild the same split from the same source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    /// The fraction asked for (0 when an explicit list was given).
    pub fraction: f64,
    pub seed: u64,
    pub train_count: usize,
    /// The keys of the held-out images, in dataset order.
    pub validation: Vec<String>,
}

/// The ordering key of an image within its class: the key's bytes folded FNV-1a style (64-bit
/// FNV prime) into the seed, then SplitMix64's output mix.
fn rank(seed: u64, key: &str) -> u64 {
    let mut h = seed ^ GAMMA;
    for &b in key.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    mix64(h)
}

/// Holds out `fraction` of every class (rounded to the nearest image, at least one image of any
/// class with two or more when `fraction > 0`, never a whole class).
///
/// # Panics
/// If `labels` and `keys` differ in length (both come from one [`crate::Dataset`]).
pub fn stratified_split(labels: &[usize], keys: &[String], fraction: f64, seed: u64) -> Split {
    assert_eq!(labels.len(), keys.len(), "one key per label");
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(i);
    }
    let mut held_out = vec![false; labels.len()];
    if fraction > 0.0 {
        for members in by_class.values_mut() {
            let n = members.len();
            if n < 2 {
                continue;
            }
            let take = ((fraction * n as f64).round() as usize).clamp(1, n - 1);
            members.sort_by_key(|&i| (rank(seed, &keys[i]), i));
            for &i in &members[..take] {
                held_out[i] = true;
            }
        }
    }
    let (validation, train): (Vec<usize>, Vec<usize>) =
        (0..labels.len()).partition(|&i| held_out[i]);
    Split { train, validation }
}

/// `n` of the given images, as even across classes as their counts allow (one of every class
/// in turn, each class in the seeded order of its keys), returned as positions in ascending
/// order: the first `n` images in path order would be one or two classes of a folder of
/// class sub-folders.
pub fn stratified_subset(labels: &[usize], keys: &[String], n: usize, seed: u64) -> Vec<usize> {
    assert_eq!(labels.len(), keys.len(), "one key per label");
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(i);
    }
    let mut classes: Vec<Vec<usize>> = by_class.into_values().collect();
    for members in &mut classes {
        members.sort_by_key(|&i| (rank(seed, &keys[i]), i));
    }
    let mut chosen = Vec::with_capacity(n.min(labels.len()));
    let mut round = 0;
    while chosen.len() < n.min(labels.len()) {
        for members in &classes {
            if let Some(&i) = members.get(round)
                && chosen.len() < n
            {
                chosen.push(i);
            }
        }
        round += 1;
    }
    chosen.sort_unstable();
    chosen
}

/// Holds out exactly the images whose keys are listed (`origin` names the list in errors).
///
/// # Errors
/// [`DataError::InvalidConfig`] (key `validation_list`) when a listed key is not in the dataset,
/// naming the first such key and the list.
pub fn split_from_list(
    keys: &[String],
    listed: &[String],
    origin: &str,
) -> Result<Split, DataError> {
    let index: HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut held_out = vec![false; keys.len()];
    for key in listed {
        match index.get(key.as_str()) {
            Some(&i) => held_out[i] = true,
            None => {
                return Err(DataError::invalid(
                    "validation_list",
                    format!("{origin} lists {key:?}, which is not an image of this dataset"),
                ));
            }
        }
    }
    let (validation, train): (Vec<usize>, Vec<usize>) = (0..keys.len()).partition(|&i| held_out[i]);
    Ok(Split { train, validation })
}

/// The split `config` asks for: `validation_list` read from its file (one key per line, blank
/// lines ignored), else
/// `validation_fraction` of every class (none when 0), seeded by `seed`.
///
/// # Errors
/// [`DataError::Io`] when the list cannot be read; [`DataError::InvalidConfig`] when it names an
/// image the dataset does not hold.
pub fn split_for(
    config: &crate::DataConfig,
    data: &crate::Dataset,
    seed: u64,
) -> Result<Split, DataError> {
    split_of(config, &data.labels, &data.keys, seed)
}

/// [`split_for`] over bare `labels` and `keys` (`[N]` each), for a source that needs its split
/// before its dataset exists (`missing = "fill"` takes its means from the training part).
pub(crate) fn split_of(
    config: &crate::DataConfig,
    labels: &[usize],
    keys: &[String],
    seed: u64,
) -> Result<Split, DataError> {
    match &config.validation_list {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
            let listed: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            split_from_list(keys, &listed, &path.display().to_string())
        }
        None => Ok(stratified_split(
            labels,
            keys,
            config.validation_fraction,
            seed,
        )),
    }
}

impl Split {
    /// The record to save with a run.
    pub fn record(&self, keys: &[String], fraction: f64, seed: u64) -> SplitRecord {
        SplitRecord {
            fraction,
            seed,
            train_count: self.train.len(),
            validation: self.validation.iter().map(|&i| keys[i].clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("img/{i:04}.png")).collect()
    }

    #[test]
    fn the_split_is_deterministic_disjoint_complete_and_stratified() {
        let labels: Vec<usize> = (0..1000).map(|i| i % 4).collect();
        let keys = keys(1000);
        let a = stratified_split(&labels, &keys, 0.1, 7);
        assert_eq!(a, stratified_split(&labels, &keys, 0.1, 7));
        assert_ne!(a, stratified_split(&labels, &keys, 0.1, 8));
        let mut all: Vec<usize> = a.train.iter().chain(&a.validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        for class in 0..4 {
            let held = a.validation.iter().filter(|&&i| labels[i] == class).count();
            assert_eq!(held, 25, "class {class}");
        }
    }

    #[test]
    fn adding_images_keeps_the_others_in_place() {
        let labels = vec![0; 200];
        let before = stratified_split(&labels, &keys(200), 0.2, 1);
        let after = stratified_split(&vec![0; 201], &keys(201), 0.2, 1);
        let moved = before
            .validation
            .iter()
            .filter(|i| !after.validation.contains(i))
            .count();
        assert!(moved <= 1, "{moved} images changed sides");
    }

    #[test]
    fn small_classes_keep_a_training_image_and_lists_are_checked() {
        let split = stratified_split(&[0, 1, 1], &keys(3), 0.5, 0);
        assert_eq!(split.validation.len(), 1);
        assert!(split.train.contains(&0));
        let keys = keys(3);
        let listed = split_from_list(&keys, &[keys[2].clone()], "val.txt").unwrap();
        assert_eq!(listed.validation, vec![2]);
        let err = split_from_list(&keys, &["nope.png".into()], "val.txt").unwrap_err();
        assert!(
            err.to_string().contains("val.txt lists \"nope.png\""),
            "{err}"
        );
    }

    #[test]
    fn a_stratified_subset_takes_every_class_in_turn() {
        // Three classes in path order, 6 + 3 + 1 images.
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2];
        let keys = keys(labels.len());
        let subset = stratified_subset(&labels, &keys, 5, 7);
        let count = |c| subset.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!((count(0), count(1), count(2)), (2, 2, 1));
        assert!(subset.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(stratified_subset(&labels, &keys, 5, 7), subset, "seeded");
        assert_eq!(stratified_subset(&labels, &keys, 50, 7).len(), 10);
        assert!(stratified_subset(&labels, &keys, 0, 7).is_empty());
    }
}
