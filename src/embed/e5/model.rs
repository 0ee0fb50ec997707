//! The BERT encoder of multilingual-e5-small, run with candle on the CPU.
//!
//! A batch is packed: the tokens of all texts form one `[T, hidden]` matrix, so every
//! linear layer is a single matmul with no padding, and attention runs per text.

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use candle_nn::ops::softmax_last_dim;
use candle_nn::{LayerNorm, Linear};

use super::format::{Config, E5File, FormatError, Q4_BLOCK, Q4_BLOCK_BYTES};

/// Token-type id used for every token (E5 has a single segment).
const TOKEN_TYPE: usize = 0;

/// Weights of the encoder; linear layers in f32, the word table kept in 4 bits.
#[derive(Debug)]
pub struct Encoder {
    config: Config,
    /// `[vocab_rows, hidden]` Q4_0; only looked-up rows are dequantised.
    word: QTensor,
    /// `[max_positions, hidden]`.
    position: Tensor,
    /// `[hidden]`, the token-type row added to every token.
    token_type: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
}

#[derive(Debug)]
struct Layer {
    /// Q, K and V fused into one `[3 * hidden, hidden]` projection: one matmul instead of three.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
    ff_norm: LayerNorm,
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
    debug_assert_eq!(bytes.len(), rows * cols / Q4_BLOCK * Q4_BLOCK_BYTES);
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

fn q4_as_f32(
    file: &E5File<'_>,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<Tensor, FormatError> {
    q4(file, name, rows, cols)?
        .dequantize(&Device::Cpu)
        .map_err(candle_err(name))
}

fn vector(file: &E5File<'_>, name: &str, len: usize) -> Result<Tensor, FormatError> {
    Tensor::from_vec(file.f32_tensor(name, len)?, len, &Device::Cpu).map_err(candle_err(name))
}

fn layer_norm(
    file: &E5File<'_>,
    prefix: &str,
    h: usize,
    eps: f32,
) -> Result<LayerNorm, FormatError> {
    let w = vector(file, &format!("{prefix}.w"), h)?;
    let b = vector(file, &format!("{prefix}.b"), h)?;
    Ok(LayerNorm::new(w, b, f64::from(eps)))
}

fn linear(file: &E5File<'_>, prefix: &str, out: usize, inp: usize) -> Result<Linear, FormatError> {
    let w = q4_as_f32(file, &format!("{prefix}.w"), out, inp)?;
    let b = vector(file, &format!("{prefix}.b"), out)?;
    Ok(Linear::new(w, Some(b)))
}

impl Layer {
    fn load(file: &E5File<'_>, l: usize, cfg: &Config) -> Result<Self, FormatError> {
        let (h, ff, eps) = (cfg.hidden, cfg.ff, cfg.eps);
        let p = |s: &str| format!("l{l}.{s}");
        let fused = |part: &str| -> Result<(Tensor, Tensor), FormatError> {
            let lin = linear(file, &p(part), h, h)?;
            Ok((
                lin.weight().clone(),
                lin.bias().expect("loaded with bias").clone(),
            ))
        };
        let (qw, qb) = fused("q")?;
        let (kw, kb) = fused("k")?;
        let (vw, vb) = fused("v")?;
        let name = p("qkv");
        let qkv_w = Tensor::cat(&[qw, kw, vw], 0).map_err(candle_err(&name))?;
        let qkv_b = Tensor::cat(&[qb, kb, vb], 0).map_err(candle_err(&name))?;
        Ok(Self {
            qkv: Linear::new(qkv_w, Some(qkv_b)),
            attn_out: linear(file, &p("ao"), h, h)?,
            attn_norm: layer_norm(file, &p("aln"), h, eps)?,
            ff_in: linear(file, &p("fi"), ff, h)?,
            ff_out: linear(file, &p("fo"), h, ff)?,
            ff_norm: layer_norm(file, &p("oln"), h, eps)?,
        })
    }

    /// One transformer block over packed tokens; `lens` are the per-text token counts.
    fn forward(&self, x: &Tensor, lens: &[usize], heads: usize) -> candle_core::Result<Tensor> {
        let h = x.dim(1)?;
        let head_dim = h / heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let qkv = self.qkv.forward(x)?;
        let mut ctx = Vec::with_capacity(lens.len());
        let mut start = 0;
        for &len in lens {
            // [len, 3H] -> [3, heads, len, head_dim]
            let seg = qkv
                .narrow(0, start, len)?
                .reshape((len, 3, heads, head_dim))?;
            let seg = seg.permute((1, 2, 0, 3))?.contiguous()?;
            let q = (seg.get(0)? * scale)?;
            let (k, v) = (seg.get(1)?, seg.get(2)?);
            let probs = softmax_last_dim(&q.matmul(&k.t()?)?)?;
            let c = probs.matmul(&v)?; // [heads, len, head_dim]
            ctx.push(c.transpose(0, 1)?.reshape((len, h))?);
            start += len;
        }
        let ctx = Tensor::cat(&ctx, 0)?;
        let x = self
            .attn_norm
            .forward(&(x + self.attn_out.forward(&ctx)?)?)?;
        let mid = self.ff_in.forward(&x)?.gelu_erf()?;
        self.ff_norm.forward(&(x + self.ff_out.forward(&mid)?)?)
    }
}

impl Encoder {
    /// Builds the encoder from a parsed E5S1 image (copies what it keeps).
    pub fn load(file: &E5File<'_>) -> Result<Self, FormatError> {
        let cfg = file.config;
        let h = cfg.hidden;
        let word = q4(file, "emb.word", cfg.vocab_rows, h)?;
        let position = file.f32_tensor("emb.pos", cfg.max_positions * h)?;
        let position = Tensor::from_vec(position, (cfg.max_positions, h), &Device::Cpu)
            .map_err(candle_err("emb.pos"))?;
        let types = vector(file, "emb.type", cfg.type_vocab * h)?;
        let token_type = types
            .narrow(0, TOKEN_TYPE * h, h)
            .map_err(candle_err("emb.type"))?;
        let embed_norm = layer_norm(file, "emb.ln", h, cfg.eps)?;
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
    /// L2-normalised. Each sequence must hold 1..=max_positions valid ids.
    pub fn embed(&self, seqs: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let cfg = &self.config;
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        if let Some(&bad) = lens.iter().find(|&&l| l == 0 || l > cfg.max_positions) {
            candle_core::bail!(
                "sequence of {bad} tokens (allowed 1..={})",
                cfg.max_positions
            );
        }
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        let pos: Vec<u32> = lens.iter().flat_map(|&l| 0..l as u32).collect();
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &Device::Cpu)?;
        let pos = Tensor::from_vec(pos, total, &Device::Cpu)?;
        let x = (self.word.embedding(&ids)? + self.position.index_select(&pos, 0)?)?;
        let mut x = self
            .embed_norm
            .forward(&x.broadcast_add(&self.token_type)?)?;
        for layer in &self.layers {
            x = layer.forward(&x, &lens, cfg.heads)?;
        }
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        for &len in &lens {
            let mut v = x.narrow(0, start, len)?.mean(0)?.to_vec1::<f32>()?;
            l2_normalize(&mut v);
            out.push(v);
            start += len;
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
        let out = enc.embed(&[a, b]).unwrap();
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
        let alone = enc.embed(&[a]).unwrap();
        let packed = enc.embed(&[b, a]).unwrap();
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
        assert!(enc.embed(&[&long]).is_err());
        assert!(enc.embed(&[&[]]).is_err());
    }
}
