//! `EdgevoxAttention` (`ai.edgevox` ONNX domain, one per layer, written by
//! `models/export_llm.py`): RoPE, grouped-query causal attention and the KV cache in one op.
//!
//! Inputs `q [1, S, H·D]`, `k` and `v [1, S, KV·D]` straight from the layer's projections;
//! output `[1, S, H·D]`. The op rotates q and k (halves layout, θ = base^(−2i/D), computed in
//! f64 once per step), writes k and v into the conversation's [`KvCache`] at positions
//! `P..P+S` (P = the tokens it held), and for each new position `i` and query head `h` attends
//! over positions `0..=P+i` of KV head `h / (H/KV)` read in place from the cache.
//!
//! The cache is not a graph tensor: [`LlmModel::forward`](super::LlmModel::forward) lends it
//! to the step through [`with_step`], and each layer's op reaches it from the thread the step
//! runs on (tract's single-threaded executor). Query heads are split over the LLM's workers.

use std::cell::{Cell, RefCell};

use tract_hir::internal::*;
use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;

use super::kv::{KvCache, KvType, Rows};
use super::workers;
use crate::quant::{self, Kernel};

pub fn register(onnx: &mut Onnx) {
    onnx.op_register.insert("EdgevoxAttention", build);
}

/// What a step lends its layers: the cache, and the RoPE angles of its positions.
struct Step {
    cache: *mut KvCache,
    /// Tokens the cache held before the step.
    start: usize,
    /// New tokens in the step.
    new: usize,
    /// cos and sin of each new position's angles (`[new][D/2]`), made by the first layer.
    rope: RefCell<Option<Rope>>,
}

struct Rope {
    key: (u64, usize),
    cos: Vec<f32>,
    sin: Vec<f32>,
}

thread_local! {
    static STEP: Cell<*const Step> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` (a plan run over `new` tokens) with `cache` lent to the attention ops it evaluates
/// on this thread. The cache's length is left as it was; the caller sets it once the whole
/// step has succeeded, so a failed step leaves the cache as it was before it.
pub fn with_step<R>(cache: &mut KvCache, new: usize, f: impl FnOnce() -> R) -> R {
    let step = Step {
        start: cache.len(),
        new,
        cache,
        rope: RefCell::new(None),
    };
    struct Restore(*const Step);
    impl Drop for Restore {
        fn drop(&mut self) {
            STEP.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(STEP.with(|s| s.replace(&step)));
    f()
}

/// The step lent to this thread, if any.
fn with_current<R>(f: impl FnOnce(&Step, &mut KvCache) -> TractResult<R>) -> TractResult<R> {
    let ptr = STEP.with(|s| s.get());
    ensure!(
        !ptr.is_null(),
        "EdgevoxAttention runs only inside an LLM step (LlmModel::forward), which lends it the KV cache"
    );
    // SAFETY: `with_step` stores a pointer to a `Step` on its own stack frame and restores
    // the previous value before that frame ends, so a non-null pointer read on this thread is
    // live. The step's `cache` came from a `&mut KvCache` that `with_step` holds for the whole
    // run; the ops are evaluated one at a time on this thread and none keeps the reference
    // past its own `eval`, so this is the only live reference to the cache.
    unsafe {
        let step = &*ptr;
        f(step, &mut *step.cache)
    }
}

fn build(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let op = Attention {
        layer: node.get_attr("layer")?,
        heads: node.get_attr("heads")?,
        kv_heads: node.get_attr("kv_heads")?,
        head_dim: node.get_attr("head_dim")?,
        rope_base: node.get_attr::<f32>("rope_base")? as f64,
    };
    ensure!(
        op.heads > 0
            && op.kv_heads > 0
            && op.heads.is_multiple_of(op.kv_heads)
            && op.head_dim > 0
            && op.head_dim.is_multiple_of(2),
        "{}: {} query heads over {} KV heads of size {}: not a grouped-query attention",
        node.name,
        op.heads,
        op.kv_heads,
        op.head_dim
    );
    Ok((expand(op), vec![]))
}

/// One layer's attention; see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub layer: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_base: f64,
}

impl Eq for Attention {}

impl std::hash::Hash for Attention {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.layer, self.heads, self.kv_heads, self.head_dim).hash(state);
        self.rope_base.to_bits().hash(state);
    }
}

impl Expansion for Attention {
    fn name(&self) -> StaticName {
        "EdgevoxAttention".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3)?;
        check_output_arity(outputs, 1)?;
        let (hd, kvd) = (
            (self.heads * self.head_dim).to_dim(),
            (self.kv_heads * self.head_dim).to_dim(),
        );
        for (i, width) in [(0, &hd), (1, &kvd), (2, &kvd)] {
            s.equals(&inputs[i].datum_type, f32::datum_type())?;
            s.equals(&inputs[i].rank, 3)?;
            s.equals(&inputs[i].shape[2], width.clone())?;
            s.equals(&inputs[i].shape[1], &inputs[0].shape[1])?;
        }
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, 3)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], &inputs[0].shape[1])?;
        s.equals(&outputs[0].shape[2], hd)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

impl Op for Attention {
    fn name(&self) -> StaticName {
        "EdgevoxAttention".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "layer {}: {} heads over {} KV heads of {}",
            self.layer, self.heads, self.kv_heads, self.head_dim
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Attention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (q, k, v) = args_3!(inputs);
        let s = q.shape()[1];
        ensure!(
            q.shape()[0] == 1 && k.shape()[..2] == [1, s] && v.shape()[..2] == [1, s],
            "EdgevoxAttention layer {}: a batch of one, got q {:?}, k {:?}, v {:?}",
            self.layer,
            q.shape(),
            k.shape(),
            v.shape()
        );
        let q = q.try_as_plain_ram()?;
        let k = k.try_as_plain_ram()?;
        let v = v.try_as_plain_ram()?;
        let (q, k, v) = (
            q.as_slice::<f32>()?,
            k.as_slice::<f32>()?,
            v.as_slice::<f32>()?,
        );
        let mut out = Tensor::zero::<f32>(&[1, s, self.heads * self.head_dim])?;
        {
            let mut view = out.try_as_plain_ram_mut()?;
            let o = view.as_slice_mut::<f32>()?;
            with_current(|step, cache| self.run(step, cache, q, k, v, o))?;
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Attention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.to_tvec();
        ensure!(
            shape.len() == 3,
            "EdgevoxAttention: q of rank {}",
            shape.len()
        );
        shape[2] = (self.heads * self.head_dim).to_dim();
        Ok(tvec!(f32::datum_type().fact(&shape)))
    }

    as_op!();
}

/// A thread's working memory for one group of query heads (grown to the longest context
/// seen, then reused: no allocation per head).
#[derive(Default)]
struct Scratch {
    /// Scores, then probabilities: G rows of T.
    scores: Vec<f32>,
    /// The G output heads.
    acc: Vec<f32>,
    /// With an 8-bit cache: the G queries quantized to 8-bit blocks, and their scores as the
    /// block kernel writes them (T rows of G).
    acts: Vec<quant::ActBlock>,
    by_key: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Attention {
    fn run(
        &self,
        step: &Step,
        cache: &mut KvCache,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &mut [f32],
    ) -> TractResult<()> {
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        let s = q.len() / (h * d);
        ensure!(
            s == step.new,
            "EdgevoxAttention layer {}: {s} positions in a step of {}",
            self.layer,
            step.new
        );
        ensure!(
            self.layer < cache.layers() && cache.kv_heads() == kvh && cache.head_dim() == d,
            "EdgevoxAttention layer {} ({kvh} KV heads of {d}) does not fit a cache of {} layers, {} KV heads of {}",
            self.layer,
            cache.layers(),
            cache.kv_heads(),
            cache.head_dim()
        );
        let start = step.start;
        ensure!(
            start + s <= cache.capacity(),
            "{} tokens exceed the KV cache's {}",
            start + s,
            cache.capacity()
        );
        let mut rope = step.rope.borrow_mut();
        let key = (self.rope_base.to_bits(), d);
        if rope.as_ref().is_none_or(|r| r.key != key) {
            *rope = Some(Rope::new(self.rope_base, d, start, s));
        }
        let rope = rope.as_ref().expect("made above");
        // Rotated keys into the cache, with the values; rotated queries to a local copy.
        let mut k_rot = k.to_vec();
        rope.apply(&mut k_rot, kvh, d);
        cache.write(self.layer, start, &k_rot, v);
        let mut q_rot = q.to_vec();
        rope.apply(&mut q_rot, h, d);
        // With an f16 cache the arithmetic is llama.cpp's (CPU, without flash attention): the
        // query is rounded to f16 for its product with the f16 keys, and so are the
        // probabilities for theirs with the f16 values. Measured: top-1 agreement with
        // llama.cpp 94.1% this way, 92.8% with f32 query and probabilities (README).
        let f16 = cache.kv_type() == KvType::F16;
        if f16 {
            quant::round_to_f16(&mut q_rot);
        }

        let kernel = super::ops::kernel();
        let group = h / kvh;
        let scale = 1.0 / (d as f32).sqrt();
        let cache: &KvCache = cache;
        // A run of query heads sharing one KV head, `heads`: their output columns in every
        // row are their own, and the KV head's rows are read once for all of them.
        let group_part = |heads: std::ops::Range<usize>,
                          dst: &mut dyn FnMut(usize, usize, &[f32])| {
            let g = heads.len();
            let (kr, vr) = cache.head(self.layer, heads.start / group);
            SCRATCH.with(|scratch| {
                let scratch = &mut *scratch.borrow_mut();
                scratch.acc.resize(g * d, 0.0);
                for i in 0..s {
                    let t = start + i + 1;
                    if scratch.scores.len() < g * t {
                        scratch.scores.resize(g * t, 0.0);
                    }
                    let qi = &q_rot[(i * h + heads.start) * d..(i * h + heads.end) * d];
                    attend(
                        kernel,
                        qi,
                        d,
                        &kr.first(t, d),
                        &vr.first(t, d),
                        scale,
                        scratch,
                        t,
                        f16,
                    );
                    dst(i, heads.start, &scratch.acc);
                }
            });
        };
        // `heads` cut where the KV head changes.
        let runs = |heads: std::ops::Range<usize>| {
            let mut at = heads.start;
            std::iter::from_fn(move || {
                (at < heads.end).then(|| {
                    let end = ((at / group + 1) * group).min(heads.end);
                    let run = at..end;
                    at = end;
                    run
                })
            })
        };
        match workers::current().filter(|w| w.threads() > 1) {
            Some(pool) => {
                let base = workers::SharedMut::new(out);
                pool.run(&|part| {
                    let heads = part * h / pool.threads()..(part + 1) * h / pool.threads();
                    for run in runs(heads) {
                        group_part(run, &mut |i, first, acc| {
                            // SAFETY: heads first..first + acc.len()/D of row `i` are
                            // values no other part writes (each head belongs to one part),
                            // inside `out` (S·H·D values); `run` returns only once every
                            // part has finished.
                            let o = unsafe { base.slice((i * h + first) * d, acc.len()) };
                            o.copy_from_slice(acc);
                        });
                    }
                });
            }
            None => {
                for run in runs(0..h) {
                    group_part(run, &mut |i, first, acc| {
                        let at = (i * h + first) * d;
                        out[at..at + acc.len()].copy_from_slice(acc)
                    });
                }
            }
        }
        Ok(())
    }
}

/// `out_g = softmax(scale · K q_g) V` over the `rows` rows of `k` and `v` for each of the G
/// queries in `q` (G queries of D = `d` values) into `scratch.acc` (G·D), the probabilities
/// rounded to f16 when `f16`. The f16 and q8 kernels read each key and value row once for
/// all G. With an 8-bit cache the queries are quantized to 8-bit blocks for their integer
/// products with the keys (llama.cpp's arithmetic for a `q8_0` cache); the probabilities
/// stay f32.
#[allow(clippy::too_many_arguments)]
fn attend(
    kernel: Kernel,
    q: &[f32],
    d: usize,
    k: &Rows,
    v: &Rows,
    scale: f32,
    scratch: &mut Scratch,
    rows: usize,
    f16: bool,
) {
    let groups = q.len() / d;
    let scores = &mut scratch.scores[..groups * rows];
    let out = &mut scratch.acc[..groups * d];
    match k {
        Rows::F16(k) => quant::dot_rows_f16(kernel, q, d, k, scores),
        Rows::Q8(k) => {
            let keys = quant::BlockMatrix {
                ty: quant::BlockType::Q8_0,
                rows,
                cols: d,
                data: k,
            };
            // The block kernel takes up to MAX_ROWS queries per pass over the keys.
            for (qc, sc) in q
                .chunks(quant::MAX_ROWS * d)
                .zip(scores.chunks_mut(quant::MAX_ROWS * rows))
            {
                let m = qc.len() / d;
                scratch
                    .acts
                    .resize(qc.len() / quant::QK, quant::ActBlock::default());
                quant::quantize_activations(qc, &mut scratch.acts);
                scratch.by_key.resize(rows * m, 0.0);
                quant::matmul_rows(
                    kernel,
                    &keys,
                    &scratch.acts,
                    m,
                    0..rows,
                    &mut scratch.by_key,
                );
                for (t, row) in scratch.by_key.chunks_exact(m).enumerate() {
                    for (g, &x) in row.iter().enumerate() {
                        sc[g * rows + t] = x;
                    }
                }
            }
        }
        Rows::F32(k) => {
            for (qg, sg) in q.chunks_exact(d).zip(scores.chunks_exact_mut(rows)) {
                for (sc, row) in sg.iter_mut().zip(k.chunks_exact(d)) {
                    *sc = crate::simd::dot(qg, row);
                }
            }
        }
    }
    for sg in scores.chunks_exact_mut(rows) {
        quant::softmax(kernel, sg, scale);
    }
    if f16 {
        quant::round_to_f16(scores);
    }
    out.fill(0.0);
    match v {
        Rows::F16(v) => quant::axpy_rows_f16(kernel, scores, v, out, d),
        Rows::Q8(v) => quant::axpy_rows_q8(kernel, scores, v, out, d),
        Rows::F32(v) => {
            for (pg, og) in scores.chunks_exact(rows).zip(out.chunks_exact_mut(d)) {
                for (&p, row) in pg.iter().zip(v.chunks_exact(d)) {
                    crate::simd::axpy(og, p, row);
                }
            }
        }
    }
}

impl Rope {
    /// cos and sin of `pos · base^(−2i/D)` for positions `start..start + n`, computed in f64
    /// and rounded once (as the exporter's former tables were).
    fn new(base: f64, d: usize, start: usize, n: usize) -> Rope {
        let half = d / 2;
        let (mut cos, mut sin) = (Vec::with_capacity(n * half), Vec::with_capacity(n * half));
        for p in start..start + n {
            for i in 0..half {
                let inv_freq = 1.0 / base.powf((2 * i) as f64 / d as f64);
                let (s, c) = (p as f64 * inv_freq).sin_cos();
                cos.push(c as f32);
                sin.push(s as f32);
            }
        }
        Rope {
            key: (base.to_bits(), d),
            cos,
            sin,
        }
    }

    /// Rotates `x` (`[rows][heads][D]`, halves layout: pairs `(j, j + D/2)`), row `r` at the
    /// step's position `r`.
    fn apply(&self, x: &mut [f32], heads: usize, d: usize) {
        let half = d / 2;
        for (r, row) in x.chunks_exact_mut(heads * d).enumerate() {
            let (cos, sin) = (
                &self.cos[r * half..(r + 1) * half],
                &self.sin[r * half..(r + 1) * half],
            );
            for head in row.chunks_exact_mut(d) {
                let (a, b) = head.split_at_mut(half);
                for j in 0..half {
                    let (x0, x1) = (a[j], b[j]);
                    a[j] = x0 * cos[j] - x1 * sin[j];
                    b[j] = x1 * cos[j] + x0 * sin[j];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::kv::KvType;

    /// The op against attention written out in f64 from the definitions, over a cache filled
    /// in two steps (3 tokens, then 2), for every storage type, with 1 to 3 threads.
    #[test]
    fn attention_matches_the_definition_across_steps() {
        // Heads of 32 values: one Q8_0 block each, so the 8-bit cache is tested too.
        let (h, kvh, d) = (4, 2, 32);
        let op = Attention {
            layer: 1,
            heads: h,
            kv_heads: kvh,
            head_dim: d,
            rope_base: 10000.0,
        };
        let total = 5;
        let val =
            |i: usize, salt: usize| (((i * 7919 + salt * 104729) % 2000) as f32 / 1000.0) - 1.0;
        let q: Vec<f32> = (0..total * h * d).map(|i| val(i, 1)).collect();
        let k: Vec<f32> = (0..total * kvh * d).map(|i| val(i, 2)).collect();
        let v: Vec<f32> = (0..total * kvh * d).map(|i| val(i, 3)).collect();
        // A row of heads as the cache stores it: f16, f32, or Q8_0 blocks (by the rule of
        // llama.cpp's reference quantizer, written out here).
        let store = |x: &[f32], ty: KvType| -> Vec<f64> {
            match ty {
                KvType::F16 => x
                    .iter()
                    .map(|&x| crate::quant::f16_to_f32(crate::quant::f32_to_f16(x)) as f64)
                    .collect(),
                KvType::F32 => x.iter().map(|&x| x as f64).collect(),
                KvType::Q8 => x
                    .chunks(32)
                    .flat_map(|b| {
                        let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                        let id = 1.0 / (amax / 127.0);
                        let sc = crate::quant::f16_to_f32(crate::quant::f32_to_f16(amax / 127.0));
                        b.iter()
                            .map(move |&v| (v * id).round() as f64 * sc as f64)
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            }
        };
        let rot = |x: &[f32], pos: usize, heads: usize| -> Vec<f64> {
            let mut y = vec![0f64; heads * d];
            for hh in 0..heads {
                for j in 0..d / 2 {
                    let ang = pos as f64 / 10000f64.powf(2.0 * j as f64 / d as f64);
                    let (a, b) = (x[hh * d + j] as f64, x[hh * d + j + d / 2] as f64);
                    y[hh * d + j] = a * ang.cos() - b * ang.sin();
                    y[hh * d + j + d / 2] = b * ang.cos() + a * ang.sin();
                }
            }
            y
        };
        for ty in [KvType::F16, KvType::F32, KvType::Q8] {
            // Three threads cut a KV head's query heads between two parts.
            for threads in [1, 2, 3] {
                let pool = workers::Workers::new(threads).unwrap();
                let mut cache = KvCache::new(ty, 2, kvh, d, 16).unwrap();
                let mut got = Vec::new();
                for (a, b) in [(0, 3), (3, 5)] {
                    let n = b - a;
                    let mut o = vec![f32::NAN; n * h * d];
                    with_step(&mut cache, n, || {
                        workers::enter(&pool, || {
                            with_current(|step, c| {
                                op.run(
                                    step,
                                    c,
                                    &q[a * h * d..b * h * d],
                                    &k[a * kvh * d..b * kvh * d],
                                    &v[a * kvh * d..b * kvh * d],
                                    &mut o,
                                )
                            })
                        })
                    })
                    .unwrap();
                    cache.set_len(b);
                    got.extend(o);
                }
                // The definition: keys rotated then stored (rounded to the cache's type).
                let keys: Vec<Vec<f64>> = (0..total)
                    .map(|p| {
                        let kr: Vec<f32> = rot(&k[p * kvh * d..(p + 1) * kvh * d], p, kvh)
                            .iter()
                            .map(|&x| x as f32)
                            .collect();
                        store(&kr, ty)
                    })
                    .collect();
                let r16 = |x: f64| match ty {
                    KvType::F16 => {
                        crate::quant::f16_to_f32(crate::quant::f32_to_f16(x as f32)) as f64
                    }
                    KvType::F32 | KvType::Q8 => x,
                };
                let vals: Vec<Vec<f64>> = (0..total)
                    .map(|p| store(&v[p * kvh * d..(p + 1) * kvh * d], ty))
                    .collect();
                for i in 0..total {
                    // With an f16 cache the query and the probabilities are rounded to f16 too.
                    // With an 8-bit cache the query is quantized to 8-bit blocks (f32 scales).
                    let qf: Vec<f32> = rot(&q[i * h * d..(i + 1) * h * d], i, h)
                        .iter()
                        .map(|&x| x as f32)
                        .collect();
                    let qr: Vec<f64> = match ty {
                        KvType::Q8 => {
                            let mut b = vec![crate::quant::ActBlock::default(); h * d / 32];
                            crate::quant::quantize_activations(&qf, &mut b);
                            b.iter()
                                .flat_map(|b| b.qs.map(|q| b.d as f64 * q as f64))
                                .collect()
                        }
                        _ => qf.iter().map(|&x| r16(x as f64)).collect(),
                    };
                    for hh in 0..h {
                        let j = hh / (h / kvh);
                        let sc: Vec<f64> = (0..=i)
                            .map(|t| {
                                (0..d)
                                    .map(|x| qr[hh * d + x] * keys[t][j * d + x])
                                    .sum::<f64>()
                                    / (d as f64).sqrt()
                            })
                            .collect();
                        let m = sc.iter().cloned().fold(f64::MIN, f64::max);
                        let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                        let z: f64 = e.iter().sum();
                        for x in 0..d {
                            let want: f64 =
                                (0..=i).map(|t| r16(e[t] / z) * vals[t][j * d + x]).sum();
                            let g = got[(i * h + hh) * d + x] as f64;
                            assert!(
                                (g - want).abs() < 1e-5,
                                "{ty:?} {threads}t row {i} head {hh} dim {x}: {g} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn outside_a_step_or_past_the_cache_is_an_error() {
        let op = Attention {
            layer: 0,
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
            rope_base: 10000.0,
        };
        let x = vec![0.5f32; 8];
        let mut o = vec![0f32; 8];
        let err = with_current(|step, c| op.run(step, c, &x, &x[..4], &x[..4], &mut o))
            .unwrap_err()
            .to_string();
        assert!(err.contains("inside an LLM step"), "{err}");
        let mut cache = KvCache::new(KvType::F16, 1, 1, 4, 1).unwrap();
        cache.set_len(1);
        let err = with_step(&mut cache, 1, || {
            with_current(|step, c| op.run(step, c, &x, &x[..4], &x[..4], &mut o))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("exceed the KV cache's 1"), "{err}");
        let mut wrong = KvCache::new(KvType::F16, 1, 2, 4, 4).unwrap();
        let err = with_step(&mut wrong, 1, || {
            with_current(|step, c| op.run(step, c, &x, &x[..4], &x[..4], &mut o))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("does not fit a cache"), "{err}");
    }
}
