//! PIP on tiny synthetic Llama models: the perturber, PertImport against a hand computation
//! from the model's gradients, the greedy loop (lowest first, rescored on fresh
//! perturbations), the structured conformance suite for every unit kind, seeded determinism
//! and bad input.

use prunus_core::Method;
use prunus_core::structured::{
    Calibration, ScoreInput, StructuredMethod, StructuredModel, StructuredOptions, StructuredOutcome, UnitKind, prune_structured,
};
use prunus_core::{Error, registry};
use prunus_model::{LlamaConfig, LlamaModel};
use prunus_pip::{Config, Distance, Edit, Perturbation, Perturber, Pip, single_edits};

const TEXTS: [&str; 4] = [
    "The quick brown fox jumps over the lazy dog, and later the host of the party was happy.",
    "In 1905 Einstein published four papers; each changed physics (and chemistry) for good.",
    "Rivers carry sediment downstream, where it settles into deltas rich with plant life.",
    "A library keeps books, maps and records, so that readers may find what others wrote.",
];
const SEQ_LEN: usize = 48;

/// The whole-word tokens of the toy tokenizer: each with a neighbour one edit away.
const LEXICON: [&str; 28] = [
    "later", "alter", "host", "ghost", "happy", "nappy", "dog", "dig", "dug", "four", "pour", "tour", "good", "food", "wood", "rich", "rice",
    "life", "wife", "lift", "books", "boots", "maps", "mops", "wrote", "write", "find", "fine",
];

/// A toy tokenizer for ASCII text and a vocabulary of 128: a space and a word of [`LEXICON`]
/// are one token (100 + its index), every other byte is a token of its own.
fn toy(s: &str) -> prunus_core::Result<Vec<u32>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            let end = (i + 1..b.len()).find(|&j| !b[j].is_ascii_alphabetic()).unwrap_or(b.len());
            if let Some(k) = LEXICON.iter().position(|w| w.as_bytes() == &b[i + 1..end]) {
                out.push(100 + k as u32);
                i = end;
                continue;
            }
        }
        out.push(u32::from(b[i]) % 128);
        i += 1;
    }
    Ok(out)
}

fn calibration() -> Calibration<'static> {
    Calibration::new(TEXTS.map(String::from).to_vec(), SEQ_LEN, &toy).unwrap()
}

/// 6 layers, hidden 32, 4 query heads in `kv` groups, FFN 48, vocab 128.
fn model(kv: usize) -> LlamaModel {
    LlamaModel::synthetic(LlamaConfig::new(128, 32, 48, 6, 4, kv, true), 11).unwrap()
}

fn pip(config: serde_json::Value) -> Pip {
    Pip::new(serde_json::from_value(config).unwrap()).unwrap()
}

fn run(m: &mut LlamaModel, method: &Pip, unit: UnitKind, target: f64) -> prunus_core::Result<StructuredOutcome> {
    prune_structured(m, &prunus_core::Built::structured(method.clone()), Some(&calibration()), &StructuredOptions::new(unit, target), &mut |_| {})
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).map(String::from).collect()
}

#[test]
fn the_perturber_edits_exactly_a_fraction_of_the_words_and_nothing_else() {
    let text = TEXTS.join(" ");
    let n = words(&text).len();
    let p = Perturber { fraction: 0.3, seed: 1 };
    let out = p.perturb(&text, 0);
    assert_eq!(out.words, n);
    assert_eq!(out.edits.len(), (0.3 * n as f64).round() as usize);
    // Non-letters are untouched and the words stay words.
    let non_letters = |s: &str| s.chars().filter(|c| !c.is_alphabetic()).collect::<String>();
    assert_eq!(non_letters(&out.text), non_letters(&text));
    let (before, after) = (words(&text), words(&out.text));
    assert_eq!(before.len(), after.len());
    let changed: Vec<(&String, &String)> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
    assert_eq!(changed.len(), out.edits.len(), "every chosen word changes");
    for ((a, b), edit) in changed.iter().zip(&out.edits) {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let diffs: Vec<usize> = (0..a.len().min(b.len())).filter(|&i| a[i] != b[i]).collect();
        match edit {
            Edit::Swap => assert!(a.len() == b.len() && diffs.len() == 2 && diffs[1] == diffs[0] + 1 && a[diffs[0]] == b[diffs[1]], "{a:?} {b:?}"),
            Edit::Replace => assert!(a.len() == b.len() && diffs.len() == 1, "{a:?} {b:?}"),
            Edit::Insert => {
                let i = diffs.first().copied().unwrap_or(a.len());
                assert!(b.len() == a.len() + 1 && i >= 1 && [&b[..i], &b[i + 1..]].concat() == a, "{a:?} {b:?}");
            }
        }
    }
    // Seeded: the same seed and stream give the same text; another stream or seed another.
    assert_eq!(p.perturb(&text, 0), out);
    assert_ne!(p.perturb(&text, 1).text, out.text);
    assert_ne!(Perturber { seed: 2, ..p }.perturb(&text, 0).text, out.text);
    assert_eq!(Perturber { fraction: 0.0, seed: 1 }.perturb(&text, 0).text, text);
    let all = Perturber { fraction: 1.0, seed: 1 }.perturb(&text, 0);
    assert_eq!(all.edits.len(), n);
    for kind in [Edit::Swap, Edit::Replace, Edit::Insert] {
        assert!(all.edits.contains(&kind), "{kind:?} never used");
    }
}

#[test]
fn identical_views_score_zero() {
    let m = model(2);
    let calib = calibration();
    let units = m.units(UnitKind::Layer).unwrap();
    for distance in ["l2", "l1", "cosine"] {
        let method = pip(serde_json::json!({"perturb_fraction": 0.0, "distance": distance}));
        let scored = method.score(&ScoreInput { model: &m, units: &units, calibration: Some(&calib), iteration: 0 }).unwrap();
        assert!(scored.scores.iter().all(|s| s.abs() < 1e-9), "{distance}: {:?}", scored.scores);
        assert_eq!(scored.notes["tokens_changed"], 0.0);
    }
}

/// Gradients of both views of the calibration at `iteration`, by hand, one batch each.
fn view_grads(m: &LlamaModel, method: &Pip, iteration: usize) -> (prunus_model::Grads, prunus_model::Grads) {
    let calib = calibration();
    let perturbed: Vec<String> = method.perturbed(&calib, iteration).unwrap().into_iter().map(|v| v.text).collect();
    let (_, a) = m.loss_and_grads(&calib.original().unwrap()).unwrap();
    let (_, b) = m.loss_and_grads(&calib.tokens(&perturbed).unwrap()).unwrap();
    (a, b)
}

/// Sum over the tensors of decoder layer `l` of f(a, b, w) elementwise, in f64, where w is the
/// parameter itself (0 when `weights` is None).
fn layer_sum_weighted(
    a: &prunus_model::Grads,
    b: &prunus_model::Grads,
    weights: Option<&LlamaModel>,
    l: usize,
    f: impl Fn(f64, f64, f64) -> f64,
) -> f64 {
    let prefix = format!("model.layers.{l}.");
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let params: std::collections::HashMap<String, Vec<f32>> =
        weights.map(|m| m.named_tensors().into_iter().map(|(n, t)| (n, flat(t))).collect()).unwrap_or_default();
    a.iter()
        .filter(|(n, _)| n.starts_with(&prefix))
        .map(|(n, ga)| {
            let (va, vb) = (flat(ga), flat(b.get(n).unwrap()));
            let vw = params.get(n).cloned().unwrap_or_else(|| vec![0.0; va.len()]);
            (0..va.len()).map(|i| f(f64::from(va[i]), f64::from(vb[i]), f64::from(vw[i]))).sum::<f64>()
        })
        .sum()
}

/// Sum over the tensors of decoder layer `l` of f(a, b) elementwise, in f64.
fn layer_sum(a: &prunus_model::Grads, b: &prunus_model::Grads, l: usize, f: impl Fn(f64, f64) -> f64) -> f64 {
    layer_sum_weighted(a, b, None, l, |x, y, _| f(x, y))
}

#[test]
fn pert_import_is_the_distance_between_the_two_views_mean_gradients() {
    let m = model(2);
    let calib = calibration();
    let units = m.units(UnitKind::Layer).unwrap();
    let score = |config: serde_json::Value| {
        let method = pip(config);
        method.score(&ScoreInput { model: &m, units: &units, calibration: Some(&calib), iteration: 0 }).unwrap()
    };
    let (a, b) = view_grads(&m, &pip(serde_json::json!({})), 0);
    let l2 = score(serde_json::json!({}));
    let l1 = score(serde_json::json!({"distance": "l1"}));
    let cos = score(serde_json::json!({"distance": "cosine"}));
    let taylor = score(serde_json::json!({"distance": "taylor"}));
    let norm = score(serde_json::json!({"normalize": true}));
    let batched = score(serde_json::json!({"batch_size": 1}));
    for (l, u) in units.iter().enumerate() {
        let close = |got: f64, want: f64, what: &str| assert!((got - want).abs() <= 1e-5 * want.abs(), "layer {l} {what}: {got} vs {want}");
        let want_l2 = layer_sum(&a, &b, l, |x, y| (x - y).powi(2)).sqrt();
        assert!(want_l2 > 0.0);
        close(l2.scores[l], want_l2, "l2");
        close(l1.scores[l], layer_sum(&a, &b, l, |x, y| (x - y).abs()), "l1");
        let dot = layer_sum(&a, &b, l, |x, y| x * y);
        let (na, nb) = (layer_sum(&a, &b, l, |x, _| x * x), layer_sum(&a, &b, l, |_, y| y * y));
        close(cos.scores[l], 1.0 - dot / (na * nb).sqrt(), "cosine");
        close(taylor.scores[l], layer_sum_weighted(&a, &b, Some(&m), l, |x, y, w| (w * (x - y)).abs()), "taylor");
        close(norm.scores[l], want_l2 / (u.params as f64).sqrt(), "normalized");
        // Batches of one text average to the same gradient (up to f32 rounding).
        assert!((batched.scores[l] - l2.scores[l]).abs() <= 1e-3 * l2.scores[l], "layer {l} batched");
    }
    // The distance of the mean gradients is at most the mean of the per-text distances.
    let per_text = score(serde_json::json!({"aggregate": "mean_distance"}));
    for l in 0..units.len() {
        assert!(per_text.scores[l] >= l2.scores[l] * (1.0 - 1e-6), "layer {l}: {} < {}", per_text.scores[l], l2.scores[l]);
    }
    let n = l2.notes["words"].as_u64().unwrap();
    let wanted = TEXTS.iter().map(|t| (0.3 * words(t).len() as f64).round() as u64).sum::<u64>();
    assert_eq!(l2.notes["words_wanted"].as_u64().unwrap(), wanted);
    // Real-word edits: only the lexicon's words can change, so fewer than wanted may.
    let edited = l2.notes["words_edited"].as_u64().unwrap();
    assert!(edited > 0 && edited <= wanted, "{edited} of {wanted}");
    assert!(n > 0 && l2.notes["tokens_changed"].as_f64().unwrap() > 0.0);
    assert!(l2.notes["loss_perturbed"].as_f64().unwrap().is_finite());
}

#[test]
fn each_iteration_removes_the_lowest_scored_layer_on_fresh_perturbations() {
    let method = pip(serde_json::json!({}));
    let mut m = model(2);
    let dense = m.clone();
    let out = run(&mut m, &method, UnitKind::Layer, 0.3).unwrap();
    // 0.3 of 6 equal layers is 1.8: two iterations, one layer each.
    assert_eq!(out.iterations.len(), 2);
    let calib = calibration();
    let mut replay = dense.clone();
    for it in &out.iterations {
        // Score the model as it was before this iteration, with this iteration's perturbations.
        let units: Vec<_> = replay.units(UnitKind::Layer).unwrap();
        let candidates: Vec<_> = units[1..units.len() - 1].to_vec(); // first and last protected
        let scored = method.score(&ScoreInput { model: &replay, units: &candidates, calibration: Some(&calib), iteration: it.iteration }).unwrap();
        let (best, &low) = scored.scores.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).unwrap();
        assert_eq!(it.removed.len(), 1);
        assert_eq!(it.removed[0].score, low, "iteration {}", it.iteration);
        assert_eq!(it.notes["loss_original"], scored.notes["loss_original"]);
        // Map the current index back to the original numbering.
        let kept: Vec<usize> = (0..6).filter(|l| !out.iterations[..it.iteration].iter().any(|r| r.removed[0].layer == *l)).collect();
        assert_eq!(it.removed[0].layer, kept[candidates[best].layer]);
        replay.remove_units(&[candidates[best].clone()]).unwrap();
    }
    assert_eq!(replay.param_count(), m.param_count());
    // The perturbations of the two iterations differ.
    assert_ne!(method.perturbed(&calib, 0).unwrap(), method.perturbed(&calib, 1).unwrap());
}

#[test]
fn passes_the_structured_conformance_suite_for_every_unit_kind() {
    // Heads and query heads are few per layer, so their targets are small; channels go 16 per
    // iteration (one per iteration would rescore a hundred times).
    let calib = calibration();
    for (units_per_iteration, cases) in [
        (1, vec![(UnitKind::Layer, 0.3), (UnitKind::Head, 0.1), (UnitKind::QueryHead, 0.05)]),
        (16, vec![(UnitKind::Channel, 0.25)]),
    ] {
        let method = registry::find("pip").unwrap().build_structured(&serde_json::json!({"units_per_iteration": units_per_iteration})).unwrap();
        prunus_testkit::structured_conformance::check(&method, &model(2), Some(&calib), &cases);
        for &(unit, target) in &cases {
            let out = run(&mut model(2), &pip(serde_json::json!({"units_per_iteration": units_per_iteration})), unit, target).unwrap();
            assert!(out.iterations.iter().all(|i| i.removed.len() <= units_per_iteration), "{unit}");
        }
    }
}

#[test]
fn runs_are_deterministic_under_a_seed() {
    let go = |seed: u64| {
        let mut m = model(2);
        let out = run(&mut m, &pip(serde_json::json!({"seed": seed})), UnitKind::Head, 0.1).unwrap();
        out.iterations.iter().map(|i| (i.removed.clone(), i.notes.clone())).collect::<Vec<_>>()
    };
    let a = go(5);
    assert_eq!(a, go(5));
    let b = go(6);
    assert_ne!(a.iter().map(|r| r.0[0].score).collect::<Vec<_>>(), b.iter().map(|r| r.0[0].score).collect::<Vec<_>>());
}

#[test]
fn bad_input_is_refused_with_typed_errors_and_changes_nothing() {
    let method = pip(serde_json::json!({}));
    let dense = model(2);
    for t in [0.0, 1.0, 1.2] {
        let mut m = dense.clone();
        assert!(matches!(run(&mut m, &method, UnitKind::Layer, t).unwrap_err(), Error::BadReduction { .. }));
        assert_eq!(m.param_count(), dense.param_count());
    }
    // Without GQA a query head cannot go alone.
    let mut mha = model(4);
    let e = run(&mut mha, &method, UnitKind::QueryHead, 0.05).unwrap_err();
    assert!(matches!(e, Error::UnsupportedUnit { .. }), "{e}");
    // No calibration, or too little of it.
    let mut m = dense.clone();
    let e = prune_structured(&mut m, &prunus_core::Built::structured(method.clone()), None, &StructuredOptions::new(UnitKind::Layer, 0.3), &mut |_| {}).unwrap_err();
    assert!(matches!(e, Error::NeedsCalibration { .. }), "{e}");
    let e = Calibration::new(vec!["too short".into()], SEQ_LEN, &toy).unwrap_err();
    assert!(matches!(e, Error::CalibrationTooSmall { .. }) && e.to_string().contains("fewer than seq_len 48"), "{e}");
    assert_eq!(m.param_count(), dense.param_count());
    // Configs.
    let pip_reg = registry::find("pip").unwrap();
    assert_eq!(pip_reg.kind(), "structured");
    for (config, needle) in [
        (serde_json::json!({"perturb_fraction": 1.5}), "perturb_fraction 1.5"),
        (serde_json::json!({"units_per_iteration": 0}), "units_per_iteration"),
        (serde_json::json!({"distance": "l3"}), "unknown variant `l3`"),
        (serde_json::json!({"perturbation": "llm"}), "unknown variant `llm`"),
        (serde_json::json!({"perturb": 0.3}), "unknown field `perturb`"),
    ] {
        let e = pip_reg.build_structured(&config).err().expect("an error");
        assert!(matches!(e, Error::BadConfig { .. }) && e.to_string().contains(needle), "{e}");
    }
    assert!(pip_reg.build_layerwise(&serde_json::Value::Null).is_err());
    let default: Config = serde_json::from_value(pip_reg.build_structured(&serde_json::Value::Null).unwrap().config).unwrap();
    assert_eq!(
        (default.perturb_fraction, default.perturbation, default.units_per_iteration, default.distance),
        (0.3, Perturbation::RealWord, 1, Distance::L2)
    );
}

#[test]
fn single_edits_reach_the_papers_examples_and_only_plain_words_have_any() {
    let has = |w: &str, e: Edit, to: &str| single_edits(w).contains(&(e, to.to_string()));
    assert!(has("later", Edit::Swap, "alter"));
    assert!(has("happy", Edit::Replace, "nappy"));
    assert!(has("host", Edit::Insert, "ghost"));
    assert!(has("Host", Edit::Insert, "Ghost"));
    // "host": 3 swaps, 4 * 25 replacements, 5 * 26 insertions less the 4 made twice (a letter
    // inserted before or after the same letter); none is the word itself, none repeats.
    let all = single_edits("host");
    assert_eq!(all.len(), 3 + 100 + 126);
    assert!(all.iter().all(|(_, w)| w != "host"));
    assert_eq!(all.iter().map(|(_, w)| w).collect::<std::collections::HashSet<_>>().len(), all.len());
    for w in ["NASA", "ab", "café", "McDonald", "x1"] {
        assert!(single_edits(w).is_empty(), "{w}");
    }
}

/// At fraction 1 every word with an edit into another whole-word token changes (the 12
/// lexicon words of the texts), into a lexicon word, and nothing else does: the two views
/// have the same length in tokens. Typos (the first reconstruction) change more words and
/// the length.
#[test]
fn real_word_edits_make_lexicon_words_and_keep_the_length_in_tokens() {
    let calib = calibration();
    let views = pip(serde_json::json!({"perturb_fraction": 1.0})).perturbed(&calib, 0).unwrap();
    let mut edited = 0;
    for (text, view) in TEXTS.iter().zip(&views) {
        assert_eq!(toy(text).unwrap().len(), toy(&view.text).unwrap().len(), "{}", view.text);
        let (before, after) = (words(text), words(&view.text));
        assert_eq!(before.len(), after.len());
        let changed: Vec<(&String, &String)> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
        for (a, b) in &changed {
            assert!(LEXICON.contains(&a.as_str()) && LEXICON.contains(&b.as_str()), "{a} -> {b}");
        }
        assert_eq!(changed.len(), view.edits.len());
        edited += changed.len();
    }
    assert_eq!(edited, 12);
    let typos = pip(serde_json::json!({"perturb_fraction": 1.0, "perturbation": "typo"})).perturbed(&calib, 0).unwrap();
    assert!(TEXTS.iter().zip(&typos).any(|(t, v)| toy(t).unwrap().len() != toy(&v.text).unwrap().len()));
    assert_eq!(typos.iter().map(|v| v.edits.len()).sum::<usize>(), TEXTS.iter().map(|t| words(t).len()).sum::<usize>());
}
