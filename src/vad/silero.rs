//! Silero VAD (v6, MIT) run by tract: the opset-18 graph whose LSTM is unrolled into plain
//! ops. Its one `If` picks the 16 kHz or 8 kHz branch from the `sr` input; edgevox fixes `sr`
//! to 16000 before optimizing, so tract folds the branch away.
//!
//! Per call the network sees 64 samples of context (the end of the previous window) followed
//! by the 512 new samples, and carries a `[2, 1, 128]` recurrent state, as Silero's own
//! wrapper does.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;

use super::{SpeechDetector, WINDOW};

const CONTEXT: usize = 64;
const STATE: [usize; 3] = [2, 1, 128];

type Plan = TypedSimplePlan;

pub struct Silero {
    plan: Arc<Plan>,
    state: Tensor,
    input: Vec<f32>,
}

impl Silero {
    /// Loads the model; when it is a file `make models` fetched, its size and sha256 are
    /// checked against the fetch record first.
    pub fn load(path: &Path) -> Result<Self> {
        if let Some(rec) = crate::artefact::fetched_record(path) {
            crate::artefact::verify(path, &rec)?;
        }
        let plan = build(path).with_context(|| {
            format!(
                "{}: not a usable Silero VAD model (truncated or corrupted? run `make models`)",
                path.display()
            )
        })?;
        Ok(Self {
            plan,
            state: Tensor::zero::<f32>(&STATE)?,
            input: vec![0.0; CONTEXT + WINDOW],
        })
    }
}

fn build(path: &Path) -> Result<Arc<Plan>> {
    let mut model = tract_onnx::onnx().model_for_path(path)?;
    let names: Vec<String> = model
        .input_outlets()?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    ensure!(
        names.len() == 3 && names.iter().any(|n| n == "sr"),
        "inputs {names:?}, expected input, sr, state"
    );
    // The graph names its batch dimension (also inside the If branches): keep the symbol
    // (batch = 1 at run time).
    let batch = model.symbols.sym("batch");
    let b = TDim::from(batch.clone());
    for (i, name) in names.iter().enumerate() {
        let fact = match name.as_str() {
            "input" => InferenceFact::dt_shape(
                f32::datum_type(),
                tvec![b.clone(), (CONTEXT + WINDOW).to_dim()],
            ),
            "state" => InferenceFact::dt_shape(
                f32::datum_type(),
                tvec![2.to_dim(), b.clone(), 128.to_dim()],
            ),
            _ => InferenceFact::dt_shape(i64::datum_type(), TVec::<TDim>::new()),
        };
        model.set_input_fact(i, fact)?;
    }
    let mut typed = model.into_typed()?;
    // Fix the sample rate: the `sr` source becomes a constant so the If folds.
    let sr = typed.node_id_by_name("sr")?;
    let value = tensor0(16_000i64).into_arc_tensor();
    typed.node_mut(sr).op = Box::new(Const::new(value.clone())?);
    typed.node_mut(sr).outputs[0].fact = TypedFact::try_from(value)?;
    let inputs: Vec<OutletId> = typed
        .input_outlets()?
        .iter()
        .filter(|o| o.node != sr)
        .cloned()
        .collect();
    typed.set_input_outlets(&inputs)?;
    let order: Vec<String> = inputs
        .iter()
        .map(|o| typed.node(o.node).name.clone())
        .collect();
    ensure!(
        order == ["input", "state"],
        "unexpected input order {order:?}"
    );
    typed.into_optimized()?.into_runnable()
}

impl SpeechDetector for Silero {
    fn probability(&mut self, window: &[f32]) -> Result<f32> {
        ensure!(
            window.len() == WINDOW,
            "Silero takes {WINDOW} samples, got {}",
            window.len()
        );
        self.input[CONTEXT..].copy_from_slice(window);
        let x = Tensor::from_shape(&[1, CONTEXT + WINDOW], &self.input)?;
        let state = std::mem::replace(&mut self.state, Tensor::zero::<f32>(&[0])?);
        let mut out = self.plan.run(tvec![x.into_tvalue(), state.into_tvalue()])?;
        self.state = out.pop().context("Silero returned no state")?.into_tensor();
        let prob = out.pop().context("Silero returned no probability")?;
        let p = *prob
            .to_plain_array_view::<f32>()?
            .iter()
            .next()
            .context("empty probability")?;
        self.input.copy_within(WINDOW.., 0);
        Ok(p)
    }

    fn reset(&mut self) {
        self.state = Tensor::zero::<f32>(&STATE).expect("a small zero tensor");
        self.input.iter_mut().for_each(|x| *x = 0.0);
    }

    fn name(&self) -> &'static str {
        "silero"
    }
}
