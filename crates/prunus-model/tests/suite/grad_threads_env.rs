//! The gradients PIP and the Taylor baseline score with, and the inference forward (with its
//! fused causal attention, whose tasks split windows, key/value groups and blocks of 64
//! positions over the threads), must not depend on how many threads candle's CPU matmul uses. candle reads `RAYON_NUM_THREADS` per call (else the physical
//! cores), so this test runs itself as a child process with `=1` and `=2` and compares a
//! checksum of the bit patterns of the loss and of every gradient. The synthetic model is wide
//! enough for gemm to split its products (threshold 48 * 48 * 256 multiply-adds; here
//! 256 tokens x 256 x 256 and up), forward and backward.

use prunus_model::{LlamaConfig, LlamaModel};
use prunus_testkit::child::{printed, run_self};

const CHILD: &str = "PRUNUS_GRAD_THREADS_CHILD";
/// The test's name as the folded test binary lists it (module path inside the binary).
const TEST: &str = "grad_threads_env::candle_thread_count_changes_no_gradient";

fn checksum() -> u64 {
    // vocab 512, hidden 256, FFN 512, 2 layers, 4 query heads in 2 KV groups, tied.
    let model = LlamaModel::synthetic(LlamaConfig::new(512, 256, 512, 2, 4, 2, true), 5).unwrap();
    let ids: Vec<u32> = (0..4 * 64u32).map(|i| (i * 2_654_435_761u32.wrapping_add(i)) % 512).collect();
    let tokens = candle_core::Tensor::from_vec(ids, (4, 64), &candle_core::Device::Cpu).unwrap();
    let (loss, grads) = model.loss_and_grads(&tokens).unwrap();
    // 64-bit FNV-1a over the bit patterns.
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut feed = |bits: u64| {
        for byte in bits.to_le_bytes() {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(loss.to_bits());
    assert!(grads.len() > 10);
    for (_, g) in grads.iter() {
        g.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().for_each(|v| feed(u64::from(v.to_bits())));
    }
    // Windows of 150 tokens: three blocks of query positions, the last one partial.
    let ids: Vec<u32> = (0..2 * 150u32).map(|i| (i * 40_503 + 7) % 512).collect();
    let long = candle_core::Tensor::from_vec(ids, (2, 150), &candle_core::Device::Cpu).unwrap();
    let logits = model.forward(&long).unwrap();
    logits.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().for_each(|v| feed(u64::from(v.to_bits())));
    h
}

#[test]
fn candle_thread_count_changes_no_gradient() {
    if std::env::var_os(CHILD).is_some() {
        println!("\nTHREADS {}\nCHECKSUM {:016x}", candle_core::utils::get_num_threads(), checksum());
        return;
    }
    let run = |threads: &str| {
        let out = run_self(TEST, CHILD, &[("RAYON_NUM_THREADS", threads)]);
        assert_eq!(printed(&out, "THREADS"), threads, "candle did not take the thread count");
        printed(&out, "CHECKSUM")
    };
    assert_eq!(run("1"), run("2"), "the loss, a gradient or the logits depend on candle's thread count");
}
