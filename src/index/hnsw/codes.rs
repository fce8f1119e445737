//! The graph's vector codes: each vector scaled so its largest component is ±127 and
//! rounded to i8, with the inverse of the code's length kept beside it, so that the cosine
//! of two codes is one integer dot product and two multiplications.
//!
//! Why ±127 per vector: a 1280-d unit embedding has components near 0.03; scaling by 127
//! (a cast) would leave ±3 levels, scaling each vector to its own maximum uses all 8 bits,
//! and cosine ignores a per-vector scale. Not here: the graph (`super`).

/// One vector's code and the inverse of its length (0 for a zero vector).
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    pub bytes: Vec<i8>,
    pub inv_norm: f32,
}

impl Code {
    pub fn of(v: &[f32]) -> Self {
        let bytes = quantize(v);
        let inv_norm = inv_norm(&bytes);
        Self { bytes, inv_norm }
    }
}

/// `v` scaled so that its largest-magnitude component is ±127, rounded to i8. A zero (or
/// non-finite) vector gives zeros.
pub fn quantize(v: &[f32]) -> Vec<i8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if !(max > 0.0 && max.is_finite()) {
        return vec![0; v.len()];
    }
    let scale = 127.0 / max;
    v.iter()
        .map(|x| (x * scale).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

/// 1 / |code|, or 0 for a zero code (whose cosine to anything is then 0).
pub fn inv_norm(code: &[i8]) -> f32 {
    let sq = dot_i8(code, code);
    if sq > 0 {
        1.0 / (sq as f32).sqrt()
    } else {
        0.0
    }
}

/// 1 − cosine of two codes: the graph's distance.
#[inline]
pub fn distance(a: &[i8], a_inv: f32, b: &[i8], b_inv: f32) -> f32 {
    1.0 - dot_i8(a, b) as f32 * a_inv * b_inv
}

/// Σ a·b over i8 components, in i32 (exact: 1280 × 128² fits easily).
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU has AVX-512 VNNI and BW (checked just above).
            return unsafe { dot_i8_vnni(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512BW (checked just above).
            return unsafe { dot_i8_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    dot_i8_portable(a, b)
}

/// 64 bytes per step with VNNI's u8 × i8 multiply-add: Σ (a + 128)·b − 128·Σ b, where
/// `a ^ 0x80` is `a + 128` as an unsigned byte and Σ b comes from a second multiply-add
/// with ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot_i8_vnni(a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let flip = _mm512_set1_epi8(-128);
    let ones = _mm512_set1_epi8(1);
    let mut acc = _mm512_setzero_si512();
    let mut sum_b = _mm512_setzero_si512();
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: i + 64 <= n, within both slices; unaligned loads.
        let (x, y) = unsafe {
            (
                _mm512_loadu_si512(a.as_ptr().add(i).cast()),
                _mm512_loadu_si512(b.as_ptr().add(i).cast()),
            )
        };
        acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(x, flip), y);
        sum_b = _mm512_dpbusd_epi32(sum_b, ones, y);
        i += 64;
    }
    let mut dot = _mm512_reduce_add_epi32(acc) - 128 * _mm512_reduce_add_epi32(sum_b);
    while i < n {
        dot += a[i] as i32 * b[i] as i32;
        i += 1;
    }
    dot
}

/// 32 bytes per step: widen to i16, multiply-add pairs into i32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn dot_i8_avx512(a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = _mm512_setzero_si512();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n, within both slices; unaligned loads.
        let (x, y) = unsafe {
            (
                _mm256_loadu_si256(a.as_ptr().add(i).cast()),
                _mm256_loadu_si256(b.as_ptr().add(i).cast()),
            )
        };
        let prod = _mm512_madd_epi16(_mm512_cvtepi8_epi16(x), _mm512_cvtepi8_epi16(y));
        acc = _mm512_add_epi32(acc, prod);
        i += 32;
    }
    let mut dot = _mm512_reduce_add_epi32(acc);
    while i < n {
        dot += a[i] as i32 * b[i] as i32;
        i += 1;
    }
    dot
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_portable(a, b)
}

/// Written so the compiler turns it into widening multiply-adds (`pmaddwd`) for whatever
/// vector width the caller's target features allow.
#[inline(always)]
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    const LANES: usize = 64;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0i32; LANES / 2];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES / 2 {
            acc[i] += x[2 * i] as i16 as i32 * y[2 * i] as i16 as i32
                + x[2 * i + 1] as i16 as i32 * y[2 * i + 1] as i16 as i32;
        }
    }
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum();
    acc.iter().sum::<i32>() + tail
}

/// Asks the CPU to start loading `bytes` into cache (a hint; never faults).
#[inline]
pub fn prefetch(bytes: &[i8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut off = 0;
        while off < bytes.len() {
            // SAFETY: a prefetch of an address inside a live slice; it reads nothing.
            unsafe { _mm_prefetch(bytes.as_ptr().add(off), _MM_HINT_T0) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_plain_sum_for_every_length() {
        let mut s = 7u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            (s >> 56) as i8
        };
        for n in [0, 1, 63, 64, 65, 127, 1280, 1281] {
            let a: Vec<i8> = (0..n).map(|_| next()).collect();
            let b: Vec<i8> = (0..n).map(|_| next()).collect();
            let want: i32 = a.iter().zip(&b).map(|(&x, &y)| x as i32 * y as i32).sum();
            assert_eq!(dot_i8(&a, &b), want, "n = {n}");
            assert_eq!(dot_i8_portable(&a, &b), want, "n = {n}");
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: feature checked.
                    assert_eq!(unsafe { dot_i8_avx512(&a, &b) }, want, "n = {n}");
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: feature checked.
                    assert_eq!(unsafe { dot_i8_avx2(&a, &b) }, want, "n = {n}");
                }
            }
        }
        let extreme = vec![-128i8; 1280];
        assert_eq!(dot_i8(&extreme, &extreme), 1280 * 128 * 128);
    }

    #[test]
    fn quantize_uses_the_full_range_and_keeps_cosine() {
        let v: Vec<f32> = (0..1280)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 900.0)
            .collect();
        let c = Code::of(&v);
        assert_eq!(c.bytes.iter().map(|x| x.unsigned_abs()).max(), Some(127));
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cos = v
            .iter()
            .zip(&c.bytes)
            .map(|(x, &q)| x * q as f32)
            .sum::<f32>()
            * c.inv_norm
            / norm;
        assert!(cos > 0.999, "cosine to the original {cos}");
        assert!(distance(&c.bytes, c.inv_norm, &c.bytes, c.inv_norm).abs() < 1e-5);
        assert_eq!(quantize(&[0.0, 0.0]), vec![0, 0]);
        assert_eq!(quantize(&[f32::NAN, 1.0]), vec![0, 127]);
        assert_eq!(quantize(&[f32::INFINITY, 1.0]), vec![0, 0]);
        assert_eq!(inv_norm(&[0, 0]), 0.0);
    }
}
