//! Replays every committed fuzz input (`fuzz/seeds/<target>/`, and the inputs that once
//! failed, `fuzz/regressions/<target>/`) through the fuzz harness, so each stays handled on
//! every test run without libFuzzer. The fuzzing itself: `scripts/fuzz.sh`.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::path::Path;

#[test]
fn every_committed_fuzz_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for target in harness::TARGETS {
        let mut seeds = 0;
        for dir in ["seeds", "regressions"] {
            let dir = root.join(dir).join(target);
            let Ok(entries) = fs::read_dir(&dir) else {
                assert!(!dir.ends_with("seeds"), "{} is missing", dir.display());
                continue;
            };
            for entry in entries {
                let path = entry.expect("read fuzz dir").path();
                let data = fs::read(&path).expect("read fuzz input");
                let outcome = std::panic::catch_unwind(|| harness::run(target, &data));
                assert!(outcome.is_ok(), "{target}: {} fails", path.display());
                seeds += 1;
            }
        }
        assert!(seeds > 0, "no inputs for fuzz target {target}");
        replayed += seeds;
    }
    eprintln!("replayed {replayed} fuzz inputs");
}
