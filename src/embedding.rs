//! The embedding vector every layer passes around: its dimension, L2 normalisation and
//! the dot product that is cosine on normalised vectors. One definition; the network
//! (`vision`), the indexes (`index`), the store and the benchmarks all import it.
//!
//! Not here: how an embedding is computed (`vision`) or searched (`index`).

/// Width of an image embedding: EfficientNet-Lite0's pooled features.
pub const EMBEDDING_DIM: usize = 1280;

/// Width of a copy-detection descriptor (SSCD, `vision::copy_model`).
pub const COPY_DIM: usize = 512;

/// Which of an image's two vectors: the semantic embedding ("looks alike") or the
/// copy-detection descriptor ("the same picture, edited").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Descriptor {
    Semantic,
    Copy,
}

impl Descriptor {
    pub const ALL: [Descriptor; 2] = [Descriptor::Semantic, Descriptor::Copy];

    /// Its vector width.
    pub fn dim(self) -> usize {
        match self {
            Descriptor::Semantic => EMBEDDING_DIM,
            Descriptor::Copy => COPY_DIM,
        }
    }
}

/// L2-normalises in place; a zero vector stays zero.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Dot product with eight independent accumulators so the compiler vectorises it. Equal
/// to the cosine for L2-normalised vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// What one image database indexes: both descriptors (the default), or one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DbDescriptors {
    #[default]
    Both,
    /// The semantic embedding only ("looks alike").
    Similar,
    /// The copy-detection descriptor only ("the same picture").
    Copy,
}

impl DbDescriptors {
    pub fn includes(self, d: Descriptor) -> bool {
        matches!(
            (self, d),
            (DbDescriptors::Both, _)
                | (DbDescriptors::Similar, Descriptor::Semantic)
                | (DbDescriptors::Copy, Descriptor::Copy)
        )
    }

    /// Its stable code in the store (never reuse a value).
    pub fn code(self) -> i64 {
        match self {
            DbDescriptors::Both => 0,
            DbDescriptors::Similar => 1,
            DbDescriptors::Copy => 2,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(DbDescriptors::Both),
            1 => Some(DbDescriptors::Similar),
            2 => Some(DbDescriptors::Copy),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_normalize_handles_zero() {
        let mut z = [0.0f32; 3];
        l2_normalize(&mut z);
        assert_eq!(z, [0.0; 3]);
        let mut v = [3.0f32, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
    }

    #[test]
    fn dot_matches_naive_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.25).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.01).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
