//! Times the pieces of a forward pass at SmolLM2 sizes (4 x 512 tokens).
use std::time::Instant;
use candle_core::{Device, Tensor, DType};

fn t<F: FnMut() -> Tensor>(name: &str, flops: f64, mut f: F) {
    let _ = f();
    let t0 = Instant::now();
    let n = 3;
    for _ in 0..n { let _ = f(); }
    let s = t0.elapsed().as_secs_f64() / n as f64;
    println!("{name:40} {:8.2} ms  {:6.1} GFLOP/s", s * 1e3, flops / s / 1e9);
}

fn main() {
    let d = Device::Cpu;
    let x = Tensor::randn(0f32, 1., (2048, 576), &d).unwrap();
    let w = Tensor::randn(0f32, 1., (1536, 576), &d).unwrap();
    let wt = w.t().unwrap().contiguous().unwrap();
    let fl = 2.0 * 2048.0 * 576.0 * 1536.0;
    t("x @ w.t() (view)", fl, || x.matmul(&w.t().unwrap()).unwrap());
    t("x @ wt (contiguous)", fl, || x.matmul(&wt).unwrap());
    let a = Tensor::randn(0f32, 1., (2048, 1536), &d).unwrap();
    let wd = Tensor::randn(0f32, 1., (576, 1536), &d).unwrap();
    t("act @ down.t()", fl, || a.matmul(&wd.t().unwrap()).unwrap());
    let q = Tensor::randn(0f32, 1., (4, 3, 1536, 64), &d).unwrap();
    let k = Tensor::randn(0f32, 1., (4, 3, 512, 64), &d).unwrap();
    let afl = 2.0 * 4.0 * 3.0 * 1536.0 * 512.0 * 64.0;
    t("scores q @ k.t()", afl, || q.matmul(&k.t().unwrap()).unwrap());
    let sc = Tensor::randn(0f32, 1., (4, 3, 1536, 512), &d).unwrap();
    t("softmax_last_dim", 0.0, || candle_nn::ops::softmax_last_dim(&sc).unwrap());
    let mask = Tensor::zeros((1536, 512), DType::F32, &d).unwrap();
    t("broadcast_add mask", 0.0, || sc.broadcast_add(&mask).unwrap());
    t("probs @ v", afl, || sc.matmul(&k).unwrap());
    let e = Tensor::randn(0f32, 1., (49152, 576), &d).unwrap();
    let h = Tensor::randn(0f32, 1., (29, 576), &d).unwrap();
    let h2 = Tensor::randn(0f32, 1., (341, 576), &d).unwrap();
    t("lm_head 29 rows", 2.0 * 29.0 * 576.0 * 49152.0, || h.matmul(&e.t().unwrap()).unwrap());
    t("lm_head 341 rows", 2.0 * 341.0 * 576.0 * 49152.0, || h2.matmul(&e.t().unwrap()).unwrap());
    let lg = Tensor::randn(0f32, 1., (341, 49152), &d).unwrap();
    t("logsumexp 341 rows", 0.0, || {
        let m = lg.max_keepdim(1).unwrap();
        (lg.broadcast_sub(&m).unwrap().exp().unwrap().sum_keepdim(1).unwrap().log().unwrap() + &m).unwrap()
    });
    let x3 = Tensor::randn(0f32, 1., (4, 512, 576), &d).unwrap();
    let g = Tensor::ones(576, DType::F32, &d).unwrap();
    t("rms_norm", 0.0, || candle_nn::ops::rms_norm(&x3, &g, 1e-5).unwrap());
    let qh = Tensor::randn(0f32, 1., (4, 9, 512, 64), &d).unwrap();
    let cs = Tensor::randn(0f32, 1., (512, 32), &d).unwrap();
    t("rope q", 0.0, || candle_nn::rotary_emb::rope(&qh, &cs, &cs).unwrap());
    let y = Tensor::randn(0f32, 1., (2048, 576), &d).unwrap();
    t("reshape/transpose/contiguous q", 0.0, || y.reshape((4, 512, 9, 64)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap());
    t("silu*up", 0.0, || (a.silu().unwrap() * &a).unwrap());
    // Separate projections against one product with the weights concatenated.
    let wq = Tensor::randn(0f32, 1., (576, 576), &d).unwrap();
    let wk = Tensor::randn(0f32, 1., (192, 576), &d).unwrap();
    let wqkv = Tensor::cat(&[&wq, &wk, &wk], 0).unwrap();
    let qfl = 2.0 * 2048.0 * 576.0 * 960.0;
    t("q, k, v separately", qfl, || {
        let _ = x.matmul(&wq.t().unwrap()).unwrap();
        let _ = x.matmul(&wk.t().unwrap()).unwrap();
        x.matmul(&wk.t().unwrap()).unwrap()
    });
    t("qkv concatenated", qfl, || x.matmul(&wqkv.t().unwrap()).unwrap());
    let wgu = Tensor::cat(&[&w, &w], 0).unwrap();
    t("gate, up separately", 2.0 * fl, || {
        let _ = x.matmul(&w.t().unwrap()).unwrap();
        x.matmul(&w.t().unwrap()).unwrap()
    });
    t("gate|up concatenated", 2.0 * fl, || x.matmul(&wgu.t().unwrap()).unwrap());
    // Attention as the forward runs it: composed ops against the fused kernel.
    let ql = Tensor::randn(0f32, 1., (4, 9, 512, 64), &d).unwrap();
    let kl = Tensor::randn(0f32, 1., (4, 3, 512, 64), &d).unwrap();
    let causal_fl = 2.0 * afl; // two products, full (the fused kernel computes about half)
    t("attention composed (scores, softmax, @v)", causal_fl, || {
        let s = ql.reshape((4, 3, 1536, 64)).unwrap().matmul(&kl.t().unwrap()).unwrap();
        let m = Tensor::zeros((1536, 512), DType::F32, &d).unwrap();
        let p = candle_nn::ops::softmax_last_dim(&s.broadcast_add(&m).unwrap()).unwrap();
        p.matmul(&kl).unwrap().reshape((4, 9, 512, 64)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
    });
}
