//! The instruction set of the inner loops, chosen once at run time.
//!
//! The loops are written once, portably, and compiled three times: for the baseline target,
//! for AVX2 + FMA and for AVX-512F (`#[target_feature]`), where the compiler vectorizes them
//! with that width. Rust does not contract `a * x + y` into a fused multiply-add, so every path
//! rounds each element the same way: the results are bit-identical whichever path runs.

use std::sync::OnceLock;

/// An instruction set the kernels can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F (16 lanes of f32).
    Avx512,
    /// AVX2 with FMA (8 lanes).
    Avx2,
    /// Whatever the baseline target allows (SSE2 on x86-64).
    Portable,
}

impl Isa {
    /// Its name in reports and tables.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512f",
            Isa::Avx2 => "avx2+fma",
            Isa::Portable => "portable",
        }
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// The widest instruction set this CPU has (detected once).
pub fn detected() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| [Isa::Avx512, Isa::Avx2].into_iter().find(|i| i.available()).unwrap_or(Isa::Portable))
}

/// `y += a * x` elementwise (`x` and `y` of one length), on the detected instruction set.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    axpy_on(detected(), a, x, y);
}

/// [`axpy`] on `isa`, or on the portable path if this CPU lacks it.
pub fn axpy_on(isa: Isa, a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy of slices of different lengths");
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.available() => {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { axpy_avx512(a, x, y) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.available() => {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { axpy_avx2(a, x, y) }
        }
        _ => axpy_portable(a, x, y),
    }
}

#[inline(always)]
fn axpy_portable(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * *xi;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn axpy_avx512(a: f32, x: &[f32], y: &mut [f32]) {
    axpy_portable(a, x, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    axpy_portable(a, x, y);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_path_gives_the_same_bits() {
        let x: Vec<f32> = (0..1003).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let start: Vec<f32> = (0..1003).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021).collect();
        let run = |isa| {
            let mut y = start.clone();
            axpy_on(isa, 0.37, &x, &mut y);
            y.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let portable = run(Isa::Portable);
        for isa in [Isa::Avx512, Isa::Avx2] {
            assert_eq!(run(isa), portable, "{}", isa.name());
        }
        assert_eq!(f32::from_bits(portable[5]), start[5] + 0.37 * x[5]);
        assert!(Isa::Portable.available() && detected().available());
    }
}
