//! Acceptance: our EfficientNet-Lite0 agrees with the reference outputs on the 224×224
//! inputs in ../shared/reference/efficientnet-lite0 (same top-1, embedding cosine ≥ 0.9999).

use std::path::PathBuf;

use imgsearch::vision::model::{l2_normalize, top_k, EfficientNet, ModelFiles, ModelOptions};
use imgsearch::vision::preprocess::INPUT_LEN;

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/efficientnet-lite0")
}

#[test]
fn matches_reference_embeddings_and_top1() {
    let files = ModelFiles::locate(None, None).expect("model files (run scripts/setup.sh)");
    let mut model = EfficientNet::load(&files, ModelOptions::default()).expect("model loads");
    let refs = std::fs::read_to_string(reference_dir().join("embeddings-224.jsonl"))
        .expect("reference embeddings present in ../shared");
    let mut checked = 0;
    for line in refs.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let path = reference_dir().join(r["input"].as_str().unwrap());
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (224, 224));
        let mut input = vec![0f32; INPUT_LEN];
        let plane = 224 * 224;
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                input[c * plane + i] = (p[c] as f32 - 127.0) / 128.0;
            }
        }
        let out = model.run(&input, 1).unwrap();
        let mut emb = out.features_of(0).to_vec();
        l2_normalize(&mut emb);
        let want: Vec<f32> = r["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let cos: f32 = emb.iter().zip(&want).map(|(a, b)| a * b).sum::<f32>()
            / want.iter().map(|x| x * x).sum::<f32>().sqrt();
        let top1 = top_k(out.logits_of(0), 1)[0].0;
        let want_top1 = r["top5"][0].as_u64().unwrap() as usize;
        println!("{}: cos {cos:.6} top1 {top1} (ref {want_top1})", path.display());
        assert_eq!(top1, want_top1, "{}", path.display());
        assert!(cos >= 0.9999, "{}: cosine {cos}", path.display());
        checked += 1;
    }
    assert_eq!(checked, 12);
}
