"""MotionGPT: a causal transformer that writes the keyframe tokens of a motion from text.

The sequence is [cond] + tokens, where the cond token is a projection of the text embedding
plus an embedding of the number K of keyframe tokens wanted, so sampling knows the length in
advance and draws exactly K codebook tokens (END and PAD are never sampled). Sampling supports
temperature, top-k, top-p, classifier-free guidance with conditional and unconditional rows in
one batch, a KV cache (one position per new token) and pinned tokens for keyframe infilling.

Decoding one token at a time reads every weight once per token, so at batch 1 sampling is bound
by memory bandwidth, not FLOPs. `weight_dtype` "int8" (cfg.gpt_weight_dtype) samples from a
cached weight-only int8 copy of the linear layers (one scale per output channel; 4x fewer bytes
per token) and "bfloat16" from a bf16 copy; training and `forward` always use the float32 weights.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import CompositeConfig
from utils import num_keyframes

MAX_FRAMES = 512  # longest motion (frames) the length and position tables are sized for
WEIGHT_DTYPES = ("float32", "bfloat16", "int8")
INT8_WIDTH_MULTIPLE = 16  # torch._weight_int8pack_mm needs input widths that are a multiple of 16


@dataclass(frozen=True)
class TokenSampling:
    """How `MotionGPT.sample` picks each token.

    temperature: softmax temperature; 0 picks the most likely token.
    top_k: keep only the k most likely tokens (0: all).
    top_p: keep the smallest set of tokens whose probability reaches top_p (1.0: all).
    guidance_scale: classifier-free guidance s, logits = u + s * (c - u); 1.0 runs no
        unconditional rows.
    """
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    guidance_scale: float = 1.0


def pack_linear_weight(weight: torch.Tensor, dtype: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An inference copy of a linear weight (N, K): (bf16 weight, None) for "bfloat16", or
    (int8 weight, bf16 per-output-channel scales (N,)) for "int8" (symmetric, max |w| -> 127)."""
    weight = weight.detach()
    if dtype == "bfloat16":
        return weight.to(torch.bfloat16).contiguous(), None
    scales = (weight.abs().amax(dim=1).float() / 127.0).clamp_min(1e-12)  # (N,)
    scales = scales.to(torch.bfloat16).float()  # the kernel applies the bf16-rounded scale
    q = torch.round(weight.float() / scales[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()
    return q, scales.to(torch.bfloat16)


def packed_linear(x: torch.Tensor, packed: tuple[torch.Tensor, torch.Tensor | None],
                  bias: torch.Tensor | None) -> torch.Tensor:
    """y = x W^T + b from a `pack_linear_weight` copy: x (..., K) float32 -> (..., N) float32.
    The matmul takes bf16 inputs; the bias is added in float32."""
    weight, scales = packed
    flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
    if scales is None:
        y = flat @ weight.t()
    elif flat.device.type == "cpu" and flat.shape[1] % INT8_WIDTH_MULTIPLE == 0:
        y = torch._weight_int8pack_mm(flat, weight, scales)
    else:  # other devices and widths: dequantise
        y = flat @ (weight.to(torch.bfloat16) * scales[:, None]).t()
    y = y.to(x.dtype) if bias is None else torch.add(bias, y)  # bf16 + float32 bias -> float32
    return y.reshape(*x.shape[:-1], weight.shape[0])


def _version(tensor: torch.Tensor) -> int | None:
    """The in-place version counter of a tensor (None for inference tensors, which have none)."""
    try:
        return tensor._version
    except RuntimeError:
        return None


@contextmanager
def low_precision_linears(model: nn.Module, weight_dtype: str):
    """While inside, every nn.Linear of `model` computes from a cached inference copy of its
    weight: "int8" (weight-only int8, one scale per output channel, bf16 inputs; 4x fewer bytes
    than float32) or "bfloat16"; "float32" changes nothing. Outputs stay float32. The copies live
    in `model._packed`; each call uses the copy of the weight the module holds at that moment, so
    a changed weight (load_state_dict and optimiser steps bump its version) or weights swapped in
    by torch.func.functional_call get their own copy. For inference only: no gradients flow."""
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight_dtype must be one of {WEIGHT_DTYPES}, got {weight_dtype!r}")
    if weight_dtype == "float32":
        yield
        return
    cache = vars(model).setdefault("_packed", {})  # linear name -> (weight identity, packed copy)

    def forward(x: torch.Tensor, name: str, linear: nn.Linear) -> torch.Tensor:
        weight = linear.weight
        key = (weight_dtype, weight.data_ptr(), _version(weight), weight.device)
        if name not in cache or cache[name][0] != key:
            with torch.no_grad():
                cache[name] = (key, pack_linear_weight(weight, weight_dtype))
        return packed_linear(x, cache[name][1], linear.bias)

    patched = [module for module in model.modules() if isinstance(module, nn.Linear)]
    try:
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                module.forward = partial(forward, name=name, linear=module)
        yield
    finally:
        for module in patched:
            vars(module).pop("forward", None)


@contextmanager
def torch_threads(num_threads: int):
    """While inside, torch uses num_threads intra-op threads (0: leave the setting as it is)."""
    previous = torch.get_num_threads()
    if num_threads <= 0 or num_threads == previous:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with an optional preallocated KV cache."""

    def __init__(self, cfg: CompositeConfig):
        super().__init__()
        self.n_head = cfg.gpt_n_head
        self.n_embd = cfg.gpt_n_embd
        self.qkv = nn.Linear(cfg.gpt_n_embd, 3 * cfg.gpt_n_embd)
        self.proj = nn.Linear(cfg.gpt_n_embd, cfg.gpt_n_embd)
        self.resid_drop = nn.Dropout(cfg.gpt_dropout)

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                pos: int = 0) -> torch.Tensor:
        """x (B, S, E) at sequence positions pos..pos+S-1 -> (B, S, E).

        cache: (keys, values), each (B, H, L_max, E/H); this call writes its keys/values at
        pos..pos+S-1 and attends to positions 0..pos+S-1. A call with S > 1 must start at pos 0.
        """
        B, S, E = x.shape
        head_dim = E // self.n_head
        q, k, v = self.qkv(x).split(E, dim=2)
        q = q.view(B, S, self.n_head, head_dim).transpose(1, 2)  # (B, H, S, hd)
        k = k.view(B, S, self.n_head, head_dim).transpose(1, 2)
        v = v.view(B, S, self.n_head, head_dim).transpose(1, 2)
        if cache is not None:
            k_cache, v_cache = cache
            k_cache[:, :, pos:pos + S] = k
            v_cache[:, :, pos:pos + S] = v
            k, v = k_cache[:, :, :pos + S], v_cache[:, :, :pos + S]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=S > 1)
        y = y.transpose(1, 2).reshape(B, S, E)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: CompositeConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(cfg.gpt_n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_mlp = nn.LayerNorm(cfg.gpt_n_embd)
        self.mlp = nn.Sequential(nn.Linear(cfg.gpt_n_embd, 4 * cfg.gpt_n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.gpt_n_embd, cfg.gpt_n_embd), nn.Dropout(cfg.gpt_dropout))

    def forward(self, x: torch.Tensor, cache=None, pos: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x), cache, pos)
        return x + self.mlp(self.ln_mlp(x))


class MotionGPT(nn.Module):
    """Text- and length-conditioned causal transformer over keyframe tokens.

    Vocabulary: codebook tokens 0..N-1, END = N, PAD = N+1 (N = cfg.vq_codebook_size).
    """

    def __init__(self, cfg: CompositeConfig, text_dim: int):
        super().__init__()
        self.codebook_size = cfg.vq_codebook_size
        self.end_id = cfg.vq_codebook_size
        self.pad_id = cfg.vq_codebook_size + 1
        self.vocab_size = cfg.vq_codebook_size + 2
        self.text_dim = text_dim
        self.keyframe_interval = cfg.keyframe_interval  # frames between keyframe tokens
        self.token_corruption = cfg.gpt_token_corruption
        self.cond_drop = cfg.gpt_cond_drop
        self.weight_dtype = cfg.gpt_weight_dtype  # weights `sample` decodes with (see low_precision)
        self.decode_threads = cfg.gpt_decode_threads  # torch threads while sampling (0: unchanged)
        self.max_tokens = num_keyframes(max(MAX_FRAMES, cfg.max_motion_length), cfg.keyframe_interval)
        E = cfg.gpt_n_embd
        self.tok_emb = nn.Embedding(self.vocab_size, E)
        self.pos_emb = nn.Embedding(self.max_tokens + 2, E)
        self.len_emb = nn.Embedding(self.max_tokens + 1, E)
        self.text_proj = nn.Linear(text_dim, E)
        self.null_text = nn.Parameter(torch.randn(E) * 0.02)  # replaces dropped text (CFG)
        self.drop = nn.Dropout(cfg.gpt_dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.gpt_n_layer))
        self.ln_f = nn.LayerNorm(E)
        self.head = nn.Linear(E, self.vocab_size, bias=False)
        self.apply(self._init_weights)
        for name, param in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * cfg.gpt_n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------------------------
    def _check(self, text_emb: torch.Tensor, num_tokens: torch.Tensor) -> None:
        if text_emb.dim() != 2 or text_emb.shape[1] != self.text_dim:
            raise ValueError(f"text_emb must be (B, {self.text_dim}), got {tuple(text_emb.shape)}")
        if num_tokens.shape != (text_emb.shape[0],):
            raise ValueError(f"num_tokens must be (B,) = ({text_emb.shape[0]},), got {tuple(num_tokens.shape)}")
        if int(num_tokens.min()) < 1 or int(num_tokens.max()) > self.max_tokens:
            raise ValueError(f"num_tokens must lie in [1, {self.max_tokens}] (motions up to "
                             f"{MAX_FRAMES} frames), got {num_tokens.tolist()}")

    def _cond_token(self, text_emb: torch.Tensor, num_tokens: torch.Tensor,
                    drop_text: torch.Tensor | None) -> torch.Tensor:
        """(B, Dt), (B,) long, (B,) bool or None -> cond token (B, 1, E)."""
        text = self.text_proj(text_emb)  # (B, E)
        if drop_text is not None:
            text = torch.where(drop_text[:, None], self.null_text.to(text.dtype), text)
        return (text + self.len_emb(num_tokens))[:, None]

    def _backbone(self, x: torch.Tensor, pos: int, caches=None) -> torch.Tensor:
        """Embedded inputs x (B, S, E) at positions pos.. -> final hidden states (B, S, E)."""
        x = self.drop(x + self.pos_emb.weight[pos:pos + x.shape[1]])
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i], pos)
        return self.ln_f(x)

    def forward(self, text_emb: torch.Tensor, tokens: torch.Tensor, num_tokens: torch.Tensor,
                targets: torch.Tensor | None = None,
                generator: list[torch.Generator] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits.

        text_emb: (B, Dt) text embeddings; tokens: (B, N) long, each row its K codes then PAD;
        num_tokens: (B,) long, K per row; targets: (B, N+1) long (codes, END, then -100) or None.
        Returns logits (B, N+1, V), where logits[:, i] predicts token i, and the mean
        cross-entropy over targets != -100 (None without targets). In training mode the text is
        replaced by the null embedding with probability gpt_cond_drop and a fraction
        gpt_token_corruption of the input codes is replaced by random codes; with `generator`, a
        list of B generators, row b draws these from generator b alone (max_tokens wide, whatever N),
        so a row's draws do not depend on the rest of the batch.
        """
        self._check(text_emb, num_tokens)
        B, N = tokens.shape
        if N > self.max_tokens:
            raise ValueError(f"token sequences must be at most {self.max_tokens} long, got {N}")
        drop_text = None
        if self.training and generator is not None:
            drop_text, tokens = self._row_draws(tokens, generator)
        elif self.training:
            drop_text = torch.rand(B, device=text_emb.device) < self.cond_drop
            if self.token_corruption > 0:
                corrupt = (torch.rand(tokens.shape, device=tokens.device) < self.token_corruption) & (
                    tokens < self.codebook_size)
                random_codes = torch.randint_like(tokens, self.codebook_size)
                tokens = torch.where(corrupt, random_codes, tokens)
        cond = self._cond_token(text_emb, num_tokens, drop_text)  # (B, 1, E)
        x = torch.cat([cond, self.tok_emb(tokens)], dim=1)  # (B, N+1, E)
        logits = self.head(self._backbone(x, 0))  # (B, N+1, V)
        loss = None
        if targets is not None:
            if targets.shape != (B, N + 1):
                raise ValueError(f"targets must be (B, N+1) = ({B}, {N + 1}), got {tuple(targets.shape)}")
            loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1),
                                   ignore_index=-100)
        return logits, loss

    def _row_draws(self, tokens: torch.Tensor, generators: list[torch.Generator]):
        """Training draws per row from its own generator -> (drop_text (B,) bool, corrupted tokens)."""
        if len(generators) != tokens.shape[0]:
            raise ValueError(f"got {len(generators)} generators for a batch of {tokens.shape[0]}")
        N, width = tokens.shape[1], self.max_tokens
        draws = [(torch.rand(1 + width, generator=g, device=g.device),
                  torch.randint(self.codebook_size, (width,), generator=g, device=g.device)) for g in generators]
        uniform = torch.stack([u for u, _ in draws]).to(tokens.device)  # (B, 1 + max_tokens)
        random_codes = torch.stack([c for _, c in draws]).to(tokens.device)[:, :N]
        corrupt = (uniform[:, 1:N + 1] < self.token_corruption) & (tokens < self.codebook_size)
        return uniform[:, 0] < self.cond_drop, torch.where(corrupt, random_codes, tokens)

    # ------------------------------------------------------------------------------------
    def low_precision(self, weight_dtype: str):
        """Context in which the linear layers use `weight_dtype` weights (see low_precision_linears)."""
        return low_precision_linears(self, weight_dtype)

    def _pick(self, logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
              generator) -> torch.Tensor:
        """Draw one codebook token per row from logits (B, V) -> (B,) long (Gumbel-max)."""
        logits = logits[:, :self.codebook_size].float()  # END and PAD are never sampled
        if temperature == 0:
            return logits.argmax(dim=-1)
        logits = logits / temperature
        if 0 < top_k < self.codebook_size:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
            probs = torch.softmax(sorted_logits, dim=-1)
            drop_sorted = probs.cumsum(dim=-1) - probs > top_p  # keeps at least the top token
            logits = logits.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
        if generator is None or isinstance(generator, torch.Generator):
            device = generator.device if generator is not None else logits.device
            uniform = torch.rand(logits.shape, generator=generator, device=device).to(logits.device)
        else:  # one generator per row: a row's draws do not depend on the rest of the batch
            uniform = torch.stack([torch.rand(logits.shape[1], generator=gen, device=gen.device)
                                   for gen in generator]).to(logits.device)
        gumbel = -torch.log(-torch.log(uniform.clamp_(1e-20, 1.0)))
        return (logits + gumbel).argmax(dim=-1)

    @torch.inference_mode()
    def sample(self, text_emb: torch.Tensor, num_tokens: torch.Tensor, policy: TokenSampling = TokenSampling(),
               generator=None, pinned_tokens: torch.Tensor | None = None,
               use_kv_cache: bool = True, weight_dtype: str | None = None) -> torch.Tensor:
        """Sample exactly num_tokens[b] codebook tokens for every row.

        text_emb: (B, Dt) text embeddings.
        num_tokens: (B,) long, the number K of keyframe tokens wanted per row (1..max_tokens).
        policy: TokenSampling (temperature, top_k, top_p, guidance_scale).
        generator: torch.Generator for reproducible draws (on the device of its tensors), or a
            list of B generators, one per row, so that a batch reproduces its rows sampled alone.
        pinned_tokens: (B, max K) long or None; entries >= 0 are forced into the sequence at
            their position, -1 entries are sampled, so free tokens complete pinned ones.
        use_kv_cache: True: one position per new token; False: re-run the whole prefix each
            step (same tokens, slower; kept as the reference).
        weight_dtype: "float32", "bfloat16" or "int8" weights for the linear layers (see
            low_precision); None: self.weight_dtype (cfg.gpt_weight_dtype).
        Returns tokens (B, max K) long; row b holds its num_tokens[b] codes, then PAD.
        """
        self._check(text_emb, num_tokens)
        if policy.temperature < 0 or policy.top_k < 0 or not 0.0 < policy.top_p <= 1.0:
            raise ValueError("sampling needs temperature >= 0, top_k >= 0 and top_p in (0, 1]")
        was_training = self.training
        self.eval()
        try:
            with self.low_precision(weight_dtype or self.weight_dtype), torch_threads(self.decode_threads):
                return self._sample(text_emb, num_tokens, policy, generator, pinned_tokens, use_kv_cache)
        finally:
            self.train(was_training)

    def _sample(self, text_emb, num_tokens, policy: TokenSampling, generator, pinned_tokens,
                use_kv_cache) -> torch.Tensor:
        temperature, top_k, top_p, guidance_scale = (policy.temperature, policy.top_k, policy.top_p,
                                                     policy.guidance_scale)
        B = text_emb.shape[0]
        device = text_emb.device
        max_k = int(num_tokens.max())
        positions = torch.arange(max_k, device=device)
        beyond = positions[None] >= num_tokens[:, None]  # (B, max K) past each row's length
        if pinned_tokens is None:
            pinned_tokens = torch.full((B, max_k), -1, dtype=torch.long, device=device)
        if pinned_tokens.shape != (B, max_k):
            raise ValueError(f"pinned_tokens must be (B, max K) = ({B}, {max_k}), got "
                             f"{tuple(pinned_tokens.shape)}")
        if int(pinned_tokens.min()) < -1 or int(pinned_tokens.max()) >= self.codebook_size:
            raise ValueError(f"pinned_tokens must be -1 (free) or a code in [0, {self.codebook_size})")
        fixed = (pinned_tokens >= 0) | beyond  # (B, max K) tokens that are not sampled
        tokens = torch.where(beyond, torch.full_like(pinned_tokens, self.pad_id), pinned_tokens)

        use_cfg = guidance_scale != 1.0
        cond = self._cond_token(text_emb, num_tokens, None)  # (B, 1, E)
        if use_cfg:
            uncond = self._cond_token(text_emb, num_tokens, torch.ones(B, dtype=torch.bool, device=device))
            cond = torch.cat([cond, uncond], dim=0)  # (2B, 1, E)
        rows = cond.shape[0]

        # every row's leading fixed tokens are fed in one pass
        free_any = (~fixed).any(dim=0)  # (max K,)
        start = int(free_any.float().argmax()) if bool(free_any.any()) else max_k
        if start == max_k:
            return tokens

        caches = None
        if use_kv_cache:
            head_dim = self.blocks[0].attn.n_embd // self.blocks[0].attn.n_head
            shape = (rows, self.blocks[0].attn.n_head, max_k + 1, head_dim)
            caches = [(cond.new_empty(shape), cond.new_empty(shape)) for _ in self.blocks]

        def repeat_rows(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t, t], dim=0) if use_cfg else t

        for j in range(start, max_k):
            if use_kv_cache and j > start:
                x = self.tok_emb(repeat_rows(tokens[:, j - 1:j]))  # (rows, 1, E)
                hidden = self._backbone(x, j, caches)[:, -1]
            else:
                x = torch.cat([cond, self.tok_emb(repeat_rows(tokens[:, :j]))], dim=1)  # (rows, j+1, E)
                hidden = self._backbone(x, 0, caches)[:, -1]
            logits = self.head(hidden)  # (rows, V)
            if use_cfg:
                logits_cond, logits_uncond = logits[:B], logits[B:]
                logits = logits_uncond + guidance_scale * (logits_cond - logits_uncond)
            drawn = self._pick(logits, temperature, top_k, top_p, generator)  # (B,)
            tokens[:, j] = torch.where(fixed[:, j], tokens[:, j], drawn)
        return tokens
