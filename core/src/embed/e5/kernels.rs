//! Numeric kernels of the encoder: a safe wrapper over `gemm`, LayerNorm, GELU and softmax.
//!
//! The element-wise kernels are plain loops with branch-free `exp`/`erf` approximations
//! (errors around 1e-7, below f32 rounding of the activations) so the compiler vectorises
//! them; libm's scalar `expf`/`erff` took a quarter of the run time.

use gemm::Parallelism;

/// A strided, read-only matrix view over a slice.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A `rows x cols` matrix whose rows start `row_stride` elements apart.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let v = Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        };
        assert!(
            v.fits(),
            "matrix view {rows}x{cols}/{row_stride} past a slice of {}",
            data.len()
        );
        v
    }

    /// The transpose, without copying.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `out = a · b` (or `out += a · b` when `accumulate`), `out` row-major with rows
/// `out_stride` apart. `threads > 1` splits the product on the current rayon pool.
pub fn matmul(
    out: &mut [f32],
    out_stride: usize,
    a: View<'_>,
    b: View<'_>,
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "inner dimensions differ");
    assert!(n <= out_stride, "output rows overlap");
    assert!(
        m == 0 || (m - 1) * out_stride + n <= out.len(),
        "output too small"
    );
    assert!(a.fits() && b.fits());
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every element gemm touches (indices up to
    // (rows-1)*row_stride + (cols-1)*col_stride of each operand) inside its slice, and
    // `out` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Fills every `width`-long row of `out` with `bias` (the starting point of `x·Wᵀ + b`).
pub fn fill_rows(out: &mut [f32], bias: &[f32]) {
    out.chunks_exact_mut(bias.len())
        .for_each(|row| row.copy_from_slice(bias));
}

/// Defines a kernel that runs compiled for AVX-512F or AVX2+FMA when the CPU has them, so
/// the loops vectorise wider than the SSE2 baseline.
macro_rules! simd_kernel {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    portable($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    portable($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

simd_kernel! {
    /// Row-wise `x = LayerNorm(x + residual)` over rows of `w.len()` elements.
    pub fn add_layer_norm(x: &mut [f32], residual: Option<&[f32]>, w: &[f32], b: &[f32], eps: f32) {
        let h = w.len();
        for (t, row) in x.chunks_exact_mut(h).enumerate() {
            if let Some(r) = residual {
                row.iter_mut().zip(&r[t * h..(t + 1) * h]).for_each(|(x, r)| *x += r);
            }
            let mean = row.iter().sum::<f32>() / h as f32;
            let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((x, w), b) in row.iter_mut().zip(w).zip(b) {
                *x = (*x - mean) * inv * w + b;
            }
        }
    }
}

simd_kernel! {
    /// Exact-form GELU, `x·Φ(x) = x/2·(1 + erf(x/√2))`, in place.
    pub fn gelu(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2)));
    }
}

simd_kernel! {
    /// Softmax of `scale · x` for every `width`-long row, in place (`scale > 0`).
    pub fn softmax_rows(x: &mut [f32], width: usize, scale: f32) {
        // Lane-wise partial max/sum so the reductions vectorise (f32 addition does not
        // reassociate on its own).
        const LANES: usize = 16;
        for row in x.chunks_exact_mut(width) {
            let mut lanes = [f32::NEG_INFINITY; LANES];
            let mut chunks = row.chunks_exact(LANES);
            for c in &mut chunks {
                for (m, &v) in lanes.iter_mut().zip(c) {
                    *m = if v > *m { v } else { *m };
                }
            }
            let max = chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sums = [0.0f32; LANES];
            let mut chunks = row.chunks_exact_mut(LANES);
            for c in &mut chunks {
                for (s, v) in sums.iter_mut().zip(c) {
                    *v = exp((*v - max) * scale);
                    *s += *v;
                }
            }
            let mut sum = sums.iter().sum::<f32>();
            for v in chunks.into_remainder() {
                *v = exp((*v - max) * scale);
                sum += *v;
            }
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// `e^x` (Cephes' single-precision method, relative error ~2e-7), branch-free so it vectorises.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding 1.5·2^23 rounds to an integer in the low mantissa bits, with no libm call and
    // no float-to-int conversion; those bits, shifted into the exponent field, give 2^n.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits((shifted + 127.0).to_bits() << 23)
}

/// `erf(x)` by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7), branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_libm() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            let (e, want) = (exp(x), x.exp());
            assert!(
                (e - want).abs() <= want * 1e-6,
                "exp({x}) = {e}, libm {want}"
            );
        }
        // Reference erf values (to 9 digits).
        for (x, want) in [
            (0.0, 0.0),
            (0.1, 0.112_462_92),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
            (3.5, 0.999_999_3),
        ] {
            assert!(
                (erf(x) - want).abs() < 3e-7,
                "erf({x}) = {}, want {want}",
                erf(x)
            );
        }
        assert_eq!(exp(-1000.0), exp(-87.0));
    }

    #[test]
    fn matmul_handles_transposed_and_strided_views() {
        // a = [[1,2],[3,4]] stored with row stride 3; b rows = [[5,6],[7,8]] used transposed.
        let a = [1.0, 2.0, 0.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut out = [10.0, 20.0, 30.0, 40.0];
        matmul(
            &mut out,
            2,
            View::new(&a, 2, 2, 3),
            View::new(&b, 2, 2, 2).t(),
            true,
            1,
        );
        // a · bᵀ = [[17, 23], [39, 53]], plus the previous contents.
        assert_eq!(out, [27.0, 43.0, 69.0, 93.0]);
        matmul(
            &mut out,
            2,
            View::new(&a, 2, 2, 3),
            View::new(&b, 2, 2, 2),
            false,
            2,
        );
        assert_eq!(out, [19.0, 22.0, 43.0, 50.0]);
    }

    #[test]
    fn softmax_and_layer_norm_are_normalised() {
        let mut x = [1.0, 2.0, 3.0, -1.0, -1.0, -1.0];
        softmax_rows(&mut x, 3, 0.5);
        assert!((x[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((x[2] / x[1] - 0.5f32.exp()).abs() < 1e-5);
        assert!((x[3] - 1.0 / 3.0).abs() < 1e-6);
        // Rows longer than the lane width take both the chunked and the remainder path.
        let mut long: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let want: Vec<f32> = long.iter().map(|v| v.exp()).collect();
        let total: f32 = want.iter().sum();
        softmax_rows(&mut long, 37, 1.0);
        for (got, w) in long.iter().zip(&want) {
            assert!((got - w / total).abs() < 1e-6);
        }
        let mut y = [1.0, 2.0, 3.0, 4.0];
        add_layer_norm(
            &mut y,
            Some(&[1.0, 1.0, 1.0, 1.0]),
            &[1.0, 1.0],
            &[0.5, 0.5],
            1e-12,
        );
        assert_eq!(y, [-0.5, 1.5, -0.5, 1.5]);
    }
}
