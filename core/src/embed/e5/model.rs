//! The BERT encoder of multilingual-e5-small on the CPU.
//!
//! A batch is packed: the tokens of all texts form one `[T, hidden]` matrix, so every
//! linear layer is a single matmul with no padding, and attention runs per text. Buffers
//! are plain `Vec<f32>`s; candle is only used to read the Q4_0 blocks.

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::format::{Config, E5File, FormatError};
use super::kernels::{View, add_layer_norm, fill_rows, gelu, matmul, softmax_rows};

/// Token-type id used for every token (E5 has a single segment).
const TOKEN_TYPE: usize = 0;

/// Why a batch could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A sequence was empty or longer than the position table.
    #[error("sequence of {len} tokens (the model takes 1..={max})")]
    Length { len: usize, max: usize },
    /// A token id has no row in the word-embedding table.
    #[error("token id {id} outside the {rows}-row embedding table")]
    TokenId { id: u32, rows: usize },
    /// candle failed to dequantise embedding rows.
    #[error("word embedding lookup: {0}")]
    Lookup(#[from] candle_core::Error),
}

/// Weights of the encoder; linear layers in f32, the word table kept in 4 bits.
#[derive(Debug)]
pub struct Encoder {
    config: Config,
    /// `[vocab_rows, hidden]` Q4_0; only looked-up rows are dequantised.
    word: QTensor,
    /// `[max_positions, hidden]`.
    position: Vec<f32>,
    /// `[hidden]`, the token-type row added to every token.
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

#[derive(Debug)]
struct Linear {
    /// `[out, inp]`, row-major as stored.
    w: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
}

#[derive(Debug)]
struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
    eps: f32,
}

#[derive(Debug)]
struct Layer {
    /// Q, K and V fused into one `[3 * hidden, hidden]` projection: one matmul instead of three.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    ff_in: Linear,
    ff_out: Linear,
    ff_norm: Norm,
}

fn candle_err(name: &str) -> impl Fn(candle_core::Error) -> FormatError + '_ {
    move |e| FormatError::Tensor {
        name: name.to_owned(),
        reason: e.to_string(),
    }
}

/// Wraps raw Q4_0 blocks (byte-identical to GGML's) as a candle quantized tensor.
fn q4(file: &E5File<'_>, name: &str, rows: usize, cols: usize) -> Result<QTensor, FormatError> {
    let bytes = file.q4_tensor(name, rows, cols)?;
    // candle reinterprets the bytes as blocks holding an f16, and asserts 2-byte alignment.
    if bytes.as_ptr().align_offset(2) != 0 {
        return Err(FormatError::Tensor {
            name: name.to_owned(),
            reason: "Q4_0 data is not 2-byte aligned".into(),
        });
    }
    let storage = QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, GgmlDType::Q4_0)
        .map_err(candle_err(name))?;
    QTensor::new(storage, (rows, cols)).map_err(candle_err(name))
}

fn to_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl Linear {
    fn load(file: &E5File<'_>, prefix: &str, out: usize, inp: usize) -> Result<Self, FormatError> {
        let name = format!("{prefix}.w");
        let q = q4(file, &name, out, inp)?;
        let w = q
            .dequantize(&Device::Cpu)
            .and_then(|t| to_vec(&t))
            .map_err(candle_err(&name))?;
        let b = file.f32_tensor(&format!("{prefix}.b"), out)?;
        Ok(Self { w, b, inp })
    }

    /// `out[rows, n_out] = x[rows, inp] · Wᵀ + b`.
    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], threads: usize) {
        let n_out = self.b.len();
        let out = &mut out[..rows * n_out];
        fill_rows(out, &self.b);
        let w = View::new(&self.w, n_out, self.inp, self.inp).t();
        matmul(
            out,
            n_out,
            View::new(x, rows, self.inp, self.inp),
            w,
            true,
            threads,
        );
    }
}

impl Norm {
    fn load(file: &E5File<'_>, prefix: &str, h: usize, eps: f32) -> Result<Self, FormatError> {
        let w = file.f32_tensor(&format!("{prefix}.w"), h)?;
        let b = file.f32_tensor(&format!("{prefix}.b"), h)?;
        Ok(Self { w, b, eps })
    }

    /// `x = LayerNorm(x + residual)`, row by row.
    fn apply(&self, x: &mut [f32], residual: Option<&[f32]>) {
        add_layer_norm(x, residual, &self.w, &self.b, self.eps);
    }
}

impl Layer {
    fn load(file: &E5File<'_>, l: usize, cfg: &Config) -> Result<Self, FormatError> {
        let (h, ff, eps) = (cfg.hidden, cfg.ff, cfg.eps);
        let p = |s: &str| format!("l{l}.{s}");
        let (q, k, v) = (
            Linear::load(file, &p("q"), h, h)?,
            Linear::load(file, &p("k"), h, h)?,
            Linear::load(file, &p("v"), h, h)?,
        );
        let qkv = Linear {
            w: [q.w, k.w, v.w].concat(),
            b: [q.b, k.b, v.b].concat(),
            inp: h,
        };
        Ok(Self {
            qkv,
            attn_out: Linear::load(file, &p("ao"), h, h)?,
            attn_norm: Norm::load(file, &p("aln"), h, eps)?,
            ff_in: Linear::load(file, &p("fi"), ff, h)?,
            ff_out: Linear::load(file, &p("fo"), h, ff)?,
            ff_norm: Norm::load(file, &p("oln"), h, eps)?,
        })
    }
}

/// Scratch buffers of one forward pass, reused across layers.
struct Buffers {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    mid: Vec<f32>,
}

/// Self-attention of each text over its own tokens: `qkv` is `[T, 3h]`, `ctx` gets `[T, h]`.
/// Heads run in parallel when `threads > 1`.
fn attention(qkv: &[f32], lens: &[usize], h: usize, heads: usize, ctx: &mut [f32], threads: usize) {
    let (hd, stride) = (h / heads, 3 * h);
    let scale = 1.0 / (hd as f32).sqrt();
    let mut start = 0;
    for &len in lens {
        let base = start * stride;
        let head = |i: usize| -> Vec<f32> {
            let q = View::new(&qkv[base + i * hd..], len, hd, stride);
            let k = View::new(&qkv[base + h + i * hd..], len, hd, stride);
            let v = View::new(&qkv[base + 2 * h + i * hd..], len, hd, stride);
            let mut scores = vec![0.0; len * len];
            matmul(&mut scores, len, q, k.t(), false, 1);
            softmax_rows(&mut scores, len, scale);
            let mut out = vec![0.0; len * hd];
            matmul(&mut out, hd, View::new(&scores, len, len, len), v, false, 1);
            out
        };
        let outs: Vec<Vec<f32>> = if threads > 1 {
            (0..heads).into_par_iter().map(head).collect()
        } else {
            (0..heads).map(head).collect()
        };
        for (i, out) in outs.iter().enumerate() {
            for (t, row) in out.chunks_exact(hd).enumerate() {
                let at = (start + t) * h + i * hd;
                ctx[at..at + hd].copy_from_slice(row);
            }
        }
        start += len;
    }
}

impl Encoder {
    /// Builds the encoder from a parsed E5S1 image (copies what it keeps).
    pub fn load(file: &E5File<'_>) -> Result<Self, FormatError> {
        let cfg = file.config;
        let h = cfg.hidden;
        let word = q4(file, "emb.word", cfg.vocab_rows, h)?;
        let position = file.f32_tensor("emb.pos", cfg.max_positions * h)?;
        let types = file.f32_tensor("emb.type", cfg.type_vocab * h)?;
        let token_type = types[TOKEN_TYPE * h..(TOKEN_TYPE + 1) * h].to_vec();
        let embed_norm = Norm::load(file, "emb.ln", h, cfg.eps)?;
        let layers = (0..cfg.layers)
            .map(|l| Layer::load(file, l, &cfg))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            config: cfg,
            word,
            position,
            token_type,
            embed_norm,
            layers,
        })
    }

    /// Hyper-parameters of the loaded model.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Embeds tokenized texts: mean of the last hidden states over each text's tokens,
    /// L2-normalised. `threads > 1` splits each matmul and the heads on the current rayon pool.
    pub fn embed(&self, seqs: &[&[u32]], threads: usize) -> Result<Vec<Vec<f32>>, ForwardError> {
        let cfg = &self.config;
        let (h, ff) = (cfg.hidden, cfg.ff);
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        if let Some(&len) = lens.iter().find(|&&l| l == 0 || l > cfg.max_positions) {
            return Err(ForwardError::Length {
                len,
                max: cfg.max_positions,
            });
        }
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= cfg.vocab_rows) {
            return Err(ForwardError::TokenId {
                id,
                rows: cfg.vocab_rows,
            });
        }
        let t = ids.len();
        let ids = Tensor::from_vec(ids, t, &Device::Cpu)?;
        let mut x = to_vec(&self.word.embedding(&ids)?)?;
        let positions = lens.iter().flat_map(|&l| 0..l);
        for (row, p) in x.chunks_exact_mut(h).zip(positions) {
            let pos = &self.position[p * h..(p + 1) * h];
            for ((x, p), ty) in row.iter_mut().zip(pos).zip(&self.token_type) {
                *x += p + ty;
            }
        }
        self.embed_norm.apply(&mut x, None);

        let mut buf = Buffers {
            qkv: vec![0.0; t * 3 * h],
            ctx: vec![0.0; t * h],
            tmp: vec![0.0; t * h],
            mid: vec![0.0; t * ff],
        };
        for layer in &self.layers {
            layer.qkv.forward(&x, t, &mut buf.qkv, threads);
            attention(&buf.qkv, &lens, h, cfg.heads, &mut buf.ctx, threads);
            layer.attn_out.forward(&buf.ctx, t, &mut buf.tmp, threads);
            layer.attn_norm.apply(&mut x, Some(&buf.tmp));
            layer.ff_in.forward(&x, t, &mut buf.mid, threads);
            gelu(&mut buf.mid);
            layer.ff_out.forward(&buf.mid, t, &mut buf.tmp, threads);
            layer.ff_norm.apply(&mut x, Some(&buf.tmp));
        }

        let mut out = Vec::with_capacity(seqs.len());
        let mut rows = x.chunks_exact(h);
        for &len in &lens {
            let mut v = vec![0.0; h];
            for row in rows.by_ref().take(len) {
                v.iter_mut().zip(row).for_each(|(v, x)| *v += x);
            }
            v.iter_mut().for_each(|v| *v /= len as f32);
            l2_normalize(&mut v);
            out.push(v);
        }
        Ok(out)
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().max(1e-12).sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::e5::testdata::tiny_model_image;

    #[test]
    fn forward_gives_one_unit_vector_per_text() {
        let image = tiny_model_image();
        let file = E5File::parse(&image).unwrap();
        let enc = Encoder::load(&file).unwrap();
        let h = enc.config().hidden;
        let a: &[u32] = &[0, 5, 6, 2];
        let b: &[u32] = &[0, 7, 2];
        let out = enc.embed(&[a, b], 1).unwrap();
        assert_eq!(out.len(), 2);
        for v in &out {
            assert_eq!(v.len(), h);
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        }
        assert_ne!(out[0], out[1]);
    }

    #[test]
    fn packing_does_not_change_a_text_s_vector() {
        let image = tiny_model_image();
        let enc = Encoder::load(&E5File::parse(&image).unwrap()).unwrap();
        let a: &[u32] = &[0, 5, 6, 2];
        let b: &[u32] = &[0, 7, 8, 9, 2];
        let alone = enc.embed(&[a], 1).unwrap();
        let packed = enc.embed(&[b, a], 2).unwrap();
        let diff: f32 = alone[0]
            .iter()
            .zip(&packed[1])
            .map(|(x, y)| (x - y).abs())
            .sum();
        assert!(diff < 1e-4, "packed vector differs by {diff}");
    }

    #[test]
    fn too_long_or_empty_sequences_are_rejected() {
        let image = tiny_model_image();
        let enc = Encoder::load(&E5File::parse(&image).unwrap()).unwrap();
        let long = vec![5u32; enc.config().max_positions + 1];
        assert!(enc.embed(&[&long], 1).is_err());
        assert!(enc.embed(&[&[]], 1).is_err());
    }
}
