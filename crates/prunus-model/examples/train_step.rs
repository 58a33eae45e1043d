//! Times one loss-and-gradients call on the default model, the hand-written backward against
//! candle autograd, side by side in one process (median of `--repeats`, default 3), and
//! prints the process's peak memory: `cargo run --release -p prunus-model --example train_step
//! -- [windows] [seq_len]` (default 1 x 512, as one micro-batch of `prunus finetune`).

use std::time::Instant;

use candle_core::{Device, Tensor};
use prunus_model::LlamaModel;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let (n, seq, repeats) = (args.first().copied().unwrap_or(1), args.get(1).copied().unwrap_or(512), args.get(2).copied().unwrap_or(3));
    let model = LlamaModel::from_gguf(prunus_data::assets::default_model_path()?, &Device::Cpu)?;
    let mut rng = prunus_core::rng::SplitMix64::new(1);
    let ids: Vec<u32> = (0..n * seq).map(|_| rng.below(49152) as u32).collect();
    let t = Tensor::from_slice(&ids, (n, seq), &Device::Cpu)?;
    let (mut manual, mut autograd) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let s = Instant::now();
        let (l1, _) = model.manual_loss_and_grads(&ids, n, seq)?;
        manual.push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        let (l2, _) = model.loss_and_grads(&t)?;
        autograd.push(s.elapsed().as_secs_f64());
        eprintln!("losses {l1} {l2}");
    }
    let (m, a) = (median(manual), median(autograd));
    println!("{n} x {seq} tokens: hand-written {m:.2} s, autograd {a:.2} s ({:.2}x)", a / m);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM")) {
        println!("peak memory of the process: {}", line.trim_start_matches("VmHWM:").trim());
    }
    Ok(())
}
