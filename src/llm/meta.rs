//! `llm.json`: what the exporter (`models/export_llm.py`) recorded next to the ONNX model.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::Deserialize;

use crate::artefact::Recorded;

/// Hyper-parameters of the exported Llama.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    pub n_layers: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub context_length: usize,
    pub rope_base: f64,
    pub rms_eps: f64,
}

/// How one role's message is wrapped by the model's chat template.
#[derive(Debug, Clone, Deserialize)]
pub struct RoleWrap {
    pub prefix: String,
    pub suffix: String,
}

/// The chat template, rendered by the exporter into plain strings.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatTemplate {
    pub system: RoleWrap,
    pub user: RoleWrap,
    pub assistant: RoleWrap,
    pub generation_prompt: String,
    #[serde(default)]
    pub template_default_system_prompt: Option<String>,
}

impl ChatTemplate {
    /// The system prompt wrapped as the template wants it.
    pub fn system_text(&self, prompt: &str) -> String {
        format!("{}{prompt}{}", self.system.prefix, self.system.suffix)
    }

    /// A user turn followed by the prompt that makes the model answer as the assistant.
    pub fn user_turn_text(&self, question: &str) -> String {
        format!(
            "{}{question}{}{}",
            self.user.prefix, self.user.suffix, self.generation_prompt
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LlmMeta {
    pub format: u32,
    pub variant: String,
    pub config: LlamaConfig,
    pub bos_id: u32,
    pub stop_ids: Vec<u32>,
    pub chat: ChatTemplate,
    pub files: BTreeMap<String, Recorded>,
}

impl LlmMeta {
    pub fn read(path: &Path) -> Result<LlmMeta> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "{} is missing: export the model first (`make models`)",
                path.display()
            )
        })?;
        let meta: LlmMeta = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid llm.json", path.display()))?;
        ensure!(
            meta.format == 1,
            "{}: unsupported format {}",
            path.display(),
            meta.format
        );
        let c = &meta.config;
        ensure!(
            c.n_heads > 0
                && c.n_kv_heads > 0
                && c.n_heads.is_multiple_of(c.n_kv_heads)
                && c.head_dim * c.n_heads == c.hidden,
            "{}: inconsistent head layout {c:?}",
            path.display()
        );
        Ok(meta)
    }

    /// The recorded size and checksum of one of the exported files.
    pub fn recorded(&self, file: &str) -> Result<&Recorded> {
        self.files
            .get(file)
            .with_context(|| format!("llm.json records no {file}"))
    }
}
