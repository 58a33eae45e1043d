//! Corpora and the named protocols that cut them into evaluation and calibration data.
//!
//! The default protocol, "wiki-vital" (written down in `docs/protocols.md`):
//!
//! - sort the summaries by title (byte order) and take each `extract`;
//! - article `i` (0-based, sorted order) with `i % 10 == 0` is EVAL, every other
//!   article is in the CALIBRATION POOL; each set is joined with `"\n\n"`;
//! - perplexity uses the first `W = min(max_windows, n_tokens / seq_len)`
//!   non-overlapping windows of the eval tokens (computed in `prunus_eval::perplexity`);
//! - calibration draws `n_samples` windows from the pool's tokens with CPython's
//!   `random.seed(seed)` and `randint(0, n_tokens - seq_len - 1)` ([`calibration_offsets`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::pyrandom::PyRandom;

/// Every `EVAL_STRIDE`-th article (sorted by title) is an evaluation article.
pub const EVAL_STRIDE: usize = 10;

/// The separator placed between articles.
pub const ARTICLE_SEPARATOR: &str = "\n\n";

/// A corpus split into evaluation text and calibration pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    /// Evaluation articles joined with `"\n\n"`.
    pub eval_text: String,
    /// Calibration-pool articles joined with `"\n\n"`.
    pub calib_text: String,
    /// How many articles went into `eval_text`.
    pub n_eval_articles: usize,
    /// How many articles went into `calib_text`.
    pub n_calib_articles: usize,
}

/// One entry of `summaries_en-us.json`; only `extract` is used.
#[derive(Debug, Deserialize)]
struct Summary {
    extract: String,
}

/// Reads `summaries_en-us.json` (object title -> {title, extract, description, topic})
/// and splits it by the wiki-vital protocol.
pub fn wiki_vital(path: &Path) -> Result<Corpus> {
    let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
    // A BTreeMap keyed by String iterates in byte order of the keys, which is the protocol's order.
    let entries: BTreeMap<String, Summary> =
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
    if entries.is_empty() {
        return Err(Error::CorpusFormat {
            path: path.to_path_buf(),
            reason: "no articles".into(),
        });
    }
    let corpus = split_articles(entries.values().map(|s| s.extract.as_str()));
    tracing::debug!(
        path = %path.display(),
        n_eval = corpus.n_eval_articles,
        n_calib = corpus.n_calib_articles,
        "wiki-vital corpus read"
    );
    Ok(corpus)
}

/// Splits articles (already in protocol order) into eval (`i % 10 == 0`) and calibration pool.
pub fn split_articles<'a>(articles: impl IntoIterator<Item = &'a str>) -> Corpus {
    let mut eval: Vec<&str> = Vec::new();
    let mut calib: Vec<&str> = Vec::new();
    for (i, text) in articles.into_iter().enumerate() {
        if i % EVAL_STRIDE == 0 {
            eval.push(text)
        } else {
            calib.push(text)
        }
    }
    Corpus {
        eval_text: eval.join(ARTICLE_SEPARATOR),
        calib_text: calib.join(ARTICLE_SEPARATOR),
        n_eval_articles: eval.len(),
        n_calib_articles: calib.len(),
    }
}

/// Start offsets of `n_samples` calibration windows of `seq_len` tokens in a stream
/// of `n_tokens`: `random.seed(seed)`, then `randint(0, n_tokens - seq_len - 1)` per window.
pub fn calibration_offsets(
    n_tokens: usize,
    n_samples: usize,
    seq_len: usize,
    seed: u64,
) -> Result<Vec<usize>> {
    let needed = seq_len.saturating_add(1);
    if n_tokens < needed {
        return Err(Error::CorpusTooShort {
            n_tokens,
            seq_len,
            needed,
        });
    }
    let hi = i64::try_from(n_tokens - seq_len - 1).map_err(|_| Error::RandomArgument {
        function: "calibration_offsets",
        reason: format!("n_tokens {n_tokens} does not fit in i64"),
    })?;
    let mut rng = PyRandom::seed(seed);
    (0..n_samples)
        .map(|_| rng.randint(0, hi).map(|start| start as usize)) // 0 <= start <= hi
        .collect()
}

/// How [`calibration_windows`] draws, for reports.
pub const CALIBRATION_SAMPLER: &str = "CPython random.seed(seed); start = randint(0, len - seq_len - 1) per window";

/// Calibration windows drawn from a token stream with [`calibration_offsets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalibrationWindows {
    /// The windows' token ids, one window of `width` tokens after another.
    pub ids: Vec<u32>,
    /// Where each window starts in the stream.
    pub offsets: Vec<usize>,
    /// Tokens per window.
    pub width: usize,
    /// Tokens in the stream they were drawn from.
    pub stream_tokens: usize,
    /// The sampler's seed.
    pub seed: u64,
}

impl CalibrationWindows {
    /// The windows, in draw order.
    pub fn windows(&self) -> impl Iterator<Item = &[u32]> {
        self.ids.chunks_exact(self.width.max(1))
    }
}

/// `n_samples` windows of `width` tokens drawn from `stream` (see [`calibration_offsets`]).
pub fn calibration_windows(stream: &[u32], n_samples: usize, width: usize, seed: u64) -> Result<CalibrationWindows> {
    let offsets = calibration_offsets(stream.len(), n_samples, width, seed)?;
    let mut ids = Vec::with_capacity(offsets.len() * width);
    for &o in &offsets {
        ids.extend_from_slice(&stream[o..o + width]);
    }
    Ok(CalibrationWindows { ids, offsets, width, stream_tokens: stream.len(), seed })
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_every_tenth_article_is_eval() {
        let names: Vec<String> = (0..21).map(|i| format!("a{i}")).collect();
        let c = split_articles(names.iter().map(String::as_str));
        assert_eq!(c.eval_text, "a0\n\na10\n\na20");
        assert_eq!(c.n_eval_articles, 3);
        assert_eq!(c.n_calib_articles, 18);
        assert!(c.calib_text.starts_with("a1\n\na2\n\n"));
        assert!(c.calib_text.ends_with("a19"));
    }

    #[test]
    fn wiki_vital_sorts_titles_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        // "Z" < "a" < "é" in byte order (uppercase first, non-ASCII last)
        let mut obj = serde_json::Map::new();
        for (i, title) in ["é", "a", "Z", "b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .enumerate()
        {
            obj.insert(
                title.to_string(),
                serde_json::json!({"title": title, "extract": format!("text {title} {i}"), "description": "", "topic": "t"}),
            );
        }
        std::fs::write(&path, serde_json::to_vec(&obj).unwrap()).unwrap();
        let c = wiki_vital(&path).unwrap();
        // sorted: Z a b c d e f g h i é -> eval = Z (0) and é (10)
        assert_eq!(c.eval_text, "text Z 2\n\ntext é 0");
        assert_eq!(c.n_calib_articles, 9);
        assert!(c.calib_text.starts_with("text a 1\n\ntext b 3"));
    }

    #[test]
    fn wiki_vital_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        assert!(
            wiki_vital(&missing)
                .unwrap_err()
                .to_string()
                .contains("missing.json")
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"x": {"title": "x"}}"#).unwrap();
        assert!(
            wiki_vital(&bad)
                .unwrap_err()
                .to_string()
                .contains("bad.json")
        );
    }

    #[test]
    fn calibration_offsets_match_python() {
        // python3 -c "import random; random.seed(0); print([random.randint(0, 1000-128-1) for _ in range(5)])"
        let offs = calibration_offsets(1000, 5, 128, 0).unwrap();
        assert_eq!(offs, vec![864, 394, 776, 430, 41]);
        assert!(offs.iter().all(|&o| o + 128 < 1000));
    }

    #[test]
    fn calibration_offsets_edge_cases() {
        assert_eq!(calibration_offsets(129, 3, 128, 7).unwrap(), vec![0, 0, 0]);
        let e = calibration_offsets(128, 1, 128, 0).unwrap_err().to_string();
        assert!(
            e.contains("corpus too short") && e.contains("128 tokens") && e.contains("129"),
            "{e}"
        );
        assert!(calibration_offsets(5, 0, 4, 0).unwrap().is_empty());
    }

}
