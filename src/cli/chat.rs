//! `edgevox chat`: the LLM alone, in text.

use std::io::{BufRead, Write};

use anyhow::Result;
use clap::Args;
use edgevox::llm::{Chat, ChatOptions, DEFAULT_SYSTEM_PROMPT, SamplingParams};
use serde_json::json;

use super::LlmArgs;

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    llm: LlmArgs,
    /// Ask one question, print the reply and exit.
    #[arg(long)]
    prompt: Option<String>,
    /// With --prompt: print the reply as JSON with its tokens and timings.
    #[arg(long, requires = "prompt")]
    json: bool,
    /// System prompt.
    #[arg(long, default_value = DEFAULT_SYSTEM_PROMPT)]
    system: String,
    /// Most tokens in one reply.
    #[arg(long, default_value_t = 96)]
    max_tokens: usize,
    /// Context size in tokens (history beyond it is dropped, oldest first).
    #[arg(long, default_value_t = edgevox::config::defaults::CONTEXT)]
    context: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 1.1)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl ChatArgs {
    fn options(&self) -> ChatOptions {
        ChatOptions {
            system_prompt: self.system.clone(),
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                repetition_penalty: self.repetition_penalty,
                seed: self.seed,
                ..Default::default()
            },
            max_new_tokens: self.max_tokens,
            context: self.context,
            speculate: self.llm.draft_tokens(),
            ..Default::default()
        }
    }
}

pub fn run(args: ChatArgs) -> Result<()> {
    let model = args.llm.load()?;
    let mut chat = Chat::new(model.clone(), args.options())?;
    let stdout = std::io::stdout();
    if let Some(prompt) = &args.prompt {
        if args.json {
            let reply = chat.ask(prompt, |_| {})?;
            let out = json!({
                "prompt": prompt,
                "reply": reply,
                "decode_tokens_per_s": reply.decode_tokens_per_s(),
                "load_ms": edgevox::metrics::ms(model.load_time),
                "peak_rss_bytes": edgevox::metrics::peak_rss_bytes(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            let mut out = stdout.lock();
            chat.ask(prompt, |piece| {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            })?;
            writeln!(out)?;
        }
        return Ok(());
    }
    eprintln!("edgevox chat: type a question, an empty line or Ctrl-D to quit, /reset to forget");
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if line.trim() == "/reset" {
            chat.reset();
            continue;
        }
        let mut out = stdout.lock();
        let reply = chat.ask(&line, |piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        });
        writeln!(out)?;
        if let Err(e) = reply {
            eprintln!("edgevox: {e:#}");
        }
    }
    Ok(())
}
