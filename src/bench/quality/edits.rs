//! The edits `bench quality` applies to database images to make its queries: the kinds of
//! change a copy of a photo picks up on its way around the web. Each is deterministic given
//! the image and a random source (corner, colours and positions are drawn from it).
//!
//! Definitions (also in README, "Search quality"):
//! - `crop_center`: the central region holding 50% of the area (each side × √½ ≈ 0.71);
//! - `crop_corner`: a region holding 50% of the area anchored at a random corner;
//! - `jpeg_q20_160`: resized so the longest side is 160 px, then JPEG quality 20;
//! - `rotate_10`: rotated 10° counter-clockwise about the centre, same canvas, corners white;
//! - `darken_40`: every channel × 0.6 (brightness −40%);
//! - `grayscale`: BT.601 luma in all three channels;
//! - `overlay`: a solid caption bar (70% of the width × 15% of the height, bottom left) with
//!   white "text" strokes, plus a square two-colour logo (side 22% of the shorter side,
//!   top right) — about 15% of the area covered;
//! - `blur_3`: Gaussian blur, σ = 3 px;
//! - `hflip`: mirrored left–right;
//! - `paste_40`: scaled to 40% per side and pasted at a random position on a canvas of the
//!   original size filled with one random colour;
//! - `stretch_1_4`: width × 1.4, height unchanged.
//!
//! Extra, outside the overall figure (a harder variant the brief did not ask for):
//! - `paste_40_blocks`: as `paste_40`, but the canvas is a mosaic of random-coloured 32-px
//!   blocks, so there is no plain margin to trim;
//! - `identity`: the database file itself, unchanged (must rank first and score 10).

use image::imageops;

use crate::vision::decode::RgbImage;
use crate::vision::preprocess::{resize, ResizeError};

/// One kind of edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    CropCenter,
    CropCorner,
    JpegQ20Small,
    Rotate10,
    Darken40,
    Grayscale,
    Overlay,
    Blur3,
    HFlip,
    Paste40,
    Stretch14,
    Paste40Blocks,
    Identity,
}

impl Edit {
    pub const ALL: [Edit; 11] = [
        Edit::CropCenter,
        Edit::CropCorner,
        Edit::JpegQ20Small,
        Edit::Rotate10,
        Edit::Darken40,
        Edit::Grayscale,
        Edit::Overlay,
        Edit::Blur3,
        Edit::HFlip,
        Edit::Paste40,
        Edit::Stretch14,
    ];

    /// Outside the overall figure.
    pub const EXTRA: [Edit; 2] = [Edit::Paste40Blocks, Edit::Identity];

    pub fn name(self) -> &'static str {
        match self {
            Edit::CropCenter => "crop_center_50%area",
            Edit::CropCorner => "crop_corner_50%area",
            Edit::JpegQ20Small => "resize160_jpeg_q20",
            Edit::Rotate10 => "rotate_10deg_white",
            Edit::Darken40 => "brightness_-40%",
            Edit::Grayscale => "grayscale",
            Edit::Overlay => "logo_text_overlay_15%",
            Edit::Blur3 => "gaussian_blur_s3",
            Edit::HFlip => "hflip",
            Edit::Paste40 => "paste_40%_on_plain",
            Edit::Stretch14 => "stretch_width_1.4",
            Edit::Paste40Blocks => "paste_40%_on_blocks",
            Edit::Identity => "identity",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Resize(#[from] ResizeError),
    #[error("JPEG round trip failed: {0}")]
    Jpeg(String),
}

/// SplitMix64: a small, seedable, portable random source.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Applies `edit` to `img`.
pub fn apply(edit: Edit, img: &RgbImage, rng: &mut Rng) -> Result<RgbImage, EditError> {
    let (w, h) = (img.width, img.height);
    let half_area =
        |s: u32| ((f64::from(s) * std::f64::consts::FRAC_1_SQRT_2).round() as u32).max(1);
    Ok(match edit {
        Edit::Identity => img.clone(),
        Edit::CropCenter => {
            let (cw, ch) = (half_area(w), half_area(h));
            crop(img, (w - cw) / 2, (h - ch) / 2, cw, ch)
        }
        Edit::CropCorner => {
            let (cw, ch) = (half_area(w), half_area(h));
            let corner = rng.below(4);
            let x = if corner.is_multiple_of(2) { 0 } else { w - cw };
            let y = if corner / 2 == 0 { 0 } else { h - ch };
            crop(img, x, y, cw, ch)
        }
        Edit::JpegQ20Small => {
            let scale = 160.0 / f64::from(w.max(h));
            let nw = ((f64::from(w) * scale).round() as u32).max(1);
            let nh = ((f64::from(h) * scale).round() as u32).max(1);
            jpeg_round_trip(&resize(img, nw, nh)?, 20)?
        }
        Edit::Rotate10 => rotate(img, 10f64.to_radians(), [255, 255, 255]),
        Edit::Darken40 => map_pixels(img, |p| p.map(|v| (f32::from(v) * 0.6).round() as u8)),
        Edit::Grayscale => map_pixels(img, |[r, g, b]| {
            let y = (0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b)).round();
            [y as u8; 3]
        }),
        Edit::Overlay => overlay(img, rng),
        Edit::Blur3 => {
            let buf = to_image(img);
            from_image(imageops::blur(&buf, 3.0))
        }
        Edit::HFlip => from_image(imageops::flip_horizontal(&to_image(img))),
        Edit::Paste40 | Edit::Paste40Blocks => {
            let (pw, ph) = (
                ((f64::from(w) * 0.4).round() as u32).max(1),
                ((f64::from(h) * 0.4).round() as u32).max(1),
            );
            let small = resize(img, pw, ph)?;
            let bg = [
                rng.below(256) as u8,
                rng.below(256) as u8,
                rng.below(256) as u8,
            ];
            let mut canvas = RgbImage::filled(w, h, bg);
            if edit == Edit::Paste40Blocks {
                for by in (0..h).step_by(32) {
                    for bx in (0..w).step_by(32) {
                        let c = [
                            rng.below(256) as u8,
                            rng.below(256) as u8,
                            rng.below(256) as u8,
                        ];
                        fill_rect(&mut canvas, bx, by, 32, 32, c);
                    }
                }
            }
            let x0 = rng.below(u64::from(w - pw + 1)) as u32;
            let y0 = rng.below(u64::from(h - ph + 1)) as u32;
            for y in 0..ph {
                let src = (y * pw * 3) as usize;
                let dst = (((y0 + y) * w + x0) * 3) as usize;
                canvas.pixels[dst..dst + (pw * 3) as usize]
                    .copy_from_slice(&small.pixels[src..src + (pw * 3) as usize]);
            }
            canvas
        }
        Edit::Stretch14 => {
            let nw = ((f64::from(w) * 1.4).round() as u32).max(1);
            resize(img, nw, h)?
        }
    })
}

/// Encodes as JPEG at `quality` and decodes again (what uploading a file does).
pub fn jpeg_round_trip(img: &RgbImage, quality: u8) -> Result<RgbImage, EditError> {
    let bytes = encode_jpeg(img, quality)?;
    crate::vision::decode::decode(&bytes, &Default::default())
        .map_err(|e| EditError::Jpeg(e.to_string()))
}

pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, EditError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(
            &img.pixels,
            img.width,
            img.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| EditError::Jpeg(e.to_string()))?;
    Ok(out)
}

pub fn to_image(img: &RgbImage) -> image::RgbImage {
    image::RgbImage::from_raw(img.width, img.height, img.pixels.clone())
        .unwrap_or_else(|| image::RgbImage::new(img.width, img.height))
}

pub(super) fn from_image(buf: image::RgbImage) -> RgbImage {
    let (width, height) = buf.dimensions();
    RgbImage {
        width,
        height,
        pixels: buf.into_raw(),
    }
}

pub(super) fn crop(img: &RgbImage, x0: u32, y0: u32, cw: u32, ch: u32) -> RgbImage {
    let mut pixels = Vec::with_capacity((cw * ch * 3) as usize);
    for y in y0..y0 + ch {
        let start = ((y * img.width + x0) * 3) as usize;
        pixels.extend_from_slice(&img.pixels[start..start + (cw * 3) as usize]);
    }
    RgbImage {
        width: cw,
        height: ch,
        pixels,
    }
}

pub(super) fn map_pixels(img: &RgbImage, f: impl Fn([u8; 3]) -> [u8; 3]) -> RgbImage {
    let mut out = img.clone();
    for px in out.pixels.chunks_exact_mut(3) {
        px.copy_from_slice(&f([px[0], px[1], px[2]]));
    }
    out
}

/// Rotation by `angle` (radians, counter-clockwise) about the centre on the same canvas,
/// bilinear sampling, `fill` where the source has no pixel.
pub(super) fn rotate(img: &RgbImage, angle: f64, fill: [u8; 3]) -> RgbImage {
    let (w, h) = (img.width as usize, img.height as usize);
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let mut out = RgbImage::filled(img.width, img.height, fill);
    let at = |x: usize, y: usize, c: usize| f64::from(img.pixels[(y * w + x) * 3 + c]);
    for y in 0..h {
        for x in 0..w {
            // Inverse map: where in the source does (x, y) come from? (y axis points down,
            // so a counter-clockwise turn on screen is clockwise in these coordinates.)
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            let sx = cos * dx - sin * dy + cx;
            let sy = sin * dx + cos * dy + cy;
            if sx < 0.0 || sy < 0.0 || sx > (w - 1) as f64 || sy > (h - 1) as f64 {
                continue;
            }
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
            for c in 0..3 {
                let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
                let bottom = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
                out.pixels[(y * w + x) * 3 + c] =
                    (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

pub(super) fn fill_rect(img: &mut RgbImage, x0: u32, y0: u32, rw: u32, rh: u32, rgb: [u8; 3]) {
    for y in y0..(y0 + rh).min(img.height) {
        for x in x0..(x0 + rw).min(img.width) {
            let i = ((y * img.width + x) * 3) as usize;
            img.pixels[i..i + 3].copy_from_slice(&rgb);
        }
    }
}

/// A caption bar with text-like white strokes (bottom left) and a two-colour square logo
/// with a disc in it (top right).
pub(super) fn overlay(img: &RgbImage, rng: &mut Rng) -> RgbImage {
    let mut out = img.clone();
    let (w, h) = (img.width, img.height);
    let mut colour = || {
        [
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
        ]
    };
    let (bar_colour, logo_colour, disc_colour) = (colour(), colour(), colour());
    // Caption bar and its "text": glyph-sized strokes of random widths, in words.
    let (bw, bh) = ((w * 7 / 10).max(1), (h * 15 / 100).max(1));
    let by = h - bh;
    fill_rect(&mut out, 0, by, bw, bh, bar_colour);
    let glyph_h = (bh * 6 / 10).max(1);
    let stroke = (glyph_h / 6).max(1);
    let ty = by + (bh - glyph_h) / 2;
    let mut x = (bh / 4).max(1);
    while x + glyph_h < bw {
        let word = 2 + rng.below(6) as u32;
        for _ in 0..word {
            let gw = (glyph_h / 2 + rng.below(u64::from(glyph_h / 3 + 1)) as u32).max(2);
            if x + gw >= bw {
                break;
            }
            // A glyph: vertical stem plus a random choice of horizontal strokes.
            fill_rect(&mut out, x, ty, stroke, glyph_h, [255; 3]);
            for row in 0..3 {
                if rng.below(2) == 0 {
                    let y = ty + row * (glyph_h - stroke) / 2;
                    fill_rect(&mut out, x, y, gw, stroke, [255; 3]);
                }
            }
            if rng.below(2) == 0 {
                fill_rect(&mut out, x + gw - stroke, ty, stroke, glyph_h, [255; 3]);
            }
            x += gw + stroke * 2;
        }
        x += glyph_h;
    }
    // Logo: square with a disc.
    let side = (w.min(h) * 22 / 100).max(2);
    let (lx, ly) = (w - side - w / 40, h / 40);
    fill_rect(&mut out, lx, ly, side, side, logo_colour);
    let r = f64::from(side) * 0.35;
    let c = f64::from(side) / 2.0;
    for y in 0..side {
        for x in 0..side {
            let (dx, dy) = (f64::from(x) + 0.5 - c, f64::from(y) + 0.5 - c);
            if dx * dx + dy * dy <= r * r {
                fill_rect(&mut out, lx + x, ly + y, 1, 1, disc_colour);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        let mut pixels = Vec::new();
        for y in 0..h {
            for x in 0..w {
                pixels.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, 128]);
            }
        }
        RgbImage::from_raw(w, h, pixels).unwrap()
    }

    #[test]
    fn sizes_follow_the_definitions() {
        let img = gradient(400, 300);
        let mut rng = Rng::new(1);
        let size = |e: Edit, rng: &mut Rng| {
            let out = apply(e, &img, rng).unwrap();
            assert_eq!(
                out.pixels.len(),
                (out.width * out.height * 3) as usize,
                "{e:?}"
            );
            (out.width, out.height)
        };
        assert_eq!(size(Edit::CropCenter, &mut rng), (283, 212));
        assert_eq!(size(Edit::CropCorner, &mut rng), (283, 212));
        assert_eq!(size(Edit::JpegQ20Small, &mut rng), (160, 120));
        assert_eq!(size(Edit::Stretch14, &mut rng), (560, 300));
        for e in [
            Edit::Rotate10,
            Edit::Darken40,
            Edit::Grayscale,
            Edit::Overlay,
            Edit::Blur3,
            Edit::HFlip,
            Edit::Paste40,
            Edit::Paste40Blocks,
        ] {
            assert_eq!(size(e, &mut rng), (400, 300), "{e:?}");
        }
    }

    #[test]
    fn pixel_edits_do_what_they_say() {
        let img = gradient(200, 150);
        let mut rng = Rng::new(2);
        let flip = apply(Edit::HFlip, &img, &mut rng).unwrap();
        assert_eq!(flip.pixel(0, 5), img.pixel(199, 5));
        let dark = apply(Edit::Darken40, &img, &mut rng).unwrap();
        assert_eq!(dark.pixel(100, 10), [60, 6, 77]);
        let gray = apply(Edit::Grayscale, &img, &mut rng).unwrap();
        let [r, g, b] = gray.pixel(50, 50);
        assert!(r == g && g == b);
        let centre = apply(Edit::CropCenter, &img, &mut rng).unwrap();
        assert_eq!(
            centre.pixel(0, 0),
            img.pixel((200 - 141) / 2, (150 - 106) / 2)
        );
        // Rotation keeps the centre and whitens the corners.
        let rot = apply(Edit::Rotate10, &img, &mut rng).unwrap();
        assert_eq!(rot.pixel(0, 0), [255, 255, 255]);
        let c = img.pixel(100, 75);
        let rc = rot.pixel(100, 75);
        assert!((0..3).all(|i| c[i].abs_diff(rc[i]) <= 2), "{c:?} {rc:?}");
    }

    #[test]
    fn overlay_covers_about_fifteen_percent() {
        let img = RgbImage::filled(640, 480, [1, 2, 3]);
        let out = apply(Edit::Overlay, &img, &mut Rng::new(3)).unwrap();
        let changed = out
            .pixels
            .chunks_exact(3)
            .filter(|p| *p != [1, 2, 3])
            .count();
        let frac = changed as f64 / (640.0 * 480.0);
        assert!((0.12..0.18).contains(&frac), "{frac}");
    }

    #[test]
    fn paste_keeps_a_scaled_copy_on_a_plain_canvas() {
        let img = gradient(300, 200);
        let out = apply(Edit::Paste40, &img, &mut Rng::new(4)).unwrap();
        let corners = [
            out.pixel(0, 0),
            out.pixel(299, 0),
            out.pixel(0, 199),
            out.pixel(299, 199),
        ];
        // At least three corners show the plain background (the copy covers at most one).
        let bg = corners
            .iter()
            .filter(|c| corners.iter().filter(|d| d == c).count() >= 3)
            .count();
        assert!(bg >= 3, "{corners:?}");
    }

    #[test]
    fn rng_is_deterministic() {
        let a: Vec<u64> = (0..5)
            .scan(Rng::new(9), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(Rng::new(9), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
    }
}
