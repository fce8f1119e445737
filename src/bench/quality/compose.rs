//! Random compositions of edits for `bench copies`: two or three edit families drawn per
//! query, each with parameters drawn too, so that no fixed list of edits can be tuned to.
//! Deterministic given the seed.
//!
//! Families: `crop` (a random window holding 25–80% of the area, anywhere), `rotate`
//! (3–25°, either way, fill black, white or a random colour), `noise` (Gaussian, σ 6–25
//! levels), `blur` (Gaussian, σ 1–4 px), `jpeg` (downscaled to 35–80% per side, quality
//! 8–30), `colour` (one of: hue rotation, saturation ×0–1.8, contrast ×0.5–1.6, gamma
//! 0.5–2, grey, sepia, brightness ±45%), `overlay` (caption bar with text strokes and a logo,
//! or up to 6 emoji-like discs), `frame` (a border of 4–18% per side in a random colour,
//! or a blurred-copy "letterbox"), `aspect` (one axis ×0.6–1.6), `mirror`, `screenshot`
//! (the picture at 45–80% inside a UI mock-up: title bar, side panel, buttons).
//!
//! Not here: scoring (`copies`).

use image::imageops;

use super::edits::{
    crop, fill_rect, from_image, jpeg_round_trip, map_pixels, overlay, rotate, to_image, EditError,
    Rng,
};
use crate::vision::decode::RgbImage;
use crate::vision::preprocess::resize;

/// One edit family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Crop,
    Rotate,
    Noise,
    Blur,
    Jpeg,
    Colour,
    Overlay,
    Frame,
    Aspect,
    Mirror,
    Screenshot,
}

impl Family {
    pub const ALL: [Family; 11] = [
        Family::Crop,
        Family::Rotate,
        Family::Noise,
        Family::Blur,
        Family::Jpeg,
        Family::Colour,
        Family::Overlay,
        Family::Frame,
        Family::Aspect,
        Family::Mirror,
        Family::Screenshot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Crop => "crop",
            Family::Rotate => "rotate",
            Family::Noise => "noise",
            Family::Blur => "blur",
            Family::Jpeg => "jpeg",
            Family::Colour => "colour",
            Family::Overlay => "overlay",
            Family::Frame => "frame",
            Family::Aspect => "aspect",
            Family::Mirror => "mirror",
            Family::Screenshot => "screenshot",
        }
    }
}

/// Uniform in `[lo, hi)`.
fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn colour(rng: &mut Rng) -> [u8; 3] {
    [
        rng.below(256) as u8,
        rng.below(256) as u8,
        rng.below(256) as u8,
    ]
}

/// Two or three distinct families, in the order they are applied.
pub fn draw_families(rng: &mut Rng) -> Vec<Family> {
    let n = 2 + rng.below(2) as usize;
    let mut pool = Family::ALL.to_vec();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(pool.remove(rng.below(pool.len() as u64) as usize));
    }
    out
}

/// Applies the families in order, each with freshly drawn parameters. The result is at
/// least 32 px a side (the bench then brings it inside the API's rules).
pub fn apply_all(
    img: &RgbImage,
    families: &[Family],
    rng: &mut Rng,
) -> Result<RgbImage, EditError> {
    let mut out = img.clone();
    for &f in families {
        out = apply(f, &out, rng)?;
    }
    Ok(out)
}

fn apply(f: Family, img: &RgbImage, rng: &mut Rng) -> Result<RgbImage, EditError> {
    let (w, h) = (img.width, img.height);
    Ok(match f {
        Family::Crop => {
            let area = uniform(rng, 0.25, 0.8);
            let aspect = uniform(rng, 0.75, 1.33);
            let cw = ((f64::from(w) * (area * aspect).sqrt()).round() as u32).clamp(32, w);
            let ch = ((f64::from(h) * (area / aspect).sqrt()).round() as u32).clamp(32, h);
            let x = rng.below(u64::from(w - cw + 1)) as u32;
            let y = rng.below(u64::from(h - ch + 1)) as u32;
            crop(img, x, y, cw, ch)
        }
        Family::Rotate => {
            let deg = uniform(rng, 3.0, 25.0) * if rng.below(2) == 0 { 1.0 } else { -1.0 };
            let fill = match rng.below(3) {
                0 => [0; 3],
                1 => [255; 3],
                _ => colour(rng),
            };
            rotate(img, deg.to_radians(), fill)
        }
        Family::Noise => {
            let sigma = uniform(rng, 6.0, 25.0);
            let mut out = img.clone();
            for v in out.pixels.iter_mut() {
                // Box–Muller from two uniforms.
                let (u1, u2) = (uniform(rng, 1e-9, 1.0), uniform(rng, 0.0, 1.0));
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                *v = (f64::from(*v) + sigma * z).round().clamp(0.0, 255.0) as u8;
            }
            out
        }
        Family::Blur => from_image(imageops::blur(
            &to_image(img),
            uniform(rng, 1.0, 4.0) as f32,
        )),
        Family::Jpeg => {
            let s = uniform(rng, 0.35, 0.8);
            let nw = ((f64::from(w) * s).round() as u32).max(32);
            let nh = ((f64::from(h) * s).round() as u32).max(32);
            jpeg_round_trip(&resize(img, nw, nh)?, 8 + rng.below(23) as u8)?
        }
        Family::Colour => colour_change(img, rng),
        Family::Overlay => {
            if rng.below(2) == 0 {
                overlay(img, rng)
            } else {
                emoji(img, rng)
            }
        }
        Family::Frame => frame(img, rng)?,
        Family::Aspect => {
            let s = uniform(rng, 0.6, 1.6);
            if rng.below(2) == 0 {
                resize(img, ((f64::from(w) * s).round() as u32).max(32), h)?
            } else {
                resize(img, w, ((f64::from(h) * s).round() as u32).max(32))?
            }
        }
        Family::Mirror => from_image(imageops::flip_horizontal(&to_image(img))),
        Family::Screenshot => screenshot(img, rng)?,
    })
}

fn colour_change(img: &RgbImage, rng: &mut Rng) -> RgbImage {
    let luma =
        |[r, g, b]: [u8; 3]| 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
    let clamp = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    match rng.below(7) {
        0 => {
            // Hue rotation about the grey axis.
            let a = uniform(rng, 0.5, 5.8);
            let (s, c) = a.sin_cos();
            let k: f64 = 1.0 / 3.0;
            let q = k.sqrt();
            let m = [
                [
                    c + (1.0 - c) * k,
                    k * (1.0 - c) - q * s,
                    k * (1.0 - c) + q * s,
                ],
                [
                    k * (1.0 - c) + q * s,
                    c + k * (1.0 - c),
                    k * (1.0 - c) - q * s,
                ],
                [
                    k * (1.0 - c) - q * s,
                    k * (1.0 - c) + q * s,
                    c + k * (1.0 - c),
                ],
            ];
            map_pixels(img, |p| {
                let v = p.map(f64::from);
                [0, 1, 2].map(|i| clamp(m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2]))
            })
        }
        1 => {
            let f = uniform(rng, 0.0, 1.8);
            map_pixels(img, |p| {
                let y = luma(p);
                p.map(|v| clamp(y + f * (f64::from(v) - y)))
            })
        }
        2 => {
            let f = uniform(rng, 0.5, 1.6);
            map_pixels(img, |p| {
                p.map(|v| clamp(128.0 + f * (f64::from(v) - 128.0)))
            })
        }
        3 => {
            let g = uniform(rng, 0.5, 2.0);
            map_pixels(img, |p| {
                p.map(|v| clamp(255.0 * (f64::from(v) / 255.0).powf(g)))
            })
        }
        4 => map_pixels(img, |p| [clamp(luma(p)); 3]),
        5 => map_pixels(img, |p| {
            let y = luma(p);
            [
                clamp(y * 1.07 + 20.0),
                clamp(y * 0.95 + 5.0),
                clamp(y * 0.75),
            ]
        }),
        _ => {
            let f = uniform(rng, 0.55, 1.45);
            map_pixels(img, |p| p.map(|v| clamp(f64::from(v) * f)))
        }
    }
}

/// Up to six filled discs of random colours and sizes ("stickers").
fn emoji(img: &RgbImage, rng: &mut Rng) -> RgbImage {
    let mut out = img.clone();
    let (w, h) = (img.width, img.height);
    for _ in 0..1 + rng.below(6) {
        let r = (f64::from(w.min(h)) * uniform(rng, 0.05, 0.14)).max(2.0);
        let (cx, cy) = (
            uniform(rng, 0.0, f64::from(w)),
            uniform(rng, 0.0, f64::from(h)),
        );
        let (face, eye) = (colour(rng), colour(rng));
        let (x0, x1) = ((cx - r).max(0.0) as u32, ((cx + r) as u32).min(w));
        let (y0, y1) = ((cy - r).max(0.0) as u32, ((cy + r) as u32).min(h));
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (f64::from(x) - cx, f64::from(y) - cy);
                if dx * dx + dy * dy <= r * r {
                    let eyes = ((dx.abs() - r * 0.35).powi(2) + (dy + r * 0.25).powi(2))
                        < (r * 0.15).powi(2);
                    fill_rect(&mut out, x, y, 1, 1, if eyes { eye } else { face });
                }
            }
        }
    }
    out
}

/// A border of random width per side in one colour, or the picture letterboxed on a
/// blurred, enlarged copy of itself.
fn frame(img: &RgbImage, rng: &mut Rng) -> Result<RgbImage, EditError> {
    let (w, h) = (img.width, img.height);
    let mut side = |len: u32| (f64::from(len) * uniform(rng, 0.04, 0.18)).round() as u32;
    let (l, r, t, b) = (side(w), side(w), side(h), side(h));
    let (cw, ch) = (w + l + r, h + t + b);
    let mut canvas = if rng.below(3) == 0 {
        from_image(imageops::blur(&to_image(&resize(img, cw, ch)?), 12.0))
    } else {
        RgbImage::filled(cw, ch, colour(rng))
    };
    paste(&mut canvas, img, l, t);
    Ok(canvas)
}

/// The picture inside a mock application window: title bar, side panel, toolbar buttons.
fn screenshot(img: &RgbImage, rng: &mut Rng) -> Result<RgbImage, EditError> {
    let (w, h) = (img.width, img.height);
    let s = uniform(rng, 0.45, 0.8);
    let (pw, ph) = (
        ((f64::from(w) * s).round() as u32).max(32),
        ((f64::from(h) * s).round() as u32).max(32),
    );
    let pic = resize(img, pw, ph)?;
    let ui = [[240, 240, 240], [30, 30, 36], [250, 250, 250]][rng.below(3) as usize];
    let mut canvas = RgbImage::filled(w, h, ui);
    let title = (h / 14).max(8);
    fill_rect(&mut canvas, 0, 0, w, title, colour(rng));
    let panel = (w - pw).min(w / 4);
    fill_rect(&mut canvas, 0, title, panel, h - title, [200, 200, 205]);
    for i in 0..6 {
        let y = title + 8 + i * (title + 6);
        fill_rect(
            &mut canvas,
            6,
            y,
            panel.saturating_sub(12),
            title / 2,
            colour(rng),
        );
    }
    let x0 = panel + (w - panel - pw.min(w - panel)) / 2;
    let y0 = title + (h - title).saturating_sub(ph) / 2;
    paste(&mut canvas, &pic, x0, y0);
    Ok(canvas)
}

/// Copies `src` onto `dst` at (x0, y0), clipped.
fn paste(dst: &mut RgbImage, src: &RgbImage, x0: u32, y0: u32) {
    let cw = src.width.min(dst.width.saturating_sub(x0)) as usize;
    for y in 0..src.height.min(dst.height.saturating_sub(y0)) {
        let s = (y * src.width * 3) as usize;
        let d = (((y0 + y) * dst.width + x0) * 3) as usize;
        dst.pixels[d..d + cw * 3].copy_from_slice(&src.pixels[s..s + cw * 3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_keeps_a_usable_image_and_is_deterministic() {
        let img = RgbImage {
            width: 120,
            height: 90,
            pixels: (0..120 * 90 * 3).map(|i| (i * 7 % 251) as u8).collect(),
        };
        for f in Family::ALL {
            for seed in 0..4 {
                let a = apply(f, &img, &mut Rng::new(seed)).unwrap();
                let b = apply(f, &img, &mut Rng::new(seed)).unwrap();
                assert_eq!(a.pixels, b.pixels, "{f:?}");
                assert!(a.width >= 32 && a.height >= 32, "{f:?}");
                assert_eq!(a.pixels.len(), (a.width * a.height * 3) as usize);
            }
        }
        let fams = draw_families(&mut Rng::new(3));
        assert!((2..=3).contains(&fams.len()));
        let mut dedup = fams.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), fams.len());
    }
}
