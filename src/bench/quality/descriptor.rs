//! Retrieval descriptors pooled from the network's activation map (`feature_map` output,
//! 1280 channels × side × side, channel-major, non-negative since it follows a ReLU6).
//!
//! - [`mean_pool`]: global average, i.e. the network's own `features` (the plain embedding).
//! - [`gem_pool`]: generalised mean (GeM), `(mean xᵖ)^(1/p)`; p = 1 is the mean, p → ∞ the
//!   max. Large p lets a few strongly activated places (the object) outweigh wide uniform
//!   areas (backgrounds, borders, overlays).
//! - [`max_pool`]: MAC, the max per channel.
//! - [`rmac`]: R-MAC-style aggregation: GeM over square regions at several scales, each
//!   L2-normalised, summed.
//!
//! Every function returns an L2-normalised vector of the channel count. Which of these the
//! service uses, and why, is measured by `imgsearch bench quality` (README, "Search
//! quality").

use crate::embedding::l2_normalize;

/// Channels of the activation map.
pub const CHANNELS: usize = crate::embedding::EMBEDDING_DIM;

/// Checks that `map` holds `CHANNELS × side × side` floats and returns the plane size.
fn plane(map: &[f32], side: usize) -> usize {
    let plane = side * side;
    debug_assert_eq!(map.len(), CHANNELS * plane, "feature map size");
    plane
}

/// Global average pooling, L2-normalised (the plain embedding).
pub fn mean_pool(map: &[f32], side: usize) -> Vec<f32> {
    let plane = plane(map, side);
    let mut v: Vec<f32> = map
        .chunks_exact(plane.max(1))
        .map(|c| c.iter().sum::<f32>() / plane as f32)
        .collect();
    l2_normalize(&mut v);
    v
}

/// Global max pooling (MAC), L2-normalised.
pub fn max_pool(map: &[f32], side: usize) -> Vec<f32> {
    let plane = plane(map, side);
    let mut v: Vec<f32> = map
        .chunks_exact(plane.max(1))
        .map(|c| c.iter().copied().fold(0.0, f32::max))
        .collect();
    l2_normalize(&mut v);
    v
}

/// GeM pooling with exponent `p` (> 0) over the whole map, L2-normalised.
pub fn gem_pool(map: &[f32], side: usize, p: f32) -> Vec<f32> {
    gem_region(map, side, p, (0, 0, side))
}

/// GeM over the square region (x0, y0, w) of every channel, L2-normalised.
fn gem_region(map: &[f32], side: usize, p: f32, (x0, y0, w): (usize, usize, usize)) -> Vec<f32> {
    let plane = plane(map, side);
    let n = (w * w).max(1) as f32;
    let mut v: Vec<f32> = map
        .chunks_exact(plane.max(1))
        .map(|c| {
            let mut acc = 0f32;
            for y in y0..y0 + w {
                for &x in &c[y * side + x0..y * side + x0 + w] {
                    acc += pow(x.max(1e-6), p);
                }
            }
            (acc / n).powf(1.0 / p)
        })
        .collect();
    l2_normalize(&mut v);
    v
}

/// x^p with the common integer exponents done by multiplication.
fn pow(x: f32, p: f32) -> f32 {
    if p == 1.0 {
        x
    } else if p == 2.0 {
        x * x
    } else if p == 3.0 {
        x * x * x
    } else if p == 4.0 {
        (x * x) * (x * x)
    } else {
        x.powf(p)
    }
}

/// The square regions R-MAC pools at `levels` scales: level l (1-based) has l×l regions
/// of side ⌈2·side/(l+1)⌉ (the whole map at level 1), evenly spaced with overlap.
pub fn rmac_regions(side: usize, levels: usize) -> Vec<(usize, usize, usize)> {
    let mut regions = Vec::new();
    for l in 1..=levels {
        let w = if l == 1 {
            side
        } else {
            (2 * side).div_ceil(l + 1).min(side)
        };
        let span = side - w;
        for iy in 0..l {
            for ix in 0..l {
                let at = |i: usize| {
                    if l == 1 {
                        0
                    } else {
                        (i * span + (l - 1) / 2) / (l - 1)
                    }
                };
                regions.push((at(ix), at(iy), w));
            }
        }
    }
    regions.sort_unstable();
    regions.dedup();
    regions
}

/// R-MAC-style descriptor: GeM(`p`) of every region of [`rmac_regions`], each
/// L2-normalised, summed, L2-normalised.
pub fn rmac(map: &[f32], side: usize, levels: usize, p: f32) -> Vec<f32> {
    let mut sum = vec![0f32; CHANNELS];
    for region in rmac_regions(side, levels) {
        for (s, v) in sum.iter_mut().zip(gem_region(map, side, p, region)) {
            *s += v;
        }
    }
    l2_normalize(&mut sum);
    sum
}

/// Element-wise sum of L2-normalised descriptors, L2-normalised (multi-scale or
/// flip aggregation).
pub fn combine(parts: &[&[f32]]) -> Vec<f32> {
    let mut sum = vec![0f32; parts.first().map_or(0, |p| p.len())];
    for part in parts {
        for (s, v) in sum.iter_mut().zip(part.iter()) {
            *s += v;
        }
    }
    l2_normalize(&mut sum);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map whose channel c is constant `c + 1` except one hot cell per channel.
    fn map(side: usize) -> Vec<f32> {
        let plane = side * side;
        let mut m = Vec::with_capacity(CHANNELS * plane);
        for c in 0..CHANNELS {
            for i in 0..plane {
                m.push(if i == c % plane { 6.0 } else { (c % 5) as f32 });
            }
        }
        m
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn gem_spans_mean_to_max() {
        let m = map(7);
        let mean = mean_pool(&m, 7);
        let gem1 = gem_pool(&m, 7, 1.0);
        assert!(dot(&mean, &gem1) > 0.99999);
        let mac = max_pool(&m, 7);
        let gem_high = gem_pool(&m, 7, 40.0);
        assert!(dot(&mac, &gem_high) > 0.999, "{}", dot(&mac, &gem_high));
        for v in [&mean, &gem1, &mac, &gem_high] {
            assert!((dot(v, v) - 1.0).abs() < 1e-4, "{}", dot(v, v));
        }
    }

    #[test]
    fn mean_pool_matches_a_direct_average() {
        let m = map(3);
        let v = mean_pool(&m, 3);
        // Channel 0: values 0 except the hot cell 6 → mean 6/9; channel 1: (8·1 + 6)/9.
        let ratio = v[1] / v[0];
        assert!((ratio - 14.0 / 6.0).abs() < 1e-5, "{ratio}");
    }

    #[test]
    fn rmac_regions_cover_the_map() {
        let r = rmac_regions(7, 3);
        assert_eq!(r.len(), 1 + 4 + 9);
        assert!(r.contains(&(0, 0, 7)));
        for &(x, y, w) in &r {
            assert!(x + w <= 7 && y + w <= 7, "{x},{y},{w}");
        }
        // Level 2 regions (side 5) touch both edges.
        assert!(r.contains(&(0, 0, 5)) && r.contains(&(2, 2, 5)));
        let v = rmac(&map(7), 7, 3, 3.0);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn combine_normalises_the_sum() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let c = combine(&[&a, &b]);
        assert!((c[0] - c[1]).abs() < 1e-6 && (dot(&c, &c) - 1.0).abs() < 1e-6);
    }
}
