//! candle's CPU matmul splits its work over `RAYON_NUM_THREADS` threads (read from the
//! environment at each call, else the physical cores), not over the caller's rayon pool, so the
//! conformance suite's 1-vs-2-thread pool check cannot vary it. This test runs itself as a child
//! process with `RAYON_NUM_THREADS=1` and `=2` on a toy model wide enough for gemm to split
//! (its threading threshold is 48 * 48 * 256 multiply-adds per product; the block products here
//! are 256 x 256 x 64 and the Gram matrices 256 x 256 x 256), and compares a checksum of the
//! statistics every linear was handed and of the pruned weights.

use std::sync::{Arc, Mutex};

use prunus_core::pipeline::{PipelineOptions, prune_layerwise};
use prunus_core::{Built, Decision, Group, LayerView, LayerwiseMethod, Notes, Pattern, Result, StatKind, Target};
use prunus_testkit::ToyModel;
use prunus_testkit::child::{printed, run_self};

const CHILD: &str = "PRUNUS_THREADS_ENV_CHILD";
/// The test's name as the folded test binary lists it (module path inside the binary).
const TEST: &str = "threads_env::candle_thread_count_changes_no_statistic_and_no_weight";

/// 64-bit FNV-1a, fed with the bit patterns of the numbers.
struct Fnv(u64);

impl Fnv {
    fn feed(&mut self, bits: u64) {
        for byte in bits.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Scores |w| * sqrt(H_jj) (a Wanda-like score from the Hessian run), hashing the statistics.
struct Hashing(Arc<Mutex<Fnv>>);

impl LayerwiseMethod for Hashing {
    fn stats(&self) -> StatKind {
        StatKind::Hessian
    }
    fn group(&self, _pattern: &Pattern) -> Result<Group> {
        Ok(Group::PerRow)
    }
    fn decide(&self, layer: &LayerView<'_>, _target: &Target, _notes: &mut Notes) -> Result<Decision> {
        let (sq, gram) = (layer.stats.sq_sum.as_ref().unwrap(), layer.stats.gram.as_ref().unwrap());
        let mut h = self.0.lock().unwrap();
        sq.iter().chain(gram).for_each(|v| h.feed(v.to_bits()));
        let d = layer.d_in;
        Ok(Decision::Scores(layer.weight.iter().enumerate().map(|(k, w)| w.abs() * (gram[(k % d) * (d + 1)] as f32).sqrt()).collect()))
    }
}

fn checksum() -> u64 {
    let mut model = ToyModel::with_dims(21, 2, 64, 256, 64);
    let tokens = model.tokens(22, 8, 32);
    let hash = Arc::new(Mutex::new(Fnv(0xcbf2_9ce4_8422_2325)));
    let method = Built::unregistered("hashing", Box::new(Hashing(hash.clone())) as Box<dyn LayerwiseMethod>);
    let pattern = Pattern::Unstructured { sparsity: 0.5 };
    prune_layerwise(&mut model, &method, &pattern, Some(&tokens), &PipelineOptions { batch_size: 8 }, &mut |_| {}).unwrap();
    drop(method);
    let mut h = Arc::into_inner(hash).unwrap().into_inner().unwrap();
    model.all_weights().iter().for_each(|w| h.feed(u64::from(w.to_bits())));
    h.0
}

#[test]
fn candle_thread_count_changes_no_statistic_and_no_weight() {
    if std::env::var_os(CHILD).is_some() {
        println!("\nCHECKSUM {:016x}", checksum());
        return;
    }
    let run = |threads: &str| printed(&run_self(TEST, CHILD, &[("RAYON_NUM_THREADS", threads)]), "CHECKSUM");
    assert_eq!(run("1"), run("2"), "statistics or pruned weights depend on candle's thread count");
}
