//! Tests of the matrix: validation errors with line and column, cell expansion (dense,
//! layer-wise and structured entries, per-entry overrides), shards, and the fuzz corpus.

use super::*;

fn catalog() -> Catalog {
    Catalog {
        methods: ["magnitude", "wanda", "sparsegpt", "swiftprune"]
            .iter()
            .map(|n| CatalogMethod { name: n.to_string(), kind: "layer-wise".into(), library: None })
            .chain(["pip", "taylor"].iter().map(|n| CatalogMethod { name: n.to_string(), kind: "structured".into(), library: None }))
            .collect(),
        tasks: vec![
            CatalogTask { name: "ppl:wiki-vital".into(), file: None, available: true },
            CatalogTask { name: "mc:arc_easy".into(), file: Some("arc_easy.jsonl.gz".into()), available: true },
            CatalogTask { name: "mc:piqa".into(), file: Some("/nowhere/piqa.jsonl.gz".into()), available: false },
        ],
    }
}

fn parse(text: &str) -> Result<MatrixFile> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    std::fs::write(&path, text).unwrap();
    let loaded = load(&path)?;
    validate(&loaded, "m.toml", &catalog())?;
    check_data(&loaded, "m.toml", &catalog())?;
    Ok(loaded)
}

const GOOD: &str = r#"
patterns = ["unstructured", "2:4"]
sparsities = [0.5, 0.6]
[[tasks]]
name = "ppl:wiki-vital"
[[tasks]]
name = "mc:arc_easy"
limit = 50
[[methods]]
name = "wanda"
[[methods]]
name = "swiftprune"
label = "swift-quantile"
config = { selection = "quantile" }
patterns = ["4:8"]
"#;

#[test]
fn expands_in_order_with_labels_configs_and_nm_sparsity() {
    let loaded = parse(GOOD).unwrap();
    let cells = cells(&loaded.matrix, &catalog());
    let ids: Vec<String> = cells.iter().map(|c| format!("{}/{}/{}", c.label, c.pattern, c.sparsity)).collect();
    assert_eq!(ids, ["dense/dense/0", "wanda/unstructured/0.5", "wanda/unstructured/0.6", "wanda/2:4/0.5", "swift-quantile/4:8/0.5"]);
    assert_eq!(cells[4].config, serde_json::json!({"selection": "quantile"}));
    assert_eq!(cells[1].tasks[1], TaskSpec { name: "mc:arc_easy".into(), limit: Some(50) });
    assert_eq!(cells[0].calibration.samples, 0, "the dense cell's key does not depend on calibration");
}

#[test]
fn structured_methods_expand_over_reductions_with_their_unit_and_calibration() {
    let text = format!(
        "{GOOD}\nreductions = [0.1, 0.2]\n[[methods]]\nname = \"pip\"\nunit = \"head\"\ncalibration = {{ samples = 10, seq_len = 64 }}\n[[methods]]\nname = \"taylor\"\nreductions = [0.3]\n"
    );
    // `reductions` must precede the tables in TOML; move it to the top.
    let text = format!("reductions = [0.1, 0.2]\n{}", text.replace("\nreductions = [0.1, 0.2]\n", "\n"));
    let loaded = parse(&text).unwrap();
    let cells = cells(&loaded.matrix, &catalog());
    let structured: Vec<String> = cells
        .iter()
        .filter(|c| c.structured)
        .map(|c| format!("{}/{}/{}/{}x{}", c.label, c.pattern, c.sparsity, c.calibration.samples, c.calibration.seq_len))
        .collect();
    assert_eq!(structured, ["pip/head/0.1/10x64", "pip/head/0.2/10x64", "taylor/layer/0.3/32x512"]);
    assert_eq!(cells.iter().filter(|c| !c.structured).count(), 5);
    let e = err(&text.replace("unit = \"head\"", "unit = \"heads\""));
    assert!(e.contains("unknown unit `heads`; did you mean `head`?"), "{e}");
    let e = err(&format!("{GOOD}\n[[methods]]\nname = \"pip\"\n"));
    assert!(e.contains("structured method `pip` needs `reductions`"), "{e}");
    let e = err(&GOOD.replace("label = \"swift-quantile\"", "label = \"swift-quantile\"\nreductions = [0.2]"));
    assert!(e.contains("is a layer-wise method"), "{e}");
}

/// `budget_of = "all"` reaches the cell (and so its key and `--budget-of all`); the default
/// base stays out of the cell, so spelling it out keeps the key; anything else is an error.
#[test]
fn structured_budget_of_all_parameters_is_its_own_cell() {
    let base = format!("reductions = [0.2]\n{GOOD}\n[[methods]]\nname = \"pip\"\n[[methods]]\nname = \"pip\"\nlabel = \"pip-all\"\nbudget_of = \"all\"\n");
    let loaded = parse(&base).unwrap();
    let budgets: Vec<(String, Option<String>)> =
        cells(&loaded.matrix, &catalog()).into_iter().filter(|c| c.structured).map(|c| (c.label, c.budget_of)).collect();
    assert_eq!(budgets, [("pip".to_string(), None), ("pip-all".to_string(), Some("all".to_string()))]);
    let spelled = parse(&base.replace("label = \"pip-all\"\nbudget_of = \"all\"", "label = \"pip-all\"\nbudget_of = \"excluding_embeddings\"")).unwrap();
    assert!(cells(&spelled.matrix, &catalog()).iter().all(|c| c.budget_of.is_none()));
    let e = err(&base.replace("budget_of = \"all\"", "budget_of = \"al\""));
    assert!(e.contains("unknown budget_of `al`; did you mean `all`?"), "{e}");
    let e = err(&GOOD.replace("label = \"swift-quantile\"", "label = \"swift-quantile\"\nbudget_of = \"all\""));
    assert!(e.contains("`unit`, `reductions` and `budget_of` are for structured methods"), "{e}");
}

fn err(text: &str) -> String {
    format!("{:#}", parse(text).err().expect("should fail"))
}

#[test]
fn unknown_method_names_line_and_suggests() {
    let e = err(&GOOD.replace("name = \"wanda\"", "name = \"wandaa\""));
    assert!(e.contains("m.toml:10:8: unknown method `wandaa`; did you mean `wanda`?"), "{e}");
}

#[test]
fn unknown_task_names_line_and_suggests() {
    let e = err(&GOOD.replace("mc:arc_easy", "mc:arc_esay"));
    assert!(e.contains("m.toml:7:8: unknown task `mc:arc_esay`; did you mean `mc:arc_easy`?"), "{e}");
}

#[test]
fn unknown_keys_and_malformed_toml_name_line_and_column() {
    let e = err(&GOOD.replace("limit = 50", "limt = 50"));
    assert!(e.contains("line 8, column 1") && e.contains("limt"), "{e}");
    let e = err("patterns = [\"unstructured\"\n[[tasks]]\n");
    assert!(e.contains("line 1") || e.contains("line 2"), "{e}");
}

#[test]
fn empty_matrix_missing_task_file_and_bad_values_are_errors() {
    let e = err("dense = false\n[[tasks]]\nname = \"ppl:wiki-vital\"\n");
    assert!(e.contains("the matrix is empty"), "{e}");
    let e = err(&GOOD.replace("mc:arc_easy", "mc:piqa"));
    assert!(e.contains("data file of task `mc:piqa` is missing (/nowhere/piqa.jsonl.gz) although the assets were fetched"), "{e}");
    let e = err(&GOOD.replace("\"2:4\"]", "\"4:2\"]"));
    assert!(e.contains("pattern `4:2`"), "{e}");
    let e = err(&GOOD.replace("0.6]", "1.5]"));
    assert!(e.contains("(0, 1)"), "{e}");
    let e = err(&GOOD.replace("label = \"swift-quantile\"", "label = \"wanda\""));
    assert!(e.contains("label `wanda` is used twice"), "{e}");
}

/// Bench matrices under prunus-fuzz (see its docs): the committed matrices mutated,
/// parsed, validated against a catalog and expanded into cells. Regression inputs live in
/// `xtask/tests/fuzz/matrix/`; `PRUNUS_FUZZ_SECONDS=600 cargo test --release -p xtask --bin
/// xtask -- fuzz_matrices` is a campaign.
#[test]
fn fuzz_matrices() {
    let root = crate::workspace::root();
    let seeds: Vec<Vec<u8>> = ["default", "race", "structured"]
        .iter()
        .map(|m| std::fs::read(root.join("benchmarks").join(format!("{m}.toml"))).unwrap())
        .chain([GOOD.as_bytes().to_vec()])
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    let mut catalog = catalog();
    catalog.tasks.iter_mut().for_each(|t| t.available = true);
    for name in ["mc:hellaswag", "mc:winogrande"] {
        catalog.tasks.push(CatalogTask { name: name.into(), file: None, available: true });
    }
    catalog.methods.extend(["struct-random", "struct-magnitude"].iter().map(|n| CatalogMethod { name: n.to_string(), kind: "structured".into(), library: None }));
    prunus_fuzz::run("matrix", &root.join("xtask/tests/fuzz/matrix"), &seeds, |data| -> Result<usize> {
        std::fs::write(&path, data).unwrap();
        let loaded = load(&path)?;
        validate(&loaded, "m.toml", &catalog)?;
        check_data(&loaded, "m.toml", &catalog)?;
        Ok(cells(&loaded.matrix, &catalog).len())
    });
}

#[test]
fn shards_partition_the_cells() {
    for bad in ["3/2", "0/2", "1/0", "2", "a/b", "1/2/3"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
    let shards: Vec<Shard> = (1..=3).map(|i| format!("{i}/3").parse().unwrap()).collect();
    for pos in 0..10 {
        assert_eq!(shards.iter().filter(|s| s.owns(pos)).count(), 1);
    }
}
