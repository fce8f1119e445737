//! Preprocessing: from an upright RGB8 bitmap to the network's input tensor, plus the
//! general-purpose resize that thumbnails and benchmark edits reuse.
//!
//! The canonical transform is fixed by the reference accuracy figures: the whole image is
//! squashed to 224×224 (aspect ratio NOT kept, no crop) with PIL's `Image.resize(BILINEAR)`
//! semantics, i.e. a triangle-filter convolution whose support widens with the downscale
//! factor (antialiased), rounded to u8, then each value v ↦ (v − 127) / 128, laid out NCHW
//! (all R, then all G, then all B). `fast_image_resize`'s
//! `ResizeAlg::Convolution(FilterType::Bilinear)` computes that filter (same support and
//! sample positions; it follows Pillow-SIMD's 16-bit fixed-point weights where Pillow uses
//! 22 bits, so about 15% of values come out one grey level apart from Pillow's, never more:
//! see the `resize_matches_pil_bilinear_on_photos` test).
//!
//! This module does not decode or validate image files (`decode` does) and knows nothing of
//! the network itself beyond its input layout.

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::decode::{self, DecodeError, DecodeLimits, RgbImage};

/// Side of the square network input.
pub const INPUT_SIZE: usize = 224;
/// Number of f32 values in one input tensor (3 × 224 × 224).
pub const INPUT_LEN: usize = 3 * INPUT_SIZE * INPUT_SIZE;

/// Resampling filter for [`resize_with`]. All are antialiased convolutions when downscaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeFilter {
    /// Triangle filter, PIL `BILINEAR`: the canonical preprocessing filter.
    #[default]
    Bilinear,
    /// Catmull-Rom cubic, PIL `BICUBIC`-like: sharper, for thumbnails.
    CatmullRom,
    /// Lanczos-3, PIL `LANCZOS`: sharpest, slowest.
    Lanczos3,
}

impl ResizeFilter {
    fn alg(self) -> ResizeAlg {
        ResizeAlg::Convolution(match self {
            ResizeFilter::Bilinear => FilterType::Bilinear,
            ResizeFilter::CatmullRom => FilterType::CatmullRom,
            ResizeFilter::Lanczos3 => FilterType::Lanczos3,
        })
    }
}

/// Why a resize could not run. These are caller bugs (a hand-built [`RgbImage`] whose buffer
/// does not match its size, or a zero target), never properties of an uploaded file.
#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    #[error("image buffer holds {actual} bytes but {width}x{height} RGB8 needs {expected}")]
    BadBuffer {
        width: u32,
        height: u32,
        expected: usize,
        actual: usize,
    },
    #[error("cannot resize {from_w}x{from_h} to {to_w}x{to_h}: sizes must be non-zero")]
    ZeroSize {
        from_w: u32,
        from_h: u32,
        to_w: u32,
        to_h: u32,
    },
    #[error("resize failed: {0}")]
    Resizer(String),
}

thread_local! {
    // Resizer keeps its intermediate buffers between calls; one per thread avoids both
    // reallocation per image and any locking between worker threads.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
    // Scratch 224x224 RGB buffer for the tensor path.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn check_buffer(img: &RgbImage) -> Result<(), ResizeError> {
    let expected = img.width as usize * img.height as usize * 3;
    if img.pixels.len() != expected {
        return Err(ResizeError::BadBuffer {
            width: img.width,
            height: img.height,
            expected,
            actual: img.pixels.len(),
        });
    }
    Ok(())
}

/// Resizes `img` into `dst` (exactly `3 * width * height` bytes) with `filter`.
///
/// When the size is unchanged this is a plain copy (the filters are interpolating, so a
/// same-size convolution would be the identity anyway).
pub fn resize_into(
    img: &RgbImage,
    width: u32,
    height: u32,
    filter: ResizeFilter,
    dst: &mut [u8],
) -> Result<(), ResizeError> {
    check_buffer(img)?;
    if img.width == 0 || img.height == 0 || width == 0 || height == 0 {
        return Err(ResizeError::ZeroSize {
            from_w: img.width,
            from_h: img.height,
            to_w: width,
            to_h: height,
        });
    }
    let expected = width as usize * height as usize * 3;
    if dst.len() != expected {
        return Err(ResizeError::BadBuffer {
            width,
            height,
            expected,
            actual: dst.len(),
        });
    }
    if (width, height) == (img.width, img.height) {
        dst.copy_from_slice(&img.pixels);
        return Ok(());
    }
    let fir_err = |e: &dyn std::fmt::Display| ResizeError::Resizer(e.to_string());
    let src = ImageRef::new(img.width, img.height, &img.pixels, PixelType::U8x3)
        .map_err(|e| fir_err(&e))?;
    let mut out =
        Image::from_slice_u8(width, height, dst, PixelType::U8x3).map_err(|e| fir_err(&e))?;
    let options = ResizeOptions::new().resize_alg(filter.alg());
    RESIZER
        .with(|r| r.borrow_mut().resize(&src, &mut out, &options))
        .map_err(|e| fir_err(&e))
}

/// Resizes to `width`×`height` with the canonical (PIL bilinear, antialiased) filter,
/// aspect ratio not kept. Use [`fit_within`] first to keep it.
pub fn resize(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage, ResizeError> {
    resize_with(img, width, height, ResizeFilter::Bilinear)
}

/// [`resize`] with a chosen filter.
pub fn resize_with(
    img: &RgbImage,
    width: u32,
    height: u32,
    filter: ResizeFilter,
) -> Result<RgbImage, ResizeError> {
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    resize_into(img, width, height, filter, &mut pixels)?;
    Ok(RgbImage {
        width,
        height,
        pixels,
    })
}

/// The largest size with `width:height`'s aspect ratio that fits in `max_w`×`max_h`,
/// never upscaling and never below 1 pixel per side (for thumbnails).
pub fn fit_within(width: u32, height: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if width <= max_w && height <= max_h {
        return (width, height);
    }
    let scale = f64::min(
        f64::from(max_w) / f64::from(width),
        f64::from(max_h) / f64::from(height),
    );
    let w = (f64::from(width) * scale)
        .round()
        .clamp(1.0, f64::from(max_w.max(1)));
    let h = (f64::from(height) * scale)
        .round()
        .clamp(1.0, f64::from(max_h.max(1)));
    (w as u32, h as u32)
}

/// Writes an already side×side RGB8 buffer (`out.len() / 3` pixels) as the normalised
/// NCHW tensor.
fn normalise_into(rgb: &[u8], out: &mut [f32]) {
    let plane = out.len() / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    // (v - 127) / 128 is exact in f32 for every u8 v, so this matches the reference bit
    // for bit; the division by a power of two compiles to a multiply.
    let norm = |v: u8| (f32::from(v) - 127.0) / 128.0;
    for (((px, r), g), b) in rgb.chunks_exact(3).zip(r).zip(g).zip(b) {
        *r = norm(px[0]);
        *g = norm(px[1]);
        *b = norm(px[2]);
    }
}

/// Canonical preprocessing: `img` squashed to 224×224 (PIL bilinear, antialiased), rounded
/// to u8, normalised (v − 127) / 128, written NCHW into `out`.
///
/// # Panics
/// If `out.len() != INPUT_LEN`, or if `img` is malformed (buffer length not
/// `3 * width * height`, or a zero side) — both caller bugs, since [`decode::decode`] never
/// produces such an image.
pub fn write_input_tensor(img: &RgbImage, out: &mut [f32]) {
    write_input_tensor_sized(img, INPUT_SIZE, out);
}

/// [`write_input_tensor`] for a network input of `side`×`side` (`out.len()` must be
/// `3 * side * side`), for graphs built at another size.
///
/// # Panics
/// As [`write_input_tensor`].
pub fn write_input_tensor_sized(img: &RgbImage, side: usize, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        3 * side * side,
        "input tensor must hold 3 * side * side floats"
    );
    let len = out.len();
    let side = side as u32;
    if (img.width, img.height) == (side, side) && check_buffer(img).is_ok() {
        // Already network-sized: no resampling at all.
        normalise_into(&img.pixels, out);
        return;
    }
    SCRATCH.with(|s| {
        let mut scratch = s.borrow_mut();
        scratch.resize(len, 0);
        if let Err(e) = resize_into(img, side, side, ResizeFilter::Bilinear, &mut scratch) {
            panic!("write_input_tensor given a malformed image: {e}");
        }
        normalise_into(&scratch, out);
    });
}

/// Convenience: bytes → tensor, the fastest exact path.
///
/// The EXIF orientation is applied to the 224×224 result rather than to the full-size
/// image: rotating and flipping commute with the (square-target, symmetric-filter) resize,
/// so this matches `write_input_tensor(&decode(..))` up to ±1 grey level in a few values
/// (the two resize passes run in the other order), and saves rotating a full-size photo.
///
/// There is deliberately no DCT-domain downscaling (decoding JPEGs at 1/2, 1/4, 1/8). Tried
/// with `jpeg-decoder` on the 1,000 samples: no faster than zune-jpeg's full decode
/// (1.38 vs 1.35 ms/image, more CPU since it spawns a thread per component), and not close
/// enough when the reduced image is barely ≥ 224 (max abs tensor difference 0.695, i.e. 89
/// grey levels; mean 0.0118 over the 122 images it changed, worst image 0.049). With a
/// ≥ 448 threshold it is close (mean 0.0032) but then only helps photos far above the
/// API's 1024-px side limit.
pub fn image_to_tensor(
    bytes: &[u8],
    limits: &DecodeLimits,
    out: &mut [f32],
) -> Result<(), DecodeError> {
    let (img, orientation) = decode::decode_unoriented(bytes, limits)?;
    if orientation == 1 {
        write_input_tensor(&img, out);
        return Ok(());
    }
    let side = INPUT_SIZE as u32;
    let small = resize(&img, side, side).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    write_input_tensor(&decode::apply_orientation(small, orientation), out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::decode::decode;
    use crate::vision::decode::tests::sample;
    use std::path::PathBuf;

    const PLANE: usize = INPUT_SIZE * INPUT_SIZE;

    fn reference_inputs() -> Vec<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/reference/efficientnet-lite0/inputs-224");
        assert!(
            dir.is_dir(),
            "reference inputs not found at {}",
            dir.display()
        );
        let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        v.sort();
        assert_eq!(v.len(), 12, "expected 12 reference inputs");
        v
    }

    /// PIL's `ImagingResample` (Resample.c) with the bilinear filter, in f64: per axis,
    /// output pixel i is centred at (i + 0.5) * scale in the source, the triangle filter's
    /// support is widened by max(scale, 1), weights are normalised; horizontal pass first,
    /// rounded and clamped to u8, then vertical.
    fn pil_bilinear(img: &RgbImage, out_w: usize, out_h: usize) -> Vec<u8> {
        fn coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
            let scale = in_size as f64 / out_size as f64;
            let filterscale = scale.max(1.0);
            let support = filterscale; // bilinear support 1.0
            (0..out_size)
                .map(|i| {
                    let center = (i as f64 + 0.5) * scale;
                    let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                    let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
                    let mut k: Vec<f64> = (xmin..xmax)
                        .map(|x| {
                            let t = ((x as f64 - center + 0.5) / filterscale).abs();
                            if t < 1.0 {
                                1.0 - t
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let sum: f64 = k.iter().sum();
                    k.iter_mut().for_each(|w| *w /= sum);
                    (xmin, k)
                })
                .collect()
        }
        let round = |v: f64| v.round().clamp(0.0, 255.0) as u8;
        let (w, h) = (img.width as usize, img.height as usize);
        let mut tmp = vec![0u8; out_w * h * 3];
        let cx = coeffs(w, out_w);
        for y in 0..h {
            for (x, (x0, k)) in cx.iter().enumerate() {
                for c in 0..3 {
                    let s: f64 = k
                        .iter()
                        .enumerate()
                        .map(|(j, wt)| wt * f64::from(img.pixels[(y * w + x0 + j) * 3 + c]))
                        .sum();
                    tmp[(y * out_w + x) * 3 + c] = round(s);
                }
            }
        }
        let mut out = vec![0u8; out_w * out_h * 3];
        let cy = coeffs(h, out_h);
        for (y, (y0, k)) in cy.iter().enumerate() {
            for x in 0..out_w {
                for c in 0..3 {
                    let s: f64 = k
                        .iter()
                        .enumerate()
                        .map(|(j, wt)| wt * f64::from(tmp[((y0 + j) * out_w + x) * 3 + c]))
                        .sum();
                    out[(y * out_w + x) * 3 + c] = round(s);
                }
            }
        }
        out
    }

    #[test]
    fn reference_inputs_pass_through_unchanged_and_normalise_exactly() {
        for path in reference_inputs() {
            let bytes = std::fs::read(&path).unwrap();
            let img = decode(&bytes, &DecodeLimits::default()).unwrap();
            assert_eq!((img.width, img.height), (224, 224), "{}", path.display());
            // Resize to the same size is the identity.
            assert_eq!(resize(&img, 224, 224).unwrap().pixels, img.pixels);
            let mut t = vec![0f32; INPUT_LEN];
            write_input_tensor(&img, &mut t);
            for (i, px) in img.pixels.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    let want = (f32::from(px[c]) - 127.0) / 128.0;
                    assert_eq!(
                        t[c * PLANE + i],
                        want,
                        "{} pixel {i} channel {c}",
                        path.display()
                    );
                }
            }
            // The bytes → tensor convenience gives the same tensor, bit for bit.
            let mut t2 = vec![0f32; INPUT_LEN];
            image_to_tensor(&bytes, &DecodeLimits::default(), &mut t2).unwrap();
            assert_eq!(t, t2);
        }
    }

    #[test]
    fn normalisation_range_and_layout() {
        let mut img = RgbImage::filled(224, 224, [0, 127, 255]);
        img.pixels[3..6].copy_from_slice(&[1, 2, 3]);
        let mut t = vec![9f32; INPUT_LEN];
        write_input_tensor(&img, &mut t);
        assert_eq!((t[0], t[PLANE], t[2 * PLANE]), (-127.0 / 128.0, 0.0, 1.0));
        assert_eq!(
            (t[1], t[PLANE + 1], t[2 * PLANE + 1]),
            (-126.0 / 128.0, -125.0 / 128.0, -124.0 / 128.0)
        );
    }

    #[test]
    fn resize_matches_pil_bilinear_on_photos() {
        // Downscale (antialiased), aspect change, and upscale of a tiny image.
        for (name, w, h) in [
            ("n01443537_goldfish.JPEG", 224, 224),
            ("n01440764_tench.JPEG", 100, 300),
            ("n01440764_tench.JPEG", 224, 224),
        ] {
            let img = decode(&sample(name), &DecodeLimits::default()).unwrap();
            let ours = resize(&img, w, h).unwrap();
            let pil = pil_bilinear(&img, w as usize, h as usize);
            let max = ours
                .pixels
                .iter()
                .zip(&pil)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            let off = ours.pixels.iter().zip(&pil).filter(|(a, b)| a != b).count();
            // Same filter geometry (a shifted or narrower kernel would be off by many levels
            // at edges), but fast_image_resize follows Pillow-SIMD's 16-bit fixed-point
            // weights where Pillow uses 22 bits, so values near a rounding boundary land
            // one level apart: about 15% of them on these photos.
            assert!(max <= 1, "{name} -> {w}x{h}: max diff {max}");
            assert!(
                off * 4 < pil.len(),
                "{name}: {off} of {} values differ",
                pil.len()
            );
        }
        let tiny = RgbImage::from_raw(3, 2, (0..18).map(|v| v * 14).collect()).unwrap();
        let up = resize(&tiny, 7, 5).unwrap();
        let pil = pil_bilinear(&tiny, 7, 5);
        assert!(up.pixels.iter().zip(&pil).all(|(a, b)| a.abs_diff(*b) <= 1));
    }

    #[test]
    fn downscale_is_antialiased() {
        // A 1-px checkerboard of 0/255 halved: a point-sampling resize would give pure
        // black or white; the widened triangle filter averages to mid grey.
        let n = 448u32;
        let pixels = (0..n * n)
            .flat_map(|i| {
                let v = if (i % n + i / n).is_multiple_of(2) {
                    0
                } else {
                    255
                };
                [v, v, v]
            })
            .collect();
        let img = RgbImage::from_raw(n, n, pixels).unwrap();
        let out = resize(&img, 224, 224).unwrap();
        // Away from the border (where PIL-style filters clip their support).
        for y in 2..222 {
            for x in 2..222 {
                let v = out.pixel(x, y)[0];
                assert!((126..=129).contains(&v), "({x},{y}) = {v}");
            }
        }
        // Solid colours survive any resize exactly.
        let solid = RgbImage::filled(301, 97, [12, 200, 77]);
        for (w, h) in [(224, 224), (1000, 10), (1, 1)] {
            let out = resize(&solid, w, h).unwrap();
            assert!(
                out.pixels.chunks_exact(3).all(|p| p == [12, 200, 77]),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn resize_rejects_malformed_input() {
        let bad = RgbImage {
            width: 10,
            height: 10,
            pixels: vec![0; 299],
        };
        assert!(matches!(
            resize(&bad, 5, 5),
            Err(ResizeError::BadBuffer { .. })
        ));
        let ok = RgbImage::filled(10, 10, [1, 2, 3]);
        assert!(matches!(
            resize(&ok, 0, 5),
            Err(ResizeError::ZeroSize { .. })
        ));
        assert_eq!(fit_within(4000, 3000, 256, 256), (256, 192));
        assert_eq!(fit_within(100, 50, 256, 256), (100, 50));
        assert_eq!(fit_within(10000, 1, 100, 100), (100, 1));
    }

    #[test]
    fn tensor_path_orients_after_resizing_within_rounding() {
        // Rotated / flipped phone photos: orienting the 224x224 result instead of the full
        // image may only change rounding between the two resize passes.
        let base = decode(&sample("n01443537_goldfish.JPEG"), &DecodeLimits::default()).unwrap();
        for o in 1..=8u8 {
            let unoriented = crate::vision::decode::apply_orientation(base.clone(), 1);
            let mut via_full = vec![0f32; INPUT_LEN];
            write_input_tensor(
                &crate::vision::decode::apply_orientation(unoriented.clone(), o),
                &mut via_full,
            );
            let small = resize(&unoriented, 224, 224).unwrap();
            let mut via_small = vec![0f32; INPUT_LEN];
            write_input_tensor(
                &crate::vision::decode::apply_orientation(small, o),
                &mut via_small,
            );
            let max = via_full
                .iter()
                .zip(&via_small)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max <= 1.0 / 128.0 + 1e-6, "orientation {o}: max diff {max}");
        }
    }
}
