//! The loaded decoder: an ONNX graph optimized once by tract and shared behind an `Arc`, and
//! the per-conversation KV cache it reads and extends.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use log::{debug, info};
use tokenizers::Tokenizer;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
use tract_onnx::tract_core::runtime::RunOptions;
use tract_onnx::tract_core::tract_linalg::multithread::Executor;

use super::attention;
use super::kv::{KvCache, KvType};
use super::meta::LlmMeta;
use super::text::token_bytes;
use super::workers::{self, Workers};
use crate::artefact;

/// How to load the model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Threads for tract's matrix products (1 = no thread pool).
    pub threads: usize,
    /// Check the files' sha256 against llm.json (size is always checked).
    pub verify_checksums: bool,
    /// How the KV cache stores keys and values.
    pub kv_type: KvType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            threads: 1,
            verify_checksums: true,
            kv_type: KvType::F16,
        }
    }
}

type Plan = TypedSimplePlan;

/// A loaded, optimized decoder plus its tokenizer. Load once, share, spawn caches from it.
pub struct LlmModel {
    pub meta: LlmMeta,
    pub dir: PathBuf,
    pub tokenizer: Tokenizer,
    plan: Arc<Plan>,
    /// The block products' threads; each step enters them (the caller is one of them).
    workers: Arc<Workers>,
    token_bytes: Vec<Vec<u8>>,
    /// Bytes of the weights on disk (`model.onnx`, and `weights.bin` where there is one).
    pub model_bytes: u64,
    pub load_time: Duration,
    pub threads: usize,
    pub kv_type: KvType,
}

impl std::fmt::Debug for LlmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmModel")
            .field("dir", &self.dir)
            .field("variant", &self.meta.variant)
            .field("threads", &self.threads)
            .finish()
    }
}

impl LlmModel {
    /// Loads `model.onnx`, `tokenizer.json` and `llm.json` from `dir`, checking each file.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Arc<LlmModel>> {
        let start = Instant::now();
        let meta = LlmMeta::read(&dir.join("llm.json"))?;
        // weights.bin: the GGUF's blocks that edgevox's own ops map (q4_1 export).
        let files = ["model.onnx", "tokenizer.json", "weights.bin"];
        for file in files
            .into_iter()
            .filter(|f| *f != "weights.bin" || meta.files.contains_key(*f))
        {
            let path = dir.join(file);
            let want = meta.recorded(file)?;
            if opts.verify_checksums {
                artefact::verify(&path, want)?;
            } else {
                artefact::verify_size(&path, want)?;
            }
        }
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow!("{}: not a usable tokenizer: {e}", tok_path.display()))?;
        ensure!(
            tokenizer.get_vocab_size(true) == meta.config.vocab,
            "{}: {} tokens, but the model has a vocabulary of {}",
            tok_path.display(),
            tokenizer.get_vocab_size(true),
            meta.config.vocab
        );
        let specials: Vec<u32> = tokenizer
            .get_added_tokens_decoder()
            .keys()
            .copied()
            .collect();
        let vocab: Vec<(String, u32)> = tokenizer.get_vocab(true).into_iter().collect();
        let token_bytes = token_bytes(&vocab, &specials);

        ensure!(opts.threads >= 1, "the LLM needs at least 1 thread, not 0");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if opts.threads > cores {
            log::warn!(
                "{} LLM threads asked for, but this machine has {cores} cores: using {cores}",
                opts.threads
            );
            cores
        } else {
            opts.threads
        };
        let onnx_path = dir.join("model.onnx");
        let model_bytes = files
            .iter()
            .filter(|f| **f != "tokenizer.json")
            .filter_map(|f| meta.files.get(*f))
            .map(|r| r.size)
            .sum();
        let plan = build_plan(&onnx_path, &meta)
            .with_context(|| format!("{}: tract could not load the model", onnx_path.display()))?;
        crate::metrics::release_freed_heap();
        let load_time = start.elapsed();
        info!(
            "loaded {} ({} variant, {model_bytes} bytes) in {load_time:?} with {} thread(s)",
            onnx_path.display(),
            meta.variant,
            threads
        );
        Ok(Arc::new(LlmModel {
            meta,
            dir: dir.to_path_buf(),
            tokenizer,
            plan,
            workers: Workers::new(threads)?,
            token_bytes,
            model_bytes,
            load_time,
            threads,
            kv_type: opts.kv_type,
        }))
    }

    /// Longest sequence (prompt + reply) the model handles.
    pub fn context_length(&self) -> usize {
        self.meta.config.context_length
    }

    /// An empty KV cache with room for the model's whole context.
    pub fn empty_cache(&self) -> Result<KvCache> {
        self.cache_for(self.context_length())
    }

    /// An empty KV cache with room for `tokens` (a conversation's context).
    pub fn cache_for(&self, tokens: usize) -> Result<KvCache> {
        let c = &self.meta.config;
        ensure!(
            tokens <= self.context_length(),
            "a cache of {tokens} tokens is larger than the model's context of {}",
            self.context_length()
        );
        KvCache::new(self.kv_type, c.n_layers, c.n_kv_heads, c.head_dim, tokens)
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) are parsed.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing failed: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The raw bytes a token stands for (empty for special tokens).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(|b| b.as_slice())
            .unwrap_or(&[])
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&t| self.token_bytes(t).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.meta.stop_ids.contains(&id)
    }

    /// Names of the matrix-product kernels tract picked for this model (e.g.
    /// `arm64simd_mmm_f32_8x8_a55` on aarch64, `fma_mmm_f32_16x6` on x86_64), sorted, no repeats.
    pub fn matmul_kernels(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .plan
            .model()
            .nodes
            .iter()
            .filter_map(|n| n.op_as::<OptMatMul>())
            .flat_map(|op| op.mmm.iter().map(|m| m.name().to_string()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Runs `tokens` after what `cache` holds, extends the cache, and returns the logits of
    /// the last position.
    pub fn forward(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>> {
        self.forward_with(cache, tokens, 1, None)
    }

    /// [`LlmModel::forward`], returning the logits of the last `rows` positions (row after
    /// row, `rows × vocab` values): what verifying speculated tokens needs.
    pub fn forward_rows(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        rows: usize,
    ) -> Result<Vec<f32>> {
        ensure!(
            (1..=tokens.len()).contains(&rows),
            "logits of {rows} positions asked of a step of {}",
            tokens.len()
        );
        self.forward_with(cache, tokens, rows, None)
    }

    /// [`LlmModel::forward`], adding the time each kind of node took to `profile`.
    pub fn forward_profiled(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        profile: &mut StepProfile,
    ) -> Result<Vec<f32>> {
        self.forward_with(cache, tokens, 1, Some(profile))
    }

    fn forward_with(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        rows: usize,
        profile: Option<&mut StepProfile>,
    ) -> Result<Vec<f32>> {
        ensure!(!tokens.is_empty(), "forward needs at least one token");
        let vocab = self.meta.config.vocab as u32;
        if let Some(bad) = tokens.iter().find(|&&t| t >= vocab) {
            bail!("token id {bad} is outside the vocabulary of {vocab}");
        }
        let (s, p) = (tokens.len(), cache.len());
        ensure!(
            p + s <= cache.capacity(),
            "{} tokens exceed the {}",
            p + s,
            if cache.capacity() == self.context_length() {
                format!("model's context of {}", self.context_length())
            } else {
                format!("conversation's context of {}", cache.capacity())
            }
        );
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let inputs: TVec<TValue> = tvec![
            Tensor::from_shape(&[1, s], &ids)?.into_tvalue(),
            Tensor::zero::<i64>(&[rows])?.into_tvalue(),
        ];
        // The cache is lent to the layers' attention ops, which write the new positions in
        // place; its length moves only once the whole step has succeeded, so a failed step
        // leaves it as it was.
        let run = attention::with_step(cache, s, || match profile {
            None => workers::enter(&self.workers, || self.plan.run(inputs)),
            Some(profile) => workers::enter(&self.workers, || -> Result<_> {
                let mut state = tract_onnx::tract_core::plan::SimpleState::new(&self.plan)?;
                state.run_plan_with_eval(inputs, |ctx, op_state, node, input| {
                    let t = Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, input);
                    profile.add(node.op().name().as_ref(), t.elapsed());
                    out
                })
            }),
        });
        let mut outputs =
            run.with_context(|| format!("LLM step over {s} tokens after {p} failed"))?;
        ensure!(
            outputs.len() == 1,
            "model returned {} outputs, expected the logits alone",
            outputs.len()
        );
        cache.set_len(p + s);
        let logits = outputs.remove(0);
        let logits = logits.to_plain_array_view::<f32>()?;
        let row = logits.as_slice().context("logits are not contiguous")?;
        ensure!(
            row.len() == rows * self.meta.config.vocab,
            "logits have {} values, expected {rows} rows of {}",
            row.len(),
            self.meta.config.vocab
        );
        debug!("forward: {s} tokens after {p}");
        Ok(row.to_vec())
    }
}

/// Where a step's time goes, by kind of node.
#[derive(Debug, Clone, Default)]
pub struct StepProfile {
    /// edgevox's block products (every weight matrix: QKV, output, gate/up, down, LM head).
    pub products: Duration,
    /// Attention: edgevox's attention op (RoPE, the in-place cache, scores, softmax, values).
    pub attention: Duration,
    /// Everything else: norms, reshapes, the embedding lookup, element-wise ops.
    pub rest: Duration,
    /// Time and node evaluations per op name.
    pub by_op: std::collections::BTreeMap<String, (Duration, usize)>,
}

impl StepProfile {
    fn add(&mut self, op: &str, t: Duration) {
        let e = self.by_op.entry(op.to_string()).or_default();
        e.0 += t;
        e.1 += 1;
        match op {
            "EdgevoxBlockLinear" => self.products += t,
            "EdgevoxAttention" | "OptMatMul" | "Softmax" | "TypedConcat" | "Concat" => {
                self.attention += t
            }
            _ => self.rest += t,
        }
    }

    pub fn total(&self) -> Duration {
        self.products + self.attention + self.rest
    }
}

/// The optimized plan. tract's own ops (norms, element-wise) run on the calling thread:
/// at these sizes they stay under tract's threading thresholds anyway, and a rayon pool
/// beside the [`Workers`] measured no faster (2 threads: decode 88.0 vs 86.3 tokens/s,
/// prefill 272 vs 281) while holding two more idle threads.
fn build_plan(path: &Path, meta: &LlmMeta) -> Result<Arc<Plan>> {
    let c = &meta.config;
    let mut onnx = tract_onnx::onnx();
    super::ops::register(&mut onnx);
    attention::register(&mut onnx);
    let mut model = onnx.model_for_path(path)?;
    let n_inputs = model.inputs.len();
    ensure!(
        n_inputs == 2,
        "{n_inputs} inputs, expected the token ids and logit_rows (an export from before \
         edgevox's in-place KV cache, {} layers: export it again, `make models`)",
        c.n_layers
    );
    let s = TDim::from(model.symbols.sym("S"));
    let l = TDim::from(model.symbols.sym("L"));
    model.set_input_fact(
        0,
        InferenceFact::dt_shape(i64::datum_type(), tvec![1.to_dim(), s]),
    )?;
    model.set_input_fact(1, InferenceFact::dt_shape(i64::datum_type(), tvec![l]))?;
    let typed = model.into_optimized()?;
    let options = RunOptions {
        executor: Some(Executor::SingleThread),
        ..Default::default()
    };
    typed.into_runnable_with_options(&options)
}

#[cfg(test)]
mod tests {
    //! The tiny synthetic Llama (`make tiny-llm`: models/tiny_llm.py, random weights through the
    //! real exporter) against a numpy forward pass of the same weights. These run under
    //! qemu-aarch64 too (`make test-cross`), where they show tract's NEON kernels at work.
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Reference {
        prompt: String,
        prompt_ids: Vec<u32>,
        greedy: Vec<u32>,
        /// With keys and values rounded to f16 (the default cache).
        step_logits: Vec<Vec<f32>>,
        /// The same steps without that rounding (an f32 cache).
        step_logits_f32: Vec<Vec<f32>>,
    }

    fn tiny() -> (Arc<LlmModel>, Reference) {
        tiny_named("tiny-llm")
    }

    fn tiny_named(name: &str) -> (Arc<LlmModel>, Reference) {
        let dir = crate::cache::Cache::for_tests().named(name);
        let model = LlmModel::load(&dir, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e:#}\n(the tiny test model is made by `make tiny-llm`)"));
        let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
        (model, serde_json::from_str(&text).unwrap())
    }

    /// Largest difference between two logit rows. The reference is float64 arithmetic on the
    /// same 4-bit weights, so what is left is float32 rounding (5e-6 on logits of magnitude ~5)
    /// and, with the f16 cache, a query or probability that float64 and float32 round to
    /// neighbouring f16 values (4.8e-4 on x86_64, 5.2e-4 under qemu); a broken kernel, a shifted
    /// position or a stale cache moves them by 0.1+.
    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }
    const TOL: f32 = 5e-3;

    #[test]
    fn tiny_model_matches_the_numpy_reference_step_by_step() {
        let worst = step_by_step(tiny(), TOL);
        eprintln!("tiny model: largest logit difference from the reference {worst:e}");
    }

    /// The q4_1 twin: GGUF Q4_1/Q8_0 blocks through edgevox's ops and this CPU's block kernel,
    /// against numpy that rounds each product's input to 8 bits by the same rule. float64 and
    /// float32 may round an activation to a different code (a 1/127 step of its block's
    /// peak), worth ~1e-2 in the logits (none did on x86_64: 1.7e-6 measured); a wrong block
    /// layout, scale or min term moves them by 0.5+.
    #[test]
    fn tiny_q4_1_model_matches_the_numpy_reference_step_by_step() {
        let worst = step_by_step(tiny_named("tiny-llm-q4_1"), TOL_Q8);
        eprintln!(
            "tiny q4_1 model ({} kernel): largest logit difference from the reference {worst:e}",
            crate::llm::ops::kernel().name()
        );
    }
    const TOL_Q8: f32 = 5e-2;

    /// The prompt at once, then one greedy token at a time through the KV cache, each step's
    /// logits within `tol` of the reference; returns the largest difference.
    fn step_by_step((model, r): (Arc<LlmModel>, Reference), tol: f32) -> f32 {
        assert_eq!(model.encode(&r.prompt).unwrap(), r.prompt_ids, "tokenizer");
        let mut cache = model.empty_cache().unwrap();
        // The prompt in one batch, then one token at a time through the KV cache.
        let mut logits = model.forward(&mut cache, &r.prompt_ids).unwrap();
        let mut worst = 0.0f32;
        for (step, want) in r.step_logits.iter().enumerate() {
            let d = max_diff(&logits, want);
            assert!(d < tol, "step {step}: logits differ by {d}");
            worst = worst.max(d);
            let best = crate::llm::sampler::argmax(&logits).unwrap() as u32;
            assert_eq!(best, r.greedy[step], "step {step}: greedy token");
            logits = model.forward(&mut cache, &[best]).unwrap();
        }
        assert_eq!(cache.len(), r.prompt_ids.len() + r.greedy.len());
        worst
    }

    /// Threads: 0 is refused, more than the cores is clamped (logged), and the q4_1 ops split
    /// over tract's pool give what one thread gives, bit for bit (each weight row is computed
    /// whole by one thread).
    #[test]
    fn thread_counts_are_checked_and_a_pool_changes_nothing() {
        let dir = crate::cache::Cache::for_tests().named("tiny-llm-q4_1");
        let load = |threads| {
            LlmModel::load(
                &dir,
                &LoadOptions {
                    threads,
                    verify_checksums: false,
                    ..Default::default()
                },
            )
        };
        let err = load(0).unwrap_err().to_string();
        assert!(err.contains("at least 1 thread"), "{err}");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let many = load(cores + 5).unwrap();
        assert_eq!(many.threads, cores);
        let one = load(1).unwrap();
        let (_, r) = tiny_named("tiny-llm-q4_1");
        let a = one
            .forward(&mut one.empty_cache().unwrap(), &r.prompt_ids)
            .unwrap();
        let b = many
            .forward(&mut many.empty_cache().unwrap(), &r.prompt_ids)
            .unwrap();
        assert_eq!(a, b);
    }

    /// An f32 cache against the reference's unrounded steps, and a cache rolled back by a
    /// few positions (rejected drafts) or copied after the prompt (a snapshot) giving the
    /// same logits as the straight run.
    #[test]
    fn f32_cache_rollback_and_snapshot_match_the_reference() {
        for name in ["tiny-llm", "tiny-llm-q4_1"] {
            let (f16_model, r) = tiny_named(name);
            let dir = f16_model.dir.clone();
            let model = LlmModel::load(
                &dir,
                &LoadOptions {
                    kv_type: KvType::F32,
                    ..Default::default()
                },
            )
            .unwrap();
            let tol = if name == "tiny-llm" { TOL } else { TOL_Q8 };
            let mut cache = model.empty_cache().unwrap();
            assert_eq!(cache.kv_type(), KvType::F32);
            let mut logits = model.forward(&mut cache, &r.prompt_ids).unwrap();
            for (step, want) in r.step_logits_f32.iter().enumerate() {
                let d = max_diff(&logits, want);
                assert!(
                    d < tol,
                    "{name} f32 cache, step {step}: logits differ by {d}"
                );
                logits = model.forward(&mut cache, &[r.greedy[step]]).unwrap();
            }
            // f16 model: snapshot after the prompt, run 6 tokens, roll back 4, run them again.
            let mut cache = f16_model.empty_cache().unwrap();
            f16_model.forward(&mut cache, &r.prompt_ids).unwrap();
            let snapshot = cache.clone();
            let n = r.prompt_ids.len();
            for &t in &r.greedy[..6] {
                f16_model.forward(&mut cache, &[t]).unwrap();
            }
            cache.truncate(n + 2).unwrap();
            let mut again = Vec::new();
            for &t in &r.greedy[2..6] {
                again = f16_model.forward(&mut cache, &[t]).unwrap();
            }
            let d = max_diff(&again, &r.step_logits[6]);
            assert!(d < tol, "{name}: after a rollback, logits differ by {d}");
            let mut restored = snapshot.clone();
            let batch = f16_model.forward(&mut restored, &r.greedy[..6]).unwrap();
            let d = max_diff(&batch, &r.step_logits[6]);
            assert!(d < tol, "{name}: from the snapshot, logits differ by {d}");
            assert_eq!(
                snapshot.len(),
                n,
                "the snapshot is not changed by its copy's use"
            );
            let err = cache.truncate(n + 100).unwrap_err().to_string();
            assert!(err.contains("cannot roll the KV cache back"), "{err}");
        }
    }

    #[test]
    fn tiny_model_prompt_in_chunks_equals_prompt_at_once() {
        let (model, r) = tiny();
        let mut cache = model.empty_cache().unwrap();
        let mut logits = Vec::new();
        for chunk in r.prompt_ids.chunks(7) {
            logits = model.forward(&mut cache, chunk).unwrap();
        }
        let d = max_diff(&logits, &r.step_logits[0]);
        assert!(d < TOL, "chunked prefill differs by {d}");
        // Past the context: refused with the numbers, the cache untouched.
        let room = model.context_length() - cache.len();
        let err = model.forward(&mut cache, &vec![1; room + 1]).unwrap_err();
        assert!(
            err.to_string()
                .contains("exceed the model's context of 128"),
            "{err}"
        );
        assert_eq!(cache.len(), r.prompt_ids.len());
    }

    #[test]
    fn tract_uses_the_targets_simd_kernels() {
        let (model, _) = tiny();
        let kernels = model.matmul_kernels();
        assert!(!kernels.is_empty(), "no optimized matrix products");
        eprintln!("tract matmul kernels: {kernels:?}");
        if cfg!(target_arch = "aarch64") {
            // tract-linalg's NEON kernels are the arm64simd_* family (arm64fp16_* with fp16).
            assert!(
                kernels.iter().all(|k| k.starts_with("arm64")),
                "a kernel that is not NEON on aarch64: {kernels:?}"
            );
        } else {
            assert!(
                kernels.iter().all(|k| !k.starts_with("generic")),
                "tract fell back to portable kernels: {kernels:?}"
            );
        }
    }
}
