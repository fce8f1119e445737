//! The `imgsearch` binary as a user runs it: embed and classify print one JSON line per
//! image; a bad file gives one stderr line naming it, a non-zero exit, and the rest still run.

use crate::common::{bin, sample};

#[test]
fn embed_prints_unit_vectors_per_file_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-an-image.jpg");
    std::fs::write(&bad, b"GIF89a....").unwrap();
    let good = [
        sample("n01440764_tench.JPEG"),
        sample("n15075141_toilet_tissue.JPEG"),
    ];
    let out = bin()
        .arg("embed")
        .arg(&good[0])
        .arg(&bad)
        .arg(&good[1])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a bad file must give a non-zero exit"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("not-an-image.jpg") && stderr.contains("GIF"),
        "{stderr}"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, path) in lines.iter().zip(&good) {
        assert_eq!(line["file"].as_str().unwrap(), path.to_str().unwrap());
        let emb: Vec<f64> = line["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(emb.len(), 1280);
        let norm: f64 = emb.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[test]
fn classify_names_the_right_class() {
    let out = bin()
        .arg("classify")
        .arg(sample("n15075141_toilet_tissue.JPEG"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = v["top5"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    assert_eq!(top[0]["class"], 999);
    assert_eq!(top[0]["label"], "toilet tissue");
    let p0 = top[0]["prob"].as_f64().unwrap();
    assert!(p0 > 0.5 && p0 <= 1.0);
}

#[test]
fn export_onnx_writes_a_graph() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("m.onnx");
    let out = bin()
        .args(["model", "export-onnx"])
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let len = std::fs::metadata(&out_path).unwrap().len();
    assert!(
        len > 10_000_000,
        "graph of {len} bytes is too small to hold the weights"
    );
}

#[test]
fn missing_weights_say_how_to_get_them() {
    let out = bin()
        .args(["--weights", "/nonexistent/w.pth", "embed"])
        .arg(sample("n01440764_tench.JPEG"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scripts/setup.sh"), "{stderr}");
}

/// Shell completions and man pages come from the same argument definitions as `--help`.
#[test]
fn completions_and_man_pages_cover_every_command() {
    for (shell, marker) in [
        ("bash", "_imgsearch()"),
        ("zsh", "#compdef imgsearch"),
        ("fish", "complete -c imgsearch"),
    ] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}");
        for command in ["serve", "import", "backup", "search", "completions"] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let out = bin().arg("man").output().unwrap();
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.contains(".TH imgsearch 1") && page.contains("serve"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    assert!(bin().arg("man").arg(dir.path()).status().unwrap().success());
    for page in [
        "imgsearch.1",
        "imgsearch-serve.1",
        "imgsearch-db-create.1",
        "imgsearch-import.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.starts_with(".ie") && text.contains(".TH"), "{page}");
    }
    // An unknown flag is a usage error: exit code 2.
    assert_eq!(
        bin().arg("--no-such-flag").output().unwrap().status.code(),
        Some(2)
    );
}
