//! edgevox's own tract ops for the GGUF's weight blocks (`ai.edgevox` ONNX domain, written by
//! `models/export_llm.py --variant q4_1`):
//!
//! - `EdgevoxBlockLinear`: `y = x @ Wᵀ`, W the blocks of one tensor in `weights.bin`; each row
//!   of x quantized once to 8-bit blocks, then [`quant::matmul_rows`] on up to 8 rows at a time,
//!   the weight rows split over the LLM's spinning workers ([`super::workers`]) when a step
//!   has entered them.
//! - `EdgevoxBlockGather`: embedding rows for token ids, from the same blocks the LM head reads.
//! - `EdgevoxLastRows`: the last L positions of the final hidden states, L the length of the
//!   `logit_rows` input (1 for a prompt or a step; 1 + drafts to verify speculated tokens), so
//!   the LM head runs on those rows only.
//!
//! The ONNX builders are registered with `tract_onnx::onnx()`'s `op_register` ([`register`]):
//! each one maps `weights.bin` next to `model.onnx` (one mapping per file and process, shared
//! by every op: the tied embedding and the LM head are one buffer) and checks its tensor's
//! extent and shape, naming the tensor on an error. The typed ops survive `into_optimized()`
//! (tract gives them no fusions) and report their multiply-adds as `cost`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use memmap2::Mmap;
use tract_hir::internal::*;
use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;

use super::workers;
use crate::quant::{self, ActBlock, BlockMatrix, BlockType, Kernel, MAX_ROWS};

/// Registers the ops' builders.
pub fn register(onnx: &mut Onnx) {
    onnx.op_register.insert("EdgevoxBlockLinear", build_linear);
    onnx.op_register.insert("EdgevoxBlockGather", build_gather);
    onnx.op_register.insert("EdgevoxLastRows", build_last_rows);
}

/// The kernel every op of this process uses (detected once, logged once).
pub fn kernel() -> Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        let k = Kernel::detect();
        log::info!(
            "block kernels: {} (this CPU has {:?})",
            k.name(),
            Kernel::all_available()
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
        );
        k
    })
}

/// `weights.bin` mapped into memory, shared by every op that reads it.
pub struct WeightFile {
    pub path: PathBuf,
    map: Mmap,
}

impl std::fmt::Debug for WeightFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WeightFile({}, {} bytes)",
            self.path.display(),
            self.map.len()
        )
    }
}

impl WeightFile {
    /// The file's mapping: made once per process while any op holds it.
    pub fn open(path: &Path) -> TractResult<Arc<WeightFile>> {
        static OPEN: Mutex<Option<HashMap<PathBuf, Weak<WeightFile>>>> = Mutex::new(None);
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        let open = open.get_or_insert_with(HashMap::new);
        if let Some(f) = open.get(path).and_then(Weak::upgrade) {
            return Ok(f);
        }
        let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        // SAFETY: the file is only read; the model directory's files are checked (size and
        // sha256, LlmModel::load) before the model is parsed, and are not written while a
        // model is loaded (the exporter writes a new directory's files).
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("{}: cannot map", path.display()))?;
        let f = Arc::new(WeightFile {
            path: path.to_path_buf(),
            map,
        });
        open.insert(path.to_path_buf(), Arc::downgrade(&f));
        Ok(f)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// One tensor's blocks inside a [`WeightFile`], checked.
#[derive(Clone, Debug)]
pub struct BlockTensor {
    pub name: String,
    pub ty: BlockType,
    pub rows: usize,
    pub cols: usize,
    offset: usize,
    file: Arc<WeightFile>,
}

impl BlockTensor {
    fn from_node(ctx: &ParsingContext, node: &NodeProto) -> TractResult<BlockTensor> {
        let name: String = node.get_attr("tensor")?;
        let ty: String = node.get_attr("type")?;
        let ty = BlockType::from_name(&ty).map_err(|e| anyhow!("tensor {name}: {e}"))?;
        let rows: usize = node.get_attr("N")?;
        let cols: usize = node.get_attr("K")?;
        let offset: usize = node.get_attr("offset")?;
        let bytes: usize = node.get_attr("bytes")?;
        let dir = Path::new(ctx.model_dir.unwrap_or("."));
        let file = WeightFile::open(&dir.join("weights.bin"))?;
        ensure!(
            offset
                .checked_add(bytes)
                .is_some_and(|end| end <= file.len()),
            "tensor {name}: bytes {offset}..{} are past the end of {} ({} bytes)",
            offset.saturating_add(bytes),
            file.path.display(),
            file.len()
        );
        let t = BlockTensor {
            name,
            ty,
            rows,
            cols,
            offset,
            file,
        };
        ensure!(
            bytes == ty.matrix_bytes(rows, cols),
            "tensor {}: {bytes} bytes for {rows} × {cols} {} weights",
            t.name,
            ty.name()
        );
        t.matrix()?;
        Ok(t)
    }

    fn data(&self) -> &[u8] {
        &self.file.map[self.offset..self.offset + self.ty.matrix_bytes(self.rows, self.cols)]
    }

    /// The blocks as a matrix view (shape checked).
    pub fn matrix(&self) -> TractResult<BlockMatrix<'_>> {
        BlockMatrix::new(&self.name, self.ty, self.rows, self.cols, self.data())
    }
}

impl PartialEq for BlockTensor {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
            && self.offset == other.offset
            && (self.ty, self.rows, self.cols) == (other.ty, other.rows, other.cols)
    }
}
impl Eq for BlockTensor {}

impl std::hash::Hash for BlockTensor {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.file), self.offset, self.rows, self.cols).hash(state);
    }
}

/// Either op while the ONNX model is analysed: its shape rules, then the typed op it becomes.
#[derive(Clone, Debug)]
enum BlockRules {
    Linear(BlockLinear),
    Gather(BlockGather),
}

impl Expansion for BlockRules {
    fn name(&self) -> StaticName {
        match self {
            BlockRules::Linear(_) => "EdgevoxBlockLinear".into(),
            BlockRules::Gather(_) => "EdgevoxBlockGather".into(),
        }
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        match self {
            // x [.., K] f32 -> y [.., N]
            BlockRules::Linear(op) => {
                s.equals(&inputs[0].datum_type, f32::datum_type())?;
                s.equals(&inputs[0].rank, &outputs[0].rank)?;
                let (k, n) = (op.w.cols.to_dim(), op.w.rows.to_dim());
                s.given(&inputs[0].rank, move |s, rank| {
                    let rank = rank as usize;
                    for ax in 0..rank - 1 {
                        s.equals(&outputs[0].shape[ax], &inputs[0].shape[ax])?;
                    }
                    s.equals(&inputs[0].shape[rank - 1], k.clone())?;
                    s.equals(&outputs[0].shape[rank - 1], n.clone())
                })
            }
            // ids [..] -> rows [.., K]
            BlockRules::Gather(op) => {
                s.equals(&outputs[0].rank, inputs[0].rank.bex() + 1)?;
                let k = op.w.cols.to_dim();
                s.given(&inputs[0].rank, move |s, rank| {
                    let rank = rank as usize;
                    for ax in 0..rank {
                        s.equals(&outputs[0].shape[ax], &inputs[0].shape[ax])?;
                    }
                    s.equals(&outputs[0].shape[rank], k.clone())
                })
            }
        }
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        match self {
            BlockRules::Linear(op) => model.wire_node(prefix, op.clone(), inputs),
            BlockRules::Gather(op) => model.wire_node(prefix, op.clone(), inputs),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The linear op.

fn build_linear(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let w = BlockTensor::from_node(ctx, node)?;
    Ok((expand(BlockRules::Linear(BlockLinear { w })), vec![]))
}

/// `y[.., n] = Σ_k x[.., k] W[n, k]` on the tensor's blocks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockLinear {
    pub w: BlockTensor,
}

impl Op for BlockLinear {
    fn name(&self) -> StaticName {
        "EdgevoxBlockLinear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} {} [{}, {}], kernel {}",
            self.w.name,
            self.w.ty.name(),
            self.w.rows,
            self.w.cols,
            kernel().name()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for BlockLinear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (k, n) = (self.w.cols, self.w.rows);
        let shape = x.shape().to_vec();
        ensure!(
            shape.last() == Some(&k),
            "{}: input of shape {shape:?}, expected {k} on the last axis",
            self.w.name
        );
        let plain = x.try_as_plain_ram()?;
        let xs: &[f32] = plain.as_slice::<f32>()?;
        let m = xs.len() / k;
        let mut out_shape = shape.clone();
        *out_shape.last_mut().unwrap() = n;
        let mut y = Tensor::zero::<f32>(&out_shape)?;
        {
            let mut view = y.try_as_plain_ram_mut()?;
            let ys = view.as_slice_mut::<f32>()?;
            linear(&self.w.matrix()?, xs, m, ys, kernel());
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for BlockLinear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.to_tvec();
        let last = shape.len() - 1;
        ensure!(
            shape[last] == self.w.cols.to_dim(),
            "{}: input's last axis is {}, expected {}",
            self.w.name,
            shape[last],
            self.w.cols
        );
        shape[last] = self.w.rows.to_dim();
        Ok(tvec!(f32::datum_type().fact(&shape)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let rows: TDim = inputs[0].shape.iter().rev().skip(1).product();
        Ok(tvec!(
            (
                Cost::FMA(i8::datum_type()),
                rows * (self.w.rows * self.w.cols)
            ),
            (
                Cost::Params(u8::datum_type()),
                self.w.ty.matrix_bytes(self.w.rows, self.w.cols).to_dim()
            )
        ))
    }

    as_op!();
}

/// Below this many weight blocks a product stays on the calling thread.
const THREADING_MIN_BLOCKS: usize = 4096;

/// `ys[r, i] = Σ_k xs[r, k] w[i, k]` for the `m` rows of `xs`: each row quantized once, rows
/// taken 8 at a time, the weight rows split over the workers entered on this thread (one
/// dispatch per product, each worker taking every tile of its rows: a prompt's product is
/// not one dispatch per 8 rows).
pub fn linear(w: &BlockMatrix, xs: &[f32], m: usize, ys: &mut [f32], kernel: Kernel) {
    let (n, k, nb) = (w.rows, w.cols, w.blocks_per_row());
    assert_eq!(xs.len(), m * k);
    assert_eq!(ys.len(), m * n);
    let mut acts = vec![ActBlock::default(); m * nb];
    for (row, a) in xs.chunks_exact(k).zip(acts.chunks_exact_mut(nb)) {
        quant::quantize_activations(row, a);
    }
    // Weight rows `rows` for every tile of activation rows, into `put(r, first, values)`:
    // the kernel writes weight-row-major ([rows][mt]); transposed into ys row by row.
    let rows_for_all_tiles = |rows: std::ops::Range<usize>, put: &mut dyn FnMut(usize, &[f32])| {
        let mut tile = vec![0f32; rows.len() * MAX_ROWS.min(m)];
        let mut line = vec![0f32; rows.len()];
        for r0 in (0..m).step_by(MAX_ROWS) {
            let mt = MAX_ROWS.min(m - r0);
            let out = &mut tile[..rows.len() * mt];
            quant::matmul_rows(
                kernel,
                w,
                &acts[r0 * nb..(r0 + mt) * nb],
                mt,
                rows.clone(),
                out,
            );
            for r in 0..mt {
                for (i, v) in line.iter_mut().enumerate() {
                    *v = out[i * mt + r];
                }
                put(r0 + r, &line);
            }
        }
    };
    match workers::current().filter(|w| w.threads() > 1 && n * nb >= THREADING_MIN_BLOCKS) {
        Some(workers) => {
            // Whole rows per part, a multiple of 4 so neighbours do not share a line.
            let rows_per = n.div_ceil(workers.threads()).next_multiple_of(4);
            let base = workers::SharedMut::new(ys);
            workers.run(&|part| {
                let (start, end) = ((part * rows_per).min(n), ((part + 1) * rows_per).min(n));
                if start < end {
                    rows_for_all_tiles(start..end, &mut |r, vals| {
                        // SAFETY: part p writes only columns [p·rows_per, (p+1)·rows_per) of
                        // each output row, which no other part touches, inside `ys` (m·n
                        // values); `run` returns only after every part has finished.
                        let dst = unsafe { base.slice(r * n + start, end - start) };
                        dst.copy_from_slice(vals);
                    });
                }
            });
        }
        None => rows_for_all_tiles(0..n, &mut |r, vals| {
            ys[r * n..(r + 1) * n].copy_from_slice(vals)
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// The embedding lookup.

fn build_gather(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let w = BlockTensor::from_node(ctx, node)?;
    Ok((expand(BlockRules::Gather(BlockGather { w })), vec![]))
}

/// `y[.., :] = W[ids[..], :]`, rows dequantized from the tensor's blocks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockGather {
    pub w: BlockTensor,
}

impl Op for BlockGather {
    fn name(&self) -> StaticName {
        "EdgevoxBlockGather".into()
    }

    op_as_typed_op!();
}

impl EvalOp for BlockGather {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let ids = args_1!(inputs);
        let mut out_shape = ids.shape().to_vec();
        let ids = ids.cast_to::<i64>()?;
        let plain = ids.try_as_plain_ram()?;
        let ids: &[i64] = plain.as_slice::<i64>()?;
        let w = self.w.matrix()?;
        out_shape.push(w.cols);
        let mut y = Tensor::zero::<f32>(&out_shape)?;
        {
            let mut view = y.try_as_plain_ram_mut()?;
            let ys = view.as_slice_mut::<f32>()?;
            for (&id, row) in ids.iter().zip(ys.chunks_exact_mut(w.cols)) {
                ensure!(
                    (0..w.rows as i64).contains(&id),
                    "{}: token id {id} is outside the table of {} rows",
                    self.w.name,
                    w.rows
                );
                w.dequantize_row(id as usize, row);
            }
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for BlockGather {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.to_tvec();
        shape.push(self.w.cols.to_dim());
        Ok(tvec!(f32::datum_type().fact(&shape)))
    }

    as_op!();
}

// ---------------------------------------------------------------------------------------------
// The positions that get logits.

fn build_last_rows(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(LastRows), vec![]))
}

/// `y = x[:, S - L.., :]` for `x [1, S, H]` and a marker input of shape `[L]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LastRows;

impl Expansion for LastRows {
    fn name(&self) -> StaticName {
        "EdgevoxLastRows".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].rank, 3)?;
        s.equals(&inputs[1].rank, 1)?;
        s.equals(&outputs[0].rank, 3)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], &inputs[1].shape[0])?;
        s.equals(&outputs[0].shape[2], &inputs[0].shape[2])
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

impl Op for LastRows {
    fn name(&self) -> StaticName {
        "EdgevoxLastRows".into()
    }

    op_as_typed_op!();
}

impl EvalOp for LastRows {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, marker) = args_2!(inputs);
        let (s, l) = (x.shape()[1], marker.shape()[0]);
        ensure!(
            (1..=s).contains(&l),
            "logits asked for the last {l} positions of a step of {s}"
        );
        Ok(tvec!(x.slice(1, s - l, s)?.into_tvalue()))
    }
}

impl TypedOp for LastRows {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.to_tvec();
        ensure!(
            shape.len() == 3,
            "EdgevoxLastRows: input of rank {}",
            shape.len()
        );
        shape[1] = inputs[1].shape[0].clone();
        Ok(tvec!(inputs[0].datum_type.fact(&shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product split over 2 workers equals the one-thread product bit for bit, for 1 to 11 activation rows.
    #[test]
    fn a_pool_splits_the_rows_and_changes_nothing() {
        let (n, k) = (1000, 576);
        let ty = BlockType::Q4_1;
        let data: Vec<u8> = (0..ty.matrix_bytes(n, k))
            .map(|i| match i % 20 {
                0 | 2 => 0x00,
                1 => 0x24, // d = 2^-6
                3 => 0xa4, // m = -2^-6
                _ => (i * 37 % 251) as u8,
            })
            .collect();
        let w = BlockMatrix::new("w", ty, n, k, &data).unwrap();
        assert!(n * w.blocks_per_row() >= THREADING_MIN_BLOCKS);
        let pool = workers::Workers::new(2).unwrap();
        for m in [1, 3, 8, 11] {
            let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.013).sin()).collect();
            let mut one = vec![0f32; m * n];
            linear(&w, &x, m, &mut one, Kernel::Portable);
            let mut two = vec![f32::NAN; m * n];
            workers::enter(&pool, || linear(&w, &x, m, &mut two, Kernel::Portable));
            assert_eq!(one, two, "m = {m}");
        }
    }
}
