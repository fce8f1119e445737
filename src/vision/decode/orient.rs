//! EXIF orientation: the eight flips and rotations applied to a decoded bitmap.

use super::RgbImage;

/// Applies an EXIF orientation (1..=8; anything else is treated as 1) to an image.
pub fn apply_orientation(img: RgbImage, orientation: u8) -> RgbImage {
    let (w, h) = (img.width as usize, img.height as usize);
    if !(2..=8).contains(&orientation) || w == 0 || h == 0 {
        return img;
    }
    let (ow, oh) = if orientation >= 5 { (h, w) } else { (w, h) };
    // For output pixel (x, y), the source pixel is (sx, sy) = (ax*x + bx*y + cx,
    // ay*x + by*y + cy). Derived from the EXIF definitions: 2 mirror, 3 rotate 180,
    // 4 flip, 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 270° clockwise.
    let (wm, hm) = (w as isize - 1, h as isize - 1);
    let (ax, bx, cx, ay, by, cy): (isize, isize, isize, isize, isize, isize) = match orientation {
        2 => (-1, 0, wm, 0, 1, 0),
        3 => (-1, 0, wm, 0, -1, hm),
        4 => (1, 0, 0, 0, -1, hm),
        5 => (0, 1, 0, 1, 0, 0),
        6 => (0, 1, 0, -1, 0, hm),
        7 => (0, -1, wm, -1, 0, hm),
        _ => (0, -1, wm, 1, 0, 0), // 8
    };
    let src = &img.pixels;
    let mut out = vec![0u8; ow * oh * 3];
    // Walk the output in tiles so that the transposing cases read the source with some
    // cache locality (a plain row walk strides a whole source row per pixel).
    const TILE: usize = 32;
    for ty in (0..oh).step_by(TILE) {
        for tx in (0..ow).step_by(TILE) {
            for y in ty..(ty + TILE).min(oh) {
                let row = &mut out[y * ow * 3..(y + 1) * ow * 3];
                for x in tx..(tx + TILE).min(ow) {
                    let (xi, yi) = (x as isize, y as isize);
                    let sx = (ax * xi + bx * yi + cx) as usize;
                    let sy = (ay * xi + by * yi + cy) as usize;
                    let s = (sy * w + sx) * 3;
                    row[x * 3..x * 3 + 3].copy_from_slice(&src[s..s + 3]);
                }
            }
        }
    }
    RgbImage {
        width: ow as u32,
        height: oh as u32,
        pixels: out,
    }
}
