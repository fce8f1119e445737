//! Image preparation for AddImage and SearchImage, on a blocking thread: the API's side
//! rule checked on the header, the decode, with `Crop=true` the main subject's box (the
//! salient-object network runs here, `vision::subject`), border trimming, the network
//! input tensor(s) and, for stored images, a JPEG thumbnail.
//!
//! Not here: getting the bytes (`fetch`, or the request's `ImageContent`), running the
//! embedding networks (`vision::embedder`).

use super::error::ServiceError;
use crate::rules::{sides_ok, MAX_SIDE_EXCLUSIVE, MIN_SIDE_EXCLUSIVE};
use crate::vision::borders;
use crate::vision::copy_model::copy_input;
use crate::vision::decode::{self, DecodeLimits};
use crate::vision::preprocess::{fit_within, resize, write_input_tensor, INPUT_LEN};
use crate::vision::region::Region;
use crate::vision::subject::{BoxRule, Subject, SubjectModel};

/// Longest side of the stored thumbnail.
pub const THUMBNAIL_SIDE: u32 = 256;

pub(crate) struct Prepared {
    /// The network input of the image without its uniform margins.
    pub tensor: Vec<f32>,
    /// For queries whose margins were trimmed: the input of the whole image as well.
    pub untrimmed: Option<Vec<f32>>,
    pub thumbnail: Option<Vec<u8>>,
    /// The copy-detection network's input (of the trimmed image), when asked for.
    pub copy: Option<Vec<u8>>,
    /// With `crop`: what the subject finder found (for the response).
    pub subject: Option<Subject>,
    /// For queries with `crop` whose subject was found: the input of the subject's box,
    /// a query vector beside the whole image's.
    pub subject_tensor: Option<Vec<f32>>,
}

/// What [`prepare`] makes of an image.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PrepareOptions {
    /// An image to store (with a thumbnail), rather than a query.
    pub stored: bool,
    /// Make the copy-detection input too.
    pub copy: bool,
    /// A stored image's copy descriptor is made from its thumbnail (databases that also
    /// index the semantic embedding, whose cosine 1 then marks the same file); otherwise
    /// from the full image (copy-only databases, where the copy cosine alone must be 1 for
    /// the same file).
    pub copy_from_thumbnail: bool,
    /// Embed only this part of the image semantically (`Region`, ours). The copy
    /// descriptor and the thumbnail stay those of the whole picture: "the same picture"
    /// is about the upload, "looks alike" about what the caller points at.
    pub region: Option<Region>,
    /// Find the main subject (`Crop=true`, ours): a stored image embeds its box instead of
    /// the whole picture (as with `region`); a query embeds it beside the whole picture.
    /// The API never sends it with `region`; if both come, `region` wins.
    pub crop: bool,
}

/// Checks the API's image rules on the bytes, decodes them and makes the network input
/// (and, for stored images, a JPEG thumbnail of the whole image; for queries, the
/// untrimmed input too when margins were trimmed; with `copy`, the copy-detection input).
/// Runs on a blocking thread.
pub(crate) fn prepare(bytes: &[u8], opts: &PrepareOptions) -> Result<Prepared, ServiceError> {
    prepare_with(bytes, opts, None)
}

/// [`prepare`] with the subject finder for `opts.crop` (an error without one).
pub(crate) fn prepare_with(
    bytes: &[u8],
    opts: &PrepareOptions,
    subject_model: Option<&SubjectModel>,
) -> Result<Prepared, ServiceError> {
    let (stored, copy, copy_from_thumbnail) = (opts.stored, opts.copy, opts.copy_from_thumbnail);
    let with_thumbnail = stored;
    let (_, width, height) = decode::probe(bytes)?;
    if !sides_ok(width, height) {
        return Err(ServiceError::ImageResolution(format!(
            "the image is {width}×{height} px; each side must be greater than {MIN_SIDE_EXCLUSIVE} \
             and less than {MAX_SIDE_EXCLUSIVE} px"
        )));
    }
    let image = decode::decode(bytes, &DecodeLimits::default())?;
    let detected = match (opts.crop && opts.region.is_none(), subject_model) {
        (false, _) => None,
        (true, None) => return Err(ServiceError::SubjectModelMissing),
        (true, Some(model)) => Some(
            model
                .find(&image, BoxRule::DEFAULT)
                .map_err(|e| ServiceError::Algo(format!("subject detection failed: {e}")))?,
        ),
    };
    let found = match detected {
        Some(Subject::Found(r)) => Some(r),
        _ => None,
    };
    // A stored image embeds the subject's box as it would a Region; a query keeps the
    // whole picture as its first vector and adds the box (`subject_tensor`).
    let region = if stored {
        opts.region.or(found)
    } else {
        opts.region
    };
    let subject_tensor = match found {
        Some(r) if !stored => {
            let cut = r
                .crop(&image)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            let trimmed = borders::trim(&cut);
            let mut t = vec![0f32; INPUT_LEN];
            write_input_tensor(trimmed.as_ref().unwrap_or(&cut), &mut t);
            Some(t)
        }
        _ => None,
    };
    let cut = region
        .map(|r| r.crop(&image))
        .transpose()
        .map_err(|e| ServiceError::InvalidParameter(e.to_string()))?;
    let trimmed = borders::trim(&image);
    // What is embedded semantically: the region when one is given (its own margins
    // trimmed), else the whole image.
    let cut_trimmed = cut.as_ref().map(borders::trim);
    let (subject, subject_trimmed) = match (&cut, &cut_trimmed) {
        (Some(c), Some(t)) => (c, t.as_ref()),
        _ => (&image, trimmed.as_ref()),
    };
    let mut tensor = vec![0f32; INPUT_LEN];
    write_input_tensor(subject_trimmed.unwrap_or(subject), &mut tensor);
    let untrimmed = match subject_trimmed {
        Some(_) if !stored => {
            let mut t = vec![0f32; INPUT_LEN];
            write_input_tensor(subject, &mut t);
            Some(t)
        }
        _ => None,
    };
    let thumbnail = if with_thumbnail {
        let (w, h) = fit_within(image.width, image.height, THUMBNAIL_SIDE, THUMBNAIL_SIDE);
        let small = resize(&image, w, h).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Some(encode_jpeg(&small)?)
    } else {
        None
    };
    // A stored image's copy descriptor is made from its thumbnail, as the migration makes
    // it for images stored before copy descriptors (`backfill`): one kind of descriptor in
    // every database, and on `bench copies`' tuning seed the low-passed stored side matched
    // edited queries better than the full image (recall@1 0.997 vs 0.993). Queries use the
    // full image.
    let copy = match (copy, &thumbnail) {
        (false, _) => None,
        (true, Some(jpeg)) if copy_from_thumbnail => Some(copy_input_from_thumbnail(jpeg)?),
        (true, _) => Some(
            copy_input(trimmed.as_ref().unwrap_or(&image))
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        ),
    };
    Ok(Prepared {
        tensor,
        untrimmed,
        thumbnail,
        copy,
        subject: detected,
        subject_tensor,
    })
}

/// The copy-detection input of a stored image recomputed from its thumbnail (for images
/// stored before copy descriptors existed): decoded, margins trimmed as at AddImage,
/// squashed to the network's input.
pub(crate) fn copy_input_from_thumbnail(jpeg: &[u8]) -> Result<Vec<u8>, ServiceError> {
    let image = decode::decode(jpeg, &DecodeLimits::default())?;
    let trimmed = borders::trim(&image);
    copy_input(trimmed.as_ref().unwrap_or(&image))
        .map_err(|e| ServiceError::Internal(e.to_string()))
}

fn encode_jpeg(img: &decode::RgbImage) -> Result<Vec<u8>, ServiceError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode(
            &img.pixels,
            img.width,
            img.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| ServiceError::Internal(format!("thumbnail encoding failed: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PNG bytes of a `w`×`h` white canvas with a textured block at (x, y, bw, bh).
    fn png_with_margins(w: u32, h: u32, (x, y, bw, bh): (u32, u32, u32, u32)) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |px, py| {
            if (x..x + bw).contains(&px) && (y..y + bh).contains(&py) {
                image::Rgb([(px * 7 % 200) as u8, (py * 13 % 200) as u8, 90])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// The sample photo (sorted ImageNet samples) used for the subject tests.
    const SUBJECT_SAMPLE: usize = 300;

    fn query_options() -> PrepareOptions {
        PrepareOptions {
            copy_from_thumbnail: true,
            ..PrepareOptions::default()
        }
    }

    fn stored_options() -> PrepareOptions {
        PrepareOptions {
            stored: true,
            copy: true,
            copy_from_thumbnail: true,
            region: None,
            crop: false,
        }
    }

    #[test]
    fn a_region_is_embedded_alone_and_checked_against_the_image() {
        let bytes = png_with_margins(400, 300, (100, 60, 160, 150));
        let whole = prepare(&bytes, &stored_options()).unwrap();
        let region = Region::parse("100,260,60,210").unwrap();
        let cut = prepare(
            &bytes,
            &PrepareOptions {
                region: Some(region),
                ..stored_options()
            },
        )
        .unwrap();
        // The block is the whole content, so its region embeds as the trimmed image does;
        // the thumbnail and copy input stay the whole picture's.
        assert_eq!(cut.tensor, whole.tensor);
        assert_eq!(cut.thumbnail, whole.thumbnail);
        assert_eq!(cut.copy, whole.copy);
        let corner = prepare(
            &bytes,
            &PrepareOptions {
                region: Some(Region::parse("0,100,0,100").unwrap()),
                ..query_options()
            },
        )
        .unwrap();
        assert_ne!(corner.tensor, whole.tensor);
        let e = prepare(
            &bytes,
            &PrepareOptions {
                region: Some(Region::parse("0,500,0,100").unwrap()),
                ..query_options()
            },
        )
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .contains("x2=500 is beyond the image's width; it must be at most 400"),
            "{e}"
        );
    }

    /// JPEG bytes of sample photo `index` at 40% per side pasted at (x, y) = a fifth of
    /// the canvas on a mosaic of pseudo-random 32-px blocks the photo's size, and where
    /// it went (x1, x2, y1, y2).
    fn photo_on_blocks(index: usize) -> (Vec<u8>, Region) {
        let bytes = &crate::vision::decode::tests::samples()[index].1;
        let photo = image::load_from_memory(bytes).unwrap().to_rgb8();
        let photo =
            image::imageops::resize(&photo, 500, 400, image::imageops::FilterType::Triangle);
        let small =
            image::imageops::resize(&photo, 200, 160, image::imageops::FilterType::Triangle);
        let mut seed = 12345u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        };
        let colours: Vec<[u8; 3]> = (0..16 * 13).map(|_| [next(), next(), next()]).collect();
        let mut canvas = image::RgbImage::from_fn(500, 400, |x, y| {
            image::Rgb(colours[(y / 32 * 16 + x / 32) as usize])
        });
        image::imageops::replace(&mut canvas, &small, 100, 80);
        let mut out = std::io::Cursor::new(Vec::new());
        canvas.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        let placed = Region {
            x1: 100,
            x2: 300,
            y1: 80,
            y2: 240,
        };
        (out.into_inner(), placed)
    }

    fn subject_model() -> SubjectModel {
        // Fails, not skips, without the model: CI runs scripts/setup.sh first.
        let files = crate::vision::model::ModelFiles::locate(None, None).expect("setup.sh");
        let path = crate::vision::model::locate_subject_model(None).expect("run setup.sh");
        SubjectModel::load(&files.onnxruntime, &path, Default::default()).unwrap()
    }

    #[test]
    fn crop_finds_the_subject_and_embeds_it_like_a_region() {
        let model = subject_model();
        let (bytes, placed) = photo_on_blocks(SUBJECT_SAMPLE);
        let crop = |opts: PrepareOptions| {
            prepare_with(&bytes, &PrepareOptions { crop: true, ..opts }, Some(&model)).unwrap()
        };
        let stored = crop(stored_options());
        let Some(Subject::Found(r)) = stored.subject else {
            panic!("no subject found: {:?}", stored.subject);
        };
        // The box is about where the photo went.
        let inter = (r.x2.min(placed.x2).saturating_sub(r.x1.max(placed.x1)))
            * (r.y2.min(placed.y2).saturating_sub(r.y1.max(placed.y1)));
        let union = r.width() * r.height() + placed.width() * placed.height() - inter;
        assert!(inter * 2 > union, "box {r} vs placed {placed}");
        // Stored: the box is embedded as that Region would be; thumbnail and copy input
        // stay the whole picture's; no second tensor.
        let as_region = prepare(
            &bytes,
            &PrepareOptions {
                region: Some(r),
                ..stored_options()
            },
        )
        .unwrap();
        let whole = prepare(&bytes, &stored_options()).unwrap();
        assert_eq!(stored.tensor, as_region.tensor);
        assert_ne!(stored.tensor, whole.tensor);
        assert_eq!(stored.thumbnail, whole.thumbnail);
        assert_eq!(stored.copy, whole.copy);
        assert!(stored.subject_tensor.is_none());
        // Query: the whole picture first, the box as an extra input.
        let query = crop(query_options());
        assert_eq!(query.subject, Some(Subject::Found(r)));
        assert_eq!(
            query.tensor,
            prepare(&bytes, &query_options()).unwrap().tensor
        );
        assert_eq!(query.subject_tensor.as_ref(), Some(&as_region.tensor));
        // A Region given too wins (the API refuses both together).
        let both = crop(PrepareOptions {
            region: Some(Region::parse("0,100,0,100").unwrap()),
            ..query_options()
        });
        assert!(both.subject.is_none() && both.subject_tensor.is_none());
    }

    #[test]
    fn a_flat_picture_falls_back_to_the_whole_image() {
        let model = subject_model();
        let flat = image::RgbImage::from_pixel(300, 200, image::Rgb([90, 140, 200]));
        let mut bytes = std::io::Cursor::new(Vec::new());
        flat.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
        let bytes = bytes.into_inner();
        let opts = PrepareOptions {
            crop: true,
            ..stored_options()
        };
        let p = prepare_with(&bytes, &opts, Some(&model)).unwrap();
        assert!(
            matches!(p.subject, Some(Subject::None(_))),
            "{:?}",
            p.subject
        );
        assert_eq!(p.tensor, prepare(&bytes, &stored_options()).unwrap().tensor);
        // Without the model, Crop is refused.
        let e = prepare_with(&bytes, &opts, None).err().unwrap();
        assert!(matches!(e, ServiceError::SubjectModelMissing), "{e}");
    }

    #[test]
    fn prepare_trims_margins_and_keeps_the_whole_query_too() {
        let bytes = png_with_margins(400, 300, (100, 60, 160, 150));
        let query = prepare(&bytes, &query_options()).unwrap();
        let stored = prepare(&bytes, &stored_options()).unwrap();
        assert_eq!(query.tensor, stored.tensor, "same trimmed input both ways");
        assert!(stored.untrimmed.is_none() && stored.thumbnail.is_some());
        assert_eq!(
            stored.copy.as_ref().map(Vec::len),
            Some(crate::vision::copy_model::COPY_INPUT_LEN)
        );
        assert!(query.copy.is_none());
        let whole = query.untrimmed.expect("untrimmed query input");
        assert_ne!(whole, query.tensor);
        // Without margins there is one input, the whole image.
        let full = png_with_margins(300, 200, (0, 0, 300, 200));
        let p = prepare(&full, &query_options()).unwrap();
        assert!(p.untrimmed.is_none());
        let mut want = vec![0f32; INPUT_LEN];
        write_input_tensor(
            &decode::decode(&full, &DecodeLimits::default()).unwrap(),
            &mut want,
        );
        assert_eq!(p.tensor, want);
    }
}
