//! A conversation with the model: the chat template, a bounded history, the system prompt's
//! KV cache computed once and reused, and replies streamed piece by piece.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use log::{debug, info};
use serde::Serialize;

use super::kv::KvCache;
use super::model::LlmModel;
use super::sampler::{Sampler, SamplingParams, Verdict};
use super::speculate::{self, Policy};
use super::text::Utf8Stream;
use std::collections::VecDeque;

/// The product's default system prompt. With a 135M model the prompt decides whether the
/// answer is a fact or a ramble: this one keeps replies to one short, factual sentence,
/// which is also what a voice assistant should say.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful voice assistant on smart glasses. Answer in one short, factual sentence.";

/// How a conversation behaves.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    pub system_prompt: String,
    pub sampling: SamplingParams,
    /// Most tokens one reply may have.
    pub max_new_tokens: usize,
    /// Tokens of context the conversation may use (at most the model's).
    pub context: usize,
    /// Tokens a prompt is fed in at a time (bounds the activations' memory).
    pub prefill_chunk: usize,
    /// Most tokens drafted by prompt lookup per step (0: plain decoding). Greedy: the reply is
    /// token for token the plain greedy one. Sampling: drafts are judged by the
    /// speculative-sampling rule ([`Sampler::judge`]), so the replies' distribution is the
    /// plain sampler's (the draws, and so a seed's reply, differ).
    pub speculate: usize,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            system_prompt: DEFAULT_SYSTEM_PROMPT.to_string(),
            sampling: SamplingParams::default(),
            max_new_tokens: 96,
            context: crate::config::defaults::CONTEXT,
            prefill_chunk: 128,
            speculate: DEFAULT_DRAFT,
        }
    }
}

/// Tokens drafted per step by default: a verify step over 1 + 4 positions reads every weight
/// once for all of them (the block kernels take up to 8 rows).
pub const DEFAULT_DRAFT: usize = 4;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfTurn,
    MaxTokens,
    ContextFull,
    /// The caller asked to stop (barge-in): the reply so far is kept in the history.
    Interrupted,
}

/// One reply with its timings.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    pub text: String,
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    /// Tokens fed before the first generated one (the turn, plus any re-fed history).
    pub prompt_tokens: usize,
    /// Turns dropped from the front of the history to make room.
    pub dropped_turns: usize,
    #[serde(serialize_with = "ser_ms")]
    pub prefill: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub time_to_first_token: Duration,
    #[serde(serialize_with = "ser_ms")]
    pub decode: Duration,
    /// Tokens drafted by prompt lookup and how many of them verification kept.
    pub drafted: usize,
    pub accepted: usize,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(crate::metrics::ms(*d))
}

impl Reply {
    /// Generated tokens per second after the first one.
    pub fn decode_tokens_per_s(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1);
        if n == 0 || self.decode.is_zero() {
            0.0
        } else {
            n as f64 / self.decode.as_secs_f64()
        }
    }
}

/// One finished exchange, as tokens ready to be re-fed if the cache is rebuilt.
#[derive(Debug, Clone)]
struct Turn {
    tokens: Vec<u32>,
}

pub struct Chat {
    model: Arc<LlmModel>,
    opts: ChatOptions,
    sampler: Sampler,
    system_tokens: Vec<u32>,
    /// Cache of the system prompt and the kept history (minus `pending`).
    cache: KvCache,
    history: Vec<Turn>,
    /// Tokens of the last turn not yet fed to the model (the end-of-turn wrapping).
    pending: Vec<u32>,
    /// All token ids the model has seen in this conversation, for the repetition penalty.
    recent: Vec<u32>,
    /// The assistant's end-of-turn wrapping, tokenized once.
    closing_tokens: Vec<u32>,
}

impl Chat {
    /// Starts a conversation: computes the system prompt's cache once.
    pub fn new(model: Arc<LlmModel>, opts: ChatOptions) -> Result<Chat> {
        opts.sampling.validate()?;
        ensure!(opts.max_new_tokens > 0, "max new tokens must be at least 1");
        ensure!(
            opts.prefill_chunk > 0,
            "prefill chunk must be at least 1 token"
        );
        ensure!(
            opts.context <= model.context_length(),
            "context {} is larger than the model's {}",
            opts.context,
            model.context_length()
        );
        let t = &model.meta.chat;
        let system_tokens = if opts.system_prompt.is_empty() {
            Vec::new()
        } else {
            model.encode(&t.system_text(&opts.system_prompt))?
        };
        ensure!(
            system_tokens.len() + opts.max_new_tokens + 8 < opts.context,
            "the system prompt ({} tokens) leaves no room in a context of {}",
            system_tokens.len(),
            opts.context
        );
        let mut cache = model.cache_for(opts.context)?;
        let start = Instant::now();
        if !system_tokens.is_empty() {
            prefill(&model, &mut cache, &system_tokens, opts.prefill_chunk)?;
        }
        info!(
            "system prompt: {} tokens cached in {:?}",
            system_tokens.len(),
            start.elapsed()
        );
        let closing_tokens = model.encode(&t.assistant.suffix)?;
        Ok(Chat {
            closing_tokens,
            sampler: Sampler::new(opts.sampling.clone()),
            cache,
            recent: system_tokens.clone(),
            system_tokens,
            model,
            opts,
            history: Vec::new(),
            pending: Vec::new(),
        })
    }

    pub fn model(&self) -> &Arc<LlmModel> {
        &self.model
    }

    pub fn options(&self) -> &ChatOptions {
        &self.opts
    }

    /// Tokens the conversation holds in the model's cache now.
    pub fn context_used(&self) -> usize {
        self.cache.len() + self.pending.len()
    }

    pub fn history_turns(&self) -> usize {
        self.history.len()
    }

    /// Rebuilds the cache from the system prompt's and the kept history (after an interrupted
    /// prompt left it half fed); the history itself is fed at the next turn.
    fn rebuild_from_history(&mut self) {
        self.restore_system_prompt();
        self.pending = self
            .history
            .iter()
            .flat_map(|h| h.tokens.iter().copied())
            .collect();
    }

    /// Feeds `next` and the `draft` after it in one step, keeps the longest prefix of the draft
    /// that the sampler's verdicts keep ([`Sampler::judge`]: under greedy decoding, where the
    /// greedy choice agrees), rolls the cache back past the rest and queues the kept drafts.
    /// Returns the logits after the last kept token, or, when a draft was rejected, the token
    /// said in its place (not fed).
    fn verify(
        &mut self,
        next: u32,
        draft: &[u32],
        policy: &mut Policy,
        queue: &mut VecDeque<u32>,
    ) -> Result<After> {
        let before = self.cache.len();
        let mut step = Vec::with_capacity(1 + draft.len());
        step.push(next);
        step.extend_from_slice(draft);
        let rows = self
            .model
            .forward_rows(&mut self.cache, &step, step.len())?;
        let vocab = self.model.meta.config.vocab;
        // Row i predicts the token after step[i]; the choice there sees the tokens before it.
        let mut recent = self.recent.clone();
        let mut kept = 0;
        let mut replaced = None;
        for (i, &d) in draft.iter().enumerate() {
            let mut row = rows[i * vocab..(i + 1) * vocab].to_vec();
            if let Verdict::Replace(t) = self.sampler.judge(&mut row, &recent, d) {
                replaced = Some(t);
                break;
            }
            recent.push(d);
            kept += 1;
        }
        policy.record(draft.len(), kept);
        self.cache.truncate(before + 1 + kept)?;
        queue.extend(&draft[..kept]);
        Ok(match replaced {
            Some(t) => After::Token(t),
            None => After::Logits(rows[kept * vocab..(kept + 1) * vocab].to_vec()),
        })
    }

    /// Back to the cache of the system prompt alone: the cache only ever appends, so its
    /// first positions are still the system prompt's and restoring it is a length reset.
    fn restore_system_prompt(&mut self) {
        self.cache
            .truncate(self.system_tokens.len())
            .expect("the cache always holds the system prompt");
    }

    /// Forgets the history; the system prompt's cache is kept.
    pub fn reset(&mut self) {
        self.restore_system_prompt();
        self.history.clear();
        self.pending.clear();
        self.recent = self.system_tokens.clone();
    }

    /// Asks `question` and streams the reply's text pieces to `on_piece` as they decode.
    pub fn ask(&mut self, question: &str, on_piece: impl FnMut(&str)) -> Result<Reply> {
        self.ask_until(question, on_piece, || false)
    }

    /// Like [`Chat::ask`], but stops as soon as `interrupted()` turns true: it is checked
    /// between prompt chunks and before every generated token, so a barge-in stops generation
    /// within one forward pass. What was generated stays in the history.
    pub fn ask_until(
        &mut self,
        question: &str,
        mut on_piece: impl FnMut(&str),
        interrupted: impl Fn() -> bool,
    ) -> Result<Reply> {
        let question = question.trim();
        if question.is_empty() {
            bail!("the prompt is empty: nothing to answer");
        }
        let turn = self
            .model
            .encode(&self.model.meta.chat.user_turn_text(question))?;
        let room = self.opts.context - self.system_tokens.len();
        if turn.len() + self.opts.max_new_tokens.min(16) > room {
            bail!(
                "the prompt is {} tokens; with the system prompt ({} tokens) and room for a \
                 reply it does not fit the context of {} tokens",
                turn.len(),
                self.system_tokens.len(),
                self.opts.context
            );
        }

        // When this turn and a full reply do not fit after the kept history, drop the oldest
        // turns and rebuild the cache from the system prompt's.
        let need = turn.len() + self.opts.max_new_tokens;
        let mut dropped = 0;
        let mut feed = std::mem::take(&mut self.pending);
        if self.cache.len() + feed.len() + need > self.opts.context {
            let kept = |h: &[Turn]| h.iter().map(|t| t.tokens.len()).sum::<usize>();
            while self.system_tokens.len() + kept(&self.history) + need > self.opts.context
                && !self.history.is_empty()
            {
                self.history.remove(0);
                dropped += 1;
            }
            self.restore_system_prompt();
            feed = self
                .history
                .iter()
                .flat_map(|h| h.tokens.iter().copied())
                .collect();
            info!(
                "context full: dropped {dropped} oldest turn(s), re-feeding {} tokens",
                feed.len()
            );
        }
        feed.extend_from_slice(&turn);

        let start = Instant::now();
        let fed = feed.len();
        let mut logits = Vec::new();
        let mut cut_short = false;
        for part in feed.chunks(self.opts.prefill_chunk) {
            if interrupted() {
                cut_short = true;
                break;
            }
            logits = match self.model.forward(&mut self.cache, part) {
                Ok(l) => l,
                Err(e) => {
                    self.rebuild_from_history();
                    return Err(e);
                }
            };
        }
        if cut_short {
            // The cache holds part of the prompt: go back to a consistent state (the history
            // without this turn) the next time round.
            self.rebuild_from_history();
            return Ok(Reply {
                text: String::new(),
                tokens: Vec::new(),
                stop: StopReason::Interrupted,
                prompt_tokens: 0,
                dropped_turns: dropped,
                prefill: start.elapsed(),
                time_to_first_token: Duration::ZERO,
                decode: Duration::ZERO,
                drafted: 0,
                accepted: 0,
            });
        }
        self.recent.extend_from_slice(&turn);
        let prefill_time = start.elapsed();

        let mut stream = Utf8Stream::default();
        let mut text = String::new();
        let mut tokens = Vec::new();
        let mut ttft = Duration::ZERO;
        let stop;
        let mut policy = Policy::new(self.opts.speculate);
        // Drafted tokens verification kept: already in the cache, emitted one per iteration;
        // then `chosen` (a rejected draft's replacement, not fed) if there is one, else a
        // token sampled from `logits`, which belong to the position after the last of them.
        let mut queue: VecDeque<u32> = VecDeque::new();
        let mut chosen: Option<u32> = None;
        let mut draft = Vec::new();
        loop {
            if interrupted() {
                // Kept drafts not yet emitted leave the cache: it holds what was said.
                let keep = self.cache.len() - queue.len();
                self.cache.truncate(keep)?;
                stop = StopReason::Interrupted;
                break;
            }
            let (next, fed) = match (queue.pop_front(), chosen.take()) {
                (Some(t), c) => {
                    chosen = c;
                    (t, true)
                }
                (None, Some(t)) => (t, false),
                (None, None) => (self.sampler.sample(&mut logits, &self.recent), false),
            };
            if tokens.is_empty() {
                ttft = start.elapsed();
            }
            // Drafts never hold a stop token, so a stop is always a sampled one.
            if self.model.is_stop(next) {
                stop = StopReason::EndOfTurn;
                break;
            }
            tokens.push(next);
            self.recent.push(next);
            let piece = stream.push(self.model.token_bytes(next));
            if !piece.is_empty() {
                on_piece(&piece);
                text.push_str(&piece);
            }
            if tokens.len() >= self.opts.max_new_tokens {
                // Drafts are cut so the last allowed token is a sampled one (not fed).
                debug_assert!(!fed);
                stop = StopReason::MaxTokens;
                break;
            }
            if fed {
                continue;
            }
            if self.cache.len() + 1 >= self.opts.context {
                stop = StopReason::ContextFull;
                break;
            }
            // Room for drafts: the reply's last token and the context's last position stay
            // sampled and unfed, as without speculation.
            let room = (self.opts.max_new_tokens - tokens.len() - 1)
                .min(self.opts.context - self.cache.len() - 2);
            let k = policy.budget().min(room);
            speculate::draft(&self.recent, k, &self.model.meta.stop_ids, &mut draft);
            let t = Instant::now();
            let step = if draft.is_empty() {
                self.model
                    .forward(&mut self.cache, &[next])
                    .map(After::Logits)
            } else {
                self.verify(next, &draft, &mut policy, &mut queue)
            };
            policy.record_time(1 + draft.len(), t.elapsed().as_secs_f64());
            match step {
                Ok(After::Logits(l)) => logits = l,
                Ok(After::Token(t)) => chosen = Some(t),
                Err(e) => {
                    self.rebuild_from_history();
                    return Err(e);
                }
            }
        }
        let tail = stream.finish();
        if !tail.is_empty() {
            on_piece(&tail);
            text.push_str(&tail);
        }
        let decode = start.elapsed() - ttft;

        // The last generated token (and the turn's closing) is not in the cache yet.
        let closing = &self.closing_tokens;
        let mut turn_tokens = turn;
        turn_tokens.extend_from_slice(&tokens);
        turn_tokens.extend_from_slice(closing);
        // On end of turn (or an interruption before sampling) every reply token was fed;
        // otherwise the loop stopped before feeding the last one.
        self.pending = match (stop, tokens.last()) {
            (StopReason::EndOfTurn | StopReason::Interrupted, _) | (_, None) => Vec::new(),
            (_, Some(&last)) => vec![last],
        };
        self.pending.extend_from_slice(closing);
        self.history.push(Turn {
            tokens: turn_tokens,
        });
        debug!(
            "turn done: {} tokens in context, {} turns",
            self.context_used(),
            self.history.len()
        );
        Ok(Reply {
            text: text.trim().to_string(),
            tokens,
            stop,
            prompt_tokens: fed,
            dropped_turns: dropped,
            drafted: policy.drafted,
            accepted: policy.accepted,
            prefill: prefill_time,
            time_to_first_token: ttft,
            decode,
        })
    }
}

/// What a decode step leaves for choosing the next token.
enum After {
    /// The logits of the position after the cache's last.
    Logits(Vec<f32>),
    /// Verification rejected a draft and chose this token in its place.
    Token(u32),
}

/// Feeds `tokens` in chunks of `chunk`; returns the logits after the last one.
pub fn prefill(
    model: &LlmModel,
    cache: &mut KvCache,
    tokens: &[u32],
    chunk: usize,
) -> Result<Vec<f32>> {
    ensure!(!tokens.is_empty(), "nothing to prefill");
    let mut logits = Vec::new();
    for part in tokens.chunks(chunk.max(1)) {
        logits = model.forward(cache, part)?;
    }
    Ok(logits)
}
