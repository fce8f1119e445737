//! The subject crop of `bench quality` (`Crop=true` on the query side): the subject model's
//! mask of each query, its box by the service's rule ([`BoxRule::DEFAULT`], descriptor
//! `subject`) and, with `--subject-grid`, by every rule of [`GRID`] (descriptors `subj_*`,
//! the study that chose the default: run it on one seed, report on another), each box cut
//! out, margin-trimmed and turned into a 224 input like the service's `prepare` does. A
//! query whose box falls back (no subject) gets no crop input: its crop descriptor is the
//! whole image's, as the service then searches with the whole image only.
//!
//! Not here: the rankings (`mod`), what the service does (`service::prepare`).

use std::time::Instant;

use crate::vision::borders;
use crate::vision::decode::RgbImage;
use crate::vision::subject::{subject_box, BoxRule, Subject, SubjectModel};

/// The service's rule, under the descriptor name the methods use.
pub(super) const DEFAULT_NAME: &str = "subject";

/// The rules compared with `--subject-grid` (threshold, margin), by descriptor name.
pub(super) const GRID: &[(&str, BoxRule)] = &[
    ("subj_t03_m00", rule(0.3, 0.0)),
    ("subj_t03_m05", rule(0.3, 0.05)),
    ("subj_t03_m15", rule(0.3, 0.15)),
    ("subj_t05_m00", rule(0.5, 0.0)),
    ("subj_t05_m05", rule(0.5, 0.05)),
    ("subj_t05_m15", rule(0.5, 0.15)),
    ("subj_t07_m00", rule(0.7, 0.0)),
    ("subj_t07_m05", rule(0.7, 0.05)),
    ("subj_t07_m15", rule(0.7, 0.15)),
];

const fn rule(threshold: f32, margin: f32) -> BoxRule {
    BoxRule { threshold, margin }
}

/// One query's crops: by descriptor name, the crop's 224 input, or `None` when that rule
/// fell back to the whole image.
pub(super) type Crops = Vec<(&'static str, Option<Vec<f32>>)>;

/// Runs the subject model on queries and keeps its costs and fallbacks.
pub(super) struct SubjectCrops<'a> {
    pub(super) model: &'a SubjectModel,
    pub(super) grid: bool,
}

impl SubjectCrops<'_> {
    /// The crops of `img` and the subject model's milliseconds; `tensor` makes a 224 input.
    pub(super) fn crops(
        &self,
        img: &RgbImage,
        tensor: impl Fn(&RgbImage) -> Vec<f32>,
    ) -> anyhow::Result<(Crops, f64)> {
        let t = Instant::now();
        let mask = self.model.mask(img)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut rules = vec![(DEFAULT_NAME, BoxRule::DEFAULT)];
        if self.grid {
            rules.extend_from_slice(GRID);
        }
        let mut out = Crops::new();
        for (name, rule) in rules {
            let crop = match subject_box(&mask, img.width, img.height, rule) {
                Subject::Found(r) => {
                    let cut = r.crop(img)?;
                    let trimmed = borders::trim(&cut);
                    Some(tensor(trimmed.as_ref().unwrap_or(&cut)))
                }
                Subject::None(_) => None,
            };
            out.push((name, crop));
        }
        Ok((out, ms))
    }

    /// Median milliseconds of the subject model alone on `img` (batch 1), after warm-up.
    pub(super) fn time_ms(&self, img: &RgbImage, runs: usize) -> anyhow::Result<f64> {
        for _ in 0..3 {
            self.model.mask(img)?;
        }
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            self.model.mask(img)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        Ok((times[times.len() / 2] * 100.0).round() / 100.0)
    }
}
