//! Human-readable names of the 1,000 ImageNet-1k classes, indexed like the classifier's
//! logits (class i = the i-th wnid in ascending order). The data file ships in the binary.

use std::sync::OnceLock;

const LABELS_FILE: &str = include_str!("../../assets/imagenet-labels.txt");

/// All 1,000 labels, in class-index order.
pub fn labels() -> &'static [&'static str] {
    static LABELS: OnceLock<Vec<&'static str>> = OnceLock::new();
    LABELS.get_or_init(|| LABELS_FILE.lines().collect())
}

/// The label of class `index`, or "unknown" for an index out of range.
pub fn label(index: usize) -> &'static str {
    labels().get(index).copied().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousand_labels_in_wnid_order() {
        assert_eq!(labels().len(), 1000);
        assert_eq!(label(0), "tench");
        assert_eq!(label(999), "toilet tissue");
        assert_eq!(label(5000), "unknown");
    }
}
