//! The per-conversation KV cache: every layer's keys (after RoPE) and values, written in place
//! into buffers sized for the conversation's context, read in place by the attention op
//! ([`super::attention`]). No concatenation, no re-packing, no allocation per step.
//!
//! Layout: `[layer][kv head][position][head_dim]`, one buffer for K and one for V, so a head's
//! positions are contiguous rows for the attention kernels. The buffers are zero-allocated:
//! the kernel maps the pages of positions not yet written lazily, so resident memory grows with
//! the conversation, not with its capacity.
//!
//! Snapshots are lengths: positions are only ever appended, so a prefix (the system prompt)
//! stays intact and restoring it is [`KvCache::truncate`]; so is rolling back rejected drafts.

use anyhow::{Result, bail, ensure};

use crate::quant::{BlockType, QK, f32_to_f16, quantize_q8_0};

/// How the cache stores a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KvType {
    /// IEEE half precision, rounded to nearest even: half the memory of f32, and what
    /// llama.cpp's cache holds by default.
    #[default]
    F16,
    F32,
    /// 8 bits per value in GGUF Q8_0 blocks (an f16 scale per 32 values: 34 bytes, 53% of
    /// f16), llama.cpp's `q8_0` cache type; head sizes a multiple of 32 only.
    Q8,
}

impl KvType {
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
            KvType::Q8 => "q8",
        }
    }

    pub fn from_name(name: &str) -> Result<KvType> {
        match name {
            "f16" => Ok(KvType::F16),
            "f32" => Ok(KvType::F32),
            "q8" => Ok(KvType::Q8),
            other => bail!("KV cache type {other:?} is not one of f16, f32, q8"),
        }
    }

    /// Bytes one cached row (one head's keys or values at one position) of `head_dim`
    /// values takes.
    pub fn row_bytes(self, head_dim: usize) -> usize {
        self.row_items(head_dim) * self.item_bytes()
    }

    /// Items of the store (f16s, f32s or bytes) per row of `head_dim` values.
    fn row_items(self, head_dim: usize) -> usize {
        match self {
            KvType::F16 | KvType::F32 => head_dim,
            KvType::Q8 => BlockType::Q8_0.matrix_bytes(1, head_dim),
        }
    }

    fn item_bytes(self) -> usize {
        match self {
            KvType::F16 => 2,
            KvType::F32 => 4,
            KvType::Q8 => 1,
        }
    }
}

#[derive(Clone)]
enum Store {
    F16(Vec<u16>),
    F32(Vec<f32>),
    Q8(Vec<u8>),
}

/// One head's rows of the cache (`[capacity][head_dim]`), in its storage type.
pub enum Rows<'a> {
    F16(&'a [u16]),
    F32(&'a [f32]),
    /// Rows of `head_dim / 32` Q8_0 blocks.
    Q8(&'a [u8]),
}

impl Rows<'_> {
    /// The first `n` rows.
    pub fn first(&self, n: usize, head_dim: usize) -> Rows<'_> {
        match self {
            Rows::F16(r) => Rows::F16(&r[..n * head_dim]),
            Rows::F32(r) => Rows::F32(&r[..n * head_dim]),
            Rows::Q8(r) => Rows::Q8(&r[..n * KvType::Q8.row_items(head_dim)]),
        }
    }
}

/// The keys and values of every layer for the tokens seen so far.
pub struct KvCache {
    ty: KvType,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    k: Store,
    v: Store,
    len: usize,
}

impl KvCache {
    /// An empty cache for `capacity` positions.
    pub fn new(
        ty: KvType,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Result<KvCache> {
        ensure!(capacity >= 1, "a KV cache needs room for at least 1 token");
        ensure!(
            ty != KvType::Q8 || (head_dim > 0 && head_dim.is_multiple_of(QK)),
            "a q8 KV cache needs heads of a multiple of {QK} values; this model's have {head_dim} (use f16 or f32)"
        );
        let n = layers
            .checked_mul(kv_heads)
            .and_then(|x| x.checked_mul(ty.row_items(head_dim)))
            .and_then(|x| x.checked_mul(capacity))
            .filter(|&n| {
                n.checked_mul(ty.item_bytes())
                    .is_some_and(|b| b <= isize::MAX as usize)
            })
            .ok_or_else(|| anyhow::anyhow!("a KV cache of {capacity} tokens is too large"))?;
        let store = || match ty {
            KvType::F16 => Store::F16(vec![0; n]),
            KvType::F32 => Store::F32(vec![0.0; n]),
            KvType::Q8 => Store::Q8(vec![0; n]),
        };
        Ok(KvCache {
            ty,
            layers,
            kv_heads,
            head_dim,
            capacity,
            k: store(),
            v: store(),
            len: 0,
        })
    }

    /// Number of tokens the cache holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache has room for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn kv_type(&self) -> KvType {
        self.ty
    }

    /// Bytes one token takes (K and V of every layer).
    pub fn bytes_per_token(&self) -> usize {
        2 * self.layers * self.kv_heads * self.ty.row_bytes(self.head_dim)
    }

    /// Bytes the tokens held take (what is resident, give or take a page per head).
    pub fn bytes(&self) -> usize {
        self.len * self.bytes_per_token()
    }

    /// Forgets every position from `len` on (a snapshot restore, or rejected drafts).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        ensure!(
            len <= self.len,
            "cannot roll the KV cache back to {len} tokens: it holds {}",
            self.len
        );
        self.len = len;
        Ok(())
    }

    pub(super) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity);
        self.len = len;
    }

    pub fn layers(&self) -> usize {
        self.layers
    }

    pub fn kv_heads(&self) -> usize {
        self.kv_heads
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Store items per row.
    fn row_items(&self) -> usize {
        self.ty.row_items(self.head_dim)
    }

    fn head_range(&self, layer: usize, head: usize) -> std::ops::Range<usize> {
        let span = self.capacity * self.row_items();
        let start = (layer * self.kv_heads + head) * span;
        start..start + span
    }

    /// Writes `k` and `v` (`[rows][kv_heads × head_dim]`, keys already rotated) at positions
    /// `pos..pos + rows` of `layer`. Positions past `len` are invisible until the step that
    /// wrote them sets the length.
    pub(super) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (kvh, d, ri) = (self.kv_heads, self.head_dim, self.row_items());
        let rows = k.len() / (kvh * d);
        assert!(layer < self.layers && pos + rows <= self.capacity);
        assert_eq!(k.len(), v.len());
        for h in 0..kvh {
            let range = self.head_range(layer, h);
            for r in 0..rows {
                let at = range.start + (pos + r) * ri;
                let src = (r * kvh + h) * d..(r * kvh + h + 1) * d;
                for (store, x) in [(&mut self.k, &k[src.clone()]), (&mut self.v, &v[src])] {
                    match store {
                        Store::F16(s) => {
                            for (o, &x) in s[at..at + d].iter_mut().zip(x) {
                                *o = f32_to_f16(x);
                            }
                        }
                        Store::F32(s) => s[at..at + d].copy_from_slice(x),
                        Store::Q8(s) => quantize_q8_0(x, &mut s[at..at + ri]),
                    }
                }
            }
        }
    }

    /// Every position's keys and values of one head (`[capacity][head_dim]`).
    pub(super) fn head(&self, layer: usize, head: usize) -> (Rows<'_>, Rows<'_>) {
        fn rows(s: &Store, range: std::ops::Range<usize>) -> Rows<'_> {
            match s {
                Store::F16(s) => Rows::F16(&s[range]),
                Store::F32(s) => Rows::F32(&s[range]),
                Store::Q8(s) => Rows::Q8(&s[range]),
            }
        }
        let range = self.head_range(layer, head);
        (rows(&self.k, range.clone()), rows(&self.v, range))
    }
}

impl Clone for KvCache {
    /// A copy of the positions held, with the same capacity (the rest is zero-allocated, so
    /// a copy costs what it holds, not what it could hold).
    fn clone(&self) -> KvCache {
        let mut c = KvCache::new(
            self.ty,
            self.layers,
            self.kv_heads,
            self.head_dim,
            self.capacity,
        )
        .expect("the same size as an existing cache");
        let used = self.len * self.row_items();
        for layer in 0..self.layers {
            for h in 0..self.kv_heads {
                let r = self.head_range(layer, h);
                let r = r.start..r.start + used;
                for (dst, src) in [(&mut c.k, &self.k), (&mut c.v, &self.v)] {
                    match (dst, src) {
                        (Store::F16(d), Store::F16(s)) => {
                            d[r.clone()].copy_from_slice(&s[r.clone()])
                        }
                        (Store::F32(d), Store::F32(s)) => {
                            d[r.clone()].copy_from_slice(&s[r.clone()])
                        }
                        (Store::Q8(d), Store::Q8(s)) => d[r.clone()].copy_from_slice(&s[r.clone()]),
                        _ => unreachable!("a clone has its source's type"),
                    }
                }
            }
        }
        c.len = self.len;
        c
    }
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KvCache({} of {} tokens, {})",
            self.len,
            self.capacity,
            self.ty.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_land_per_head_and_truncate_and_clone_keep_the_prefix() {
        for ty in [KvType::F16, KvType::F32] {
            let mut c = KvCache::new(ty, 2, 3, 4, 10).unwrap();
            assert_eq!(c.bytes_per_token(), 2 * 2 * 3 * ty.row_bytes(4));
            // Two rows at positions 0..2 of layer 1: value = row·100 + head·10 + dim.
            let vals: Vec<f32> = (0..2 * 3 * 4)
                .map(|i| ((i / 12) * 100 + (i % 12) / 4 * 10 + i % 4) as f32)
                .collect();
            let neg: Vec<f32> = vals.iter().map(|x| -x).collect();
            c.write(1, 0, &vals, &neg);
            c.set_len(2);
            let (k, v) = c.head(1, 2);
            let get = |r: &Rows, i: usize| match r {
                Rows::F16(s) => crate::quant::f16_to_f32(s[i]),
                Rows::F32(s) => s[i],
                Rows::Q8(_) => unreachable!("f16 and f32 here"),
            };
            assert_eq!(get(&k, 4 + 3), 123.0, "{ty:?}: row 1, head 2, dim 3");
            assert_eq!(get(&v, 1), -21.0);
            let (k0, _) = c.head(0, 0);
            assert_eq!(get(&k0, 0), 0.0, "layer 0 untouched");
            let copy = c.clone();
            assert_eq!(copy.len(), 2);
            let (kc, _) = copy.head(1, 2);
            assert_eq!(get(&kc, 4 + 3), 123.0);
            c.truncate(1).unwrap();
            assert_eq!(c.len(), 1);
            let err = c.truncate(2).unwrap_err().to_string();
            assert!(err.contains("holds 1"), "{err}");
            assert_eq!(copy.len(), 2, "a clone is independent");
        }
        assert!(KvCache::new(KvType::F16, 30, 3, 64, 0).is_err());
        assert!(KvCache::new(KvType::F16, 30, 3, 64, usize::MAX / 4).is_err());
        assert_eq!(KvType::from_name("f16").unwrap(), KvType::F16);
        assert!(
            KvType::from_name("q4")
                .unwrap_err()
                .to_string()
                .contains("f16, f32, q8")
        );
        assert_eq!(KvType::from_name("q8").unwrap(), KvType::Q8);
    }

    /// An 8-bit cache holds Q8_0 blocks (34 bytes per 32 values) per head and position,
    /// within half a step of each block's scale of what was written; clones and truncation
    /// keep its rows; heads not a multiple of 32 are refused.
    #[test]
    fn q8_storage_holds_blocks_per_row() {
        let d = 64;
        let mut c = KvCache::new(KvType::Q8, 2, 3, d, 8).unwrap();
        assert_eq!(KvType::Q8.row_bytes(d), 68);
        assert_eq!(c.bytes_per_token(), 2 * 2 * 3 * 68);
        let rows = 3;
        let vals: Vec<f32> = (0..rows * 3 * d)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let neg: Vec<f32> = vals.iter().map(|x| -2.0 * x).collect();
        c.write(1, 2, &vals, &neg);
        c.set_len(5);
        let copy = c.clone();
        for cache in [&c, &copy] {
            let (k, v) = cache.head(1, 2);
            let (Rows::Q8(k), Rows::Q8(v)) = (k, v) else {
                panic!("q8 rows")
            };
            assert_eq!(k.len(), 8 * 68);
            let mut row = vec![0f32; d];
            for r in 0..rows {
                for (store, sign) in [(k, 1.0f32), (v, -2.0)] {
                    let bytes = &store[(2 + r) * 68..(3 + r) * 68];
                    crate::quant::BlockMatrix::new("kv", BlockType::Q8_0, 1, d, bytes)
                        .unwrap()
                        .dequantize_row(0, &mut row);
                    let src = &vals[(r * 3 + 2) * d..(r * 3 + 3) * d];
                    for (b, (got, want)) in row.chunks(QK).zip(src.chunks(QK)).enumerate() {
                        let amax = want.iter().fold(0f32, |m, x| m.max(x.abs())) * sign.abs();
                        for (g, w) in got.iter().zip(want) {
                            let err = (g - sign * w).abs();
                            assert!(err <= amax / 127.0 * 0.51, "row {r} block {b}: {g} vs {w}");
                        }
                    }
                }
            }
            // Positions 0..2 were never written: all-zero blocks read as zeros.
            assert!(k[..2 * 68].iter().all(|&b| b == 0));
        }
        c.truncate(2).unwrap();
        assert_eq!((c.len(), copy.len()), (2, 5));
        let err = KvCache::new(KvType::Q8, 30, 3, 48, 16)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("multiple of 32") && err.contains("48"),
            "{err}"
        );
    }

    /// f16 storage rounds to nearest even (what llama.cpp's cache holds).
    #[test]
    fn f16_storage_rounds_to_nearest() {
        let mut c = KvCache::new(KvType::F16, 1, 1, 2, 1).unwrap();
        c.write(0, 0, &[1.0 + 1.0 / 4096.0, 0.1], &[65504.0, -1e-8]);
        let (k, v) = c.head(0, 0);
        let (Rows::F16(k), Rows::F16(v)) = (k, v) else {
            panic!("f16 rows")
        };
        assert_eq!(k, [0x3c00, 0x2e66]);
        assert_eq!(v, [0x7bff, 0x8000]);
    }
}
