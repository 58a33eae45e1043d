//! `cargo xtask new-plugin NAME --kind layerwise|structured|training`: a new method crate in
//! the workspace that compiles, registers, appears in `prunus list` and passes its kind's
//! conformance suite on its first build; `--out-of-tree DIR`: a cdylib crate against the C ABI
//! (prunus-abi) instead, outside the workspace.
//!
//! In the workspace it writes `plugins/NAME/` (Cargo.toml, src/lib.rs, tests/conformance.rs,
//! README.md) from `xtask/templates/<kind>/`, and adds the crate to the workspace's members and
//! dependencies and to prunus-all (its Cargo.toml and the `use` lines that link it). Every
//! check (the name, a free directory, a name no method has) comes before anything is written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::workspace::root;

/// `cargo xtask new-plugin`.
#[derive(clap::Args)]
pub struct Args {
    /// The method's registry name: lowercase letters, digits and '-', starting with a letter
    /// (the crate is `prunus-NAME`, in plugins/NAME).
    name: String,
    /// What kind of method: `layerwise` (decides one linear at a time from calibration
    /// statistics), `structured` (removes whole units within a parameter budget) or `training`
    /// (prunes while the model trains).
    #[arg(long, value_enum)]
    kind: Kind,
    /// Write a crate outside the workspace, built as a shared library against the C ABI and
    /// loaded with `prunus --plugin`, into this (new or empty) directory. Layer-wise only.
    #[arg(long, value_name = "DIR")]
    out_of_tree: Option<PathBuf>,
}

/// The kinds of method.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Layerwise,
    Structured,
    Training,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Layerwise => "layerwise",
            Kind::Structured => "structured",
            Kind::Training => "training",
        }
    }
}

/// The names that fill a template.
struct Names {
    name: String,
    krate: String,
    lib: String,
    ty: String,
}

impl Names {
    fn new(name: &str) -> Self {
        let ty = name
            .split('-')
            .map(|part| {
                let mut c = part.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect();
        Names { name: name.into(), krate: format!("prunus-{name}"), lib: format!("prunus_{}", name.replace('-', "_")), ty }
    }

    fn fill(&self, template: &str, abi_path: &str) -> String {
        template
            .replace("{{name}}", &self.name)
            .replace("{{crate}}", &self.krate)
            .replace("{{lib}}", &self.lib)
            .replace("{{Type}}", &self.ty)
            .replace("{{abi_path}}", abi_path)
    }
}

fn template(path: &str) -> Result<String> {
    let p = root().join("xtask/templates").join(path);
    std::fs::read_to_string(&p).with_context(|| format!("reading the template {}", p.display()))
}

/// Runs `cargo xtask new-plugin`.
pub fn run(args: Args) -> Result<()> {
    let name = args.name.as_str();
    if !(name.len() <= 40 && name.starts_with(|c: char| c.is_ascii_lowercase()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !name.ends_with('-') && !name.contains("--")) {
        bail!("plugin name `{name}`: use lowercase letters, digits and single '-' between them, starting with a letter (at most 40 characters)");
    }
    let names = Names::new(name);
    match args.out_of_tree {
        Some(dir) => out_of_tree(&names, args.kind, &crate::workspace::absolute(&dir)),
        None => in_workspace(&names, args.kind),
    }
}

/// Every `NAME` a plugin of the workspace declares (`const NAME: &'static str = "..."`).
fn taken_names(root: &Path) -> Result<Vec<String>> {
    let mut names = vec!["all".to_string()];
    for entry in std::fs::read_dir(root.join("plugins"))? {
        let lib = entry?.path().join("src/lib.rs");
        let Ok(text) = std::fs::read_to_string(&lib) else { continue };
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("const NAME: &'static str = \"") {
                names.extend(rest.split('"').next().map(String::from));
            }
        }
    }
    Ok(names)
}

fn in_workspace(n: &Names, kind: Kind) -> Result<()> {
    let root = root();
    let dir = root.join("plugins").join(&n.name);
    if dir.exists() {
        bail!("{} exists already; choose another name", dir.display());
    }
    if taken_names(&root)?.contains(&n.name) {
        bail!("a method called `{}` exists already (see `prunus list`); choose another name", n.name);
    }
    // Everything is computed before anything is written.
    let files = [
        ("Cargo.toml", n.fill(&template(&format!("{}/Cargo.toml.tmpl", kind.dir()))?, "")),
        ("src/lib.rs", n.fill(&template(&format!("{}/lib.rs.tmpl", kind.dir()))?, "")),
        ("tests/conformance.rs", n.fill(&template(&format!("{}/test.rs.tmpl", kind.dir()))?, "")),
        ("README.md", n.fill(&template("plugin-README.md.tmpl")?, "")),
    ];
    let workspace_toml = root.join("Cargo.toml");
    let all_toml = root.join("plugins/all/Cargo.toml");
    let all_lib = root.join("plugins/all/src/lib.rs");
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let workspace = insert_before(&read(&workspace_toml)?, "    \"plugins/all\",", &format!("    \"plugins/{}\",", n.name))
        .and_then(|t| insert_before(&t, "prunus-all = { path = \"plugins/all\" }", &format!("{} = {{ path = \"plugins/{}\" }}", n.krate, n.name)))
        .context("the workspace Cargo.toml no longer lists plugins/all where the scaffold expects it")?;
    let all = read(&all_toml)?;
    let all = match all.find("\n[dev-dependencies]") {
        Some(i) => format!("{}\n{}.workspace = true\n{}", all[..i].trim_end(), n.krate, &all[i..]),
        None => format!("{}\n{}.workspace = true\n", all.trim_end(), n.krate),
    };
    let lib = link_line(&read(&all_lib)?, &n.lib).context("plugins/all/src/lib.rs has no `use ... as _;` lines")?;
    for (file, text) in &files {
        let p = dir.join(file);
        std::fs::create_dir_all(p.parent().expect("a parent"))?;
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    std::fs::write(&workspace_toml, workspace)?;
    std::fs::write(&all_toml, all)?;
    std::fs::write(&all_lib, lib)?;
    eprintln!(
        "new-plugin: wrote plugins/{name}/ ({kind} method `{name}`, crate {krate}) and added it to the workspace and prunus-all.\n\
         Next: `cargo test --release -p {krate}` (its conformance suite), `cargo run --release -p prunus-cli -- list`,\n\
         then replace the scaffolded score in plugins/{name}/src/lib.rs and fill in its README (see CONTRIBUTING.md).",
        name = n.name,
        kind = kind.dir(),
        krate = n.krate
    );
    Ok(())
}

/// `text` with `line` inserted before the line equal to `anchor` (`None` without it).
fn insert_before(text: &str, anchor: &str, line: &str) -> Option<String> {
    let at = text.lines().position(|l| l == anchor)?;
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(at, line);
    Some(lines.join("\n") + "\n")
}

/// prunus-all's lib.rs with `use LIB as _;` among its `use` lines, in order.
fn link_line(text: &str, lib: &str) -> Option<String> {
    let new = format!("use {lib} as _;");
    let lines: Vec<&str> = text.lines().collect();
    let uses: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.starts_with("use ") && l.ends_with(" as _;")).map(|(i, _)| i).collect();
    let at = uses.iter().copied().find(|&i| lines[i] > new.as_str()).unwrap_or(*uses.last()? + 1);
    let mut out = lines.clone();
    out.insert(at, &new);
    Some(out.join("\n") + "\n")
}

fn out_of_tree(n: &Names, kind: Kind, dir: &Path) -> Result<()> {
    if kind != Kind::Layerwise {
        bail!("--out-of-tree writes a layer-wise method: the C ABI carries one linear at a time, and structured and training-time methods work on the whole model (write those in the workspace)");
    }
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} exists and is not empty; give a new or empty directory", dir.display());
    }
    let abi = root().join("crates/prunus-abi");
    let abi = abi.to_str().context("the checkout's path is not UTF-8")?.replace('\\', "/");
    let files = [
        ("Cargo.toml", n.fill(&template("out-of-tree/Cargo.toml.tmpl")?, &abi)),
        ("src/lib.rs", n.fill(&template("out-of-tree/lib.rs.tmpl")?, &abi)),
        ("README.md", n.fill(&template("out-of-tree/README.md.tmpl")?, &abi)),
    ];
    for (file, text) in &files {
        let p = dir.join(file);
        std::fs::create_dir_all(p.parent().expect("a parent"))?;
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    eprintln!(
        "new-plugin: wrote {} (layer-wise method `{}` against prunus-abi {}).\nNext: `cargo build --release` there, then `prunus --plugin <its target/release/lib{}.so> list`.",
        dir.display(),
        n.name,
        abi,
        n.lib
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fill_the_templates() {
        let n = Names::new("my-method2");
        assert_eq!((n.krate.as_str(), n.lib.as_str(), n.ty.as_str()), ("prunus-my-method2", "prunus_my_method2", "MyMethod2"));
        assert_eq!(n.fill("{{crate}} {{lib}}::{{Type}} \"{{name}}\" {{abi_path}}", "/a"), "prunus-my-method2 prunus_my_method2::MyMethod2 \"my-method2\" /a");
    }

    #[test]
    fn the_link_line_goes_in_order() {
        let text = "//! doc\n\nuse prunus_gmp as _;\nuse prunus_wanda as _;\n\npub fn link() {}\n";
        assert_eq!(link_line(text, "prunus_magnitude").unwrap(), "//! doc\n\nuse prunus_gmp as _;\nuse prunus_magnitude as _;\nuse prunus_wanda as _;\n\npub fn link() {}\n");
        assert!(link_line(text, "prunus_zz").unwrap().contains("use prunus_wanda as _;\nuse prunus_zz as _;\n"));
        assert!(link_line("nothing", "x").is_none());
    }
}
