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

/// Row-wise `x = LayerNorm(x + residual)` over rows of `w.len()` elements.
pub fn add_layer_norm(x: &mut [f32], residual: Option<&[f32]>, w: &[f32], b: &[f32], eps: f32) {
    let h = w.len();
    for (t, row) in x.chunks_exact_mut(h).enumerate() {
        if let Some(r) = residual {
            row.iter_mut()
                .zip(&r[t * h..(t + 1) * h])
                .for_each(|(x, r)| *x += r);
        }
        let mean = row.iter().sum::<f32>() / h as f32;
        let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((x, w), b) in row.iter_mut().zip(w).zip(b) {
            *x = (*x - mean) * inv * w + b;
        }
    }
}

/// Exact-form GELU, `x·Φ(x) = x/2·(1 + erf(x/√2))`, in place.
pub fn gelu(x: &mut [f32]) {
    x.iter_mut()
        .for_each(|v| *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2)));
}

/// Softmax of every `width`-long row, in place.
pub fn softmax_rows(x: &mut [f32], width: usize) {
    for row in x.chunks_exact_mut(width) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.iter_mut().for_each(|v| *v = exp(*v - max));
        let inv = 1.0 / row.iter().sum::<f32>();
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `e^x` (Cephes' single-precision method, relative error ~2e-7), branch-free so it vectorises.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Round-to-nearest by adding 1.5·2^23, which needs no libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
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
            (0.1, 0.112462916),
            (0.5, 0.520499878),
            (1.0, 0.842700793),
            (-2.0, -0.995322265),
            (3.5, 0.999999257),
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
        softmax_rows(&mut x, 3);
        assert!((x[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((x[3] - 1.0 / 3.0).abs() < 1e-6);
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
