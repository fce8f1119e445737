//! Trimming uniform margins: letterbox bars, padding, a photo pasted onto a plain canvas,
//! a product shot on a white backdrop. The network sees the whole image squashed to a
//! square, so wide plain margins shrink the content and add strong synthetic edges; both
//! move the embedding away from the un-padded original. Cutting them off before embedding
//! (database images and queries alike) makes the embedding follow the content.
//!
//! A margin is the run of rows (columns) from an edge inward in which nearly every pixel
//! (≥ [`ROW_SHARE`]) is within [`TOLERANCE`] grey levels (per channel) of that edge's
//! colour (the median of the outermost row or column), so JPEG noise and a little
//! vignetting do not stop it. Nothing is trimmed when the content left would be smaller
//! than [`MIN_KEEP`] of either side, or when no edge has a margin of at least
//! [`MIN_MARGIN`] of its side (a one-pixel frame is not worth a resize).

use super::decode::RgbImage;

/// Per-channel distance from the edge colour still counted as margin.
pub const TOLERANCE: u8 = 20;
/// Share of a row's (column's) pixels that must match for it to be margin.
pub const ROW_SHARE: f64 = 0.98;
/// Least share of each side that the content must keep.
pub const MIN_KEEP: f64 = 0.2;
/// Least margin (share of the side) worth trimming.
pub const MIN_MARGIN: f64 = 0.03;

/// The content box (x, y, width, height) of `img` without its uniform margins, or `None`
/// when there is nothing worth trimming.
pub fn content_box(img: &RgbImage) -> Option<(u32, u32, u32, u32)> {
    let (w, h) = (img.width as usize, img.height as usize);
    if w < 8 || h < 8 || img.pixels.len() != w * h * 3 {
        return None;
    }
    let px = |x: usize, y: usize| {
        let i = (y * w + x) * 3;
        [img.pixels[i], img.pixels[i + 1], img.pixels[i + 2]]
    };
    let near = |a: [u8; 3], b: [u8; 3]| (0..3).all(|c| a[c].abs_diff(b[c]) <= TOLERANCE);
    // Rows (or columns) are scanned over the span not yet trimmed on the other axis.
    let line_is_margin = |colour: [u8; 3], pixels: &mut dyn Iterator<Item = [u8; 3]>, n: usize| {
        let matching = pixels.filter(|&p| near(p, colour)).count();
        matching as f64 >= ROW_SHARE * n as f64
    };
    let median = |mut v: Vec<[u8; 3]>| {
        let mid = v.len() / 2;
        let mut out = [0u8; 3];
        for (c, o) in out.iter_mut().enumerate() {
            v.sort_unstable_by_key(|p| p[c]);
            *o = v[mid][c];
        }
        out
    };
    // Top and bottom over the full width.
    let top_colour = median((0..w).map(|x| px(x, 0)).collect());
    let mut top = 0;
    while top < h && line_is_margin(top_colour, &mut (0..w).map(|x| px(x, top)), w) {
        top += 1;
    }
    let bottom_colour = median((0..w).map(|x| px(x, h - 1)).collect());
    let mut bottom = h;
    while bottom > top && line_is_margin(bottom_colour, &mut (0..w).map(|x| px(x, bottom - 1)), w) {
        bottom -= 1;
    }
    if bottom <= top {
        return None; // a plain image: nothing but margin
    }
    // Left and right over the rows left.
    let rows = bottom - top;
    let left_colour = median((top..bottom).map(|y| px(0, y)).collect());
    let mut left = 0;
    while left < w && line_is_margin(left_colour, &mut (top..bottom).map(|y| px(left, y)), rows) {
        left += 1;
    }
    let right_colour = median((top..bottom).map(|y| px(w - 1, y)).collect());
    let mut right = w;
    while right > left
        && line_is_margin(
            right_colour,
            &mut (top..bottom).map(|y| px(right - 1, y)),
            rows,
        )
    {
        right -= 1;
    }
    let (cw, ch) = (right.saturating_sub(left), bottom - top);
    let keeps_enough = cw as f64 >= MIN_KEEP * w as f64 && ch as f64 >= MIN_KEEP * h as f64;
    let worth = [top, h - bottom]
        .iter()
        .any(|&m| m as f64 >= MIN_MARGIN * h as f64)
        || [left, w - right]
            .iter()
            .any(|&m| m as f64 >= MIN_MARGIN * w as f64);
    (keeps_enough && worth).then_some((left as u32, top as u32, cw as u32, ch as u32))
}

/// `img` without its uniform margins (a copy of the content box), or `None` when
/// [`content_box`] finds nothing worth trimming.
pub fn trim(img: &RgbImage) -> Option<RgbImage> {
    let (x0, y0, cw, ch) = content_box(img)?;
    let mut pixels = Vec::with_capacity(cw as usize * ch as usize * 3);
    for y in y0..y0 + ch {
        let start = ((y * img.width + x0) * 3) as usize;
        pixels.extend_from_slice(&img.pixels[start..start + cw as usize * 3]);
    }
    RgbImage::from_raw(cw, ch, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w`×`h` canvas of `bg` with a noisy patch at (x, y, pw, ph).
    fn pasted(w: u32, h: u32, bg: [u8; 3], (x, y, pw, ph): (u32, u32, u32, u32)) -> RgbImage {
        let mut img = RgbImage::filled(w, h, bg);
        for yy in y..y + ph {
            for xx in x..x + pw {
                let i = ((yy * w + xx) * 3) as usize;
                let v = ((xx * 37 + yy * 91) % 200) as u8 + 20;
                img.pixels[i..i + 3].copy_from_slice(&[v, 255 - v, v / 2]);
            }
        }
        img
    }

    #[test]
    fn finds_a_pasted_photo() {
        let img = pasted(400, 300, [30, 140, 200], (50, 100, 160, 120));
        assert_eq!(content_box(&img), Some((50, 100, 160, 120)));
        let t = trim(&img).unwrap();
        assert_eq!((t.width, t.height), (160, 120));
        assert_eq!(t.pixel(0, 0), img.pixel(50, 100));
    }

    #[test]
    fn letterbox_bars_of_different_colours() {
        let mut img = pasted(300, 300, [0, 0, 0], (0, 40, 300, 200));
        // White bar at the bottom instead of black.
        for y in 240..300 {
            for x in 0..300 {
                let i = ((y * 300 + x) * 3) as usize;
                img.pixels[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        assert_eq!(content_box(&img), Some((0, 40, 300, 200)));
    }

    #[test]
    fn leaves_ordinary_images_alone() {
        // Content to the edges.
        let img = pasted(200, 200, [0, 0, 0], (0, 0, 200, 200));
        assert_eq!(content_box(&img), None);
        // A thin frame is not worth it.
        let framed = pasted(200, 200, [9, 9, 9], (2, 2, 196, 196));
        assert_eq!(content_box(&framed), None);
        // All plain.
        assert_eq!(content_box(&RgbImage::filled(100, 100, [5, 5, 5])), None);
        // Content too small to trust.
        let speck = pasted(500, 500, [0, 0, 0], (200, 200, 20, 20));
        assert_eq!(content_box(&speck), None);
    }

    #[test]
    fn tolerates_jpeg_noise_in_the_margin() {
        let mut img = pasted(300, 200, [100, 100, 100], (100, 50, 120, 100));
        for (i, v) in img.pixels.iter_mut().enumerate() {
            if i % 7 == 0 && *v == 100 {
                *v = 108;
            }
        }
        assert_eq!(content_box(&img), Some((100, 50, 120, 100)));
    }
}
