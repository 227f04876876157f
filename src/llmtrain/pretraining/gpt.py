"""The book's GPT: a decoder-only Transformer in one readable file.

The defaults are GPT-2's design (Radford et al., 2019): learned absolute positions, pre-norm
residual blocks with LayerNorm, a GELU MLP of width 4d, and an unembedding tied to the token
embedding. Three options turn it into the shape of most models since (LLaMA and after): rotary
position embeddings (RoPE), RMSNorm and a SwiGLU MLP. Part III trains it, and Part IV
fine-tunes the same class; there is no second model in the book.

Shapes use B for the batch, T for the sequence length, d = ``n_embd``, H = ``n_head`` and
d_h = d / H for the width of one head.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .._checks import check_int, check_real
from .sampling import _check_sampling, sample_next_token

__all__ = [
    "GPT",
    "GPTConfig",
    "KVCache",
    "RMSNorm",
    "causal_self_attention",
    "document_mask",
    "document_positions",
    "rope_rotate",
]

_CHOICES = {
    "position": ("learned", "rope"),
    "norm": ("layernorm", "rmsnorm"),
    "mlp": ("gelu", "swiglu"),
    "attention": ("sdpa", "explicit"),
}


@dataclass
class GPTConfig:
    """The shape of a :class:`GPT`.

    Parameters
    ----------
    vocab_size : int
        V, the number of token ids.
    block_size : int
        The longest sequence the model reads (its context length).
    n_layer, n_head, n_embd : int
        Depth L, number of attention heads H and width d (d must be divisible by H).
    dropout : float
        Dropout probability in [0, 1) on attention weights and residual branches.
    bias : bool
        Whether linear layers and LayerNorms have biases (GPT-2: yes; most models since: no).
    position : {"learned", "rope"}
        Learned absolute position embeddings (GPT-2) or rotary embeddings (Su et al., 2021).
    norm : {"layernorm", "rmsnorm"}
        The normalisation in front of each sub-layer and before the unembedding.
    mlp : {"gelu", "swiglu"}
        A GELU MLP of width 4d, or a SwiGLU MLP (Shazeer, 2020) whose hidden width,
        2/3 · 4d rounded up to a multiple of 8, keeps its parameter count close to the GELU's.
    tie_embeddings : bool
        Use the token embedding as the unembedding matrix (GPT-2 does).
    attention : {"sdpa", "explicit"}
        Compute attention with ``torch.nn.functional.scaled_dot_product_attention`` or written
        out as softmax(QKᵀ/√d_h + mask) V; the two give the same numbers.
    init_std : float
        Standard deviation σ of the normal initialisation of every weight matrix (GPT-2: 0.02);
        residual output projections use σ / √(2L).
    rope_base : float
        The base b of RoPE's frequencies θ_i = b^(-2i/d_h).
    checkpoint_activations : bool
        Activation checkpointing: in training, keep only each block's input for the backward
        pass and recompute the block's activations from it there (``torch.utils.checkpoint``);
        the same numbers for less memory and about one more forward pass.
    """

    vocab_size: int
    block_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False
    position: str = "learned"
    norm: str = "layernorm"
    mlp: str = "gelu"
    tie_embeddings: bool = True
    attention: str = "sdpa"
    init_std: float = 0.02
    rope_base: float = 10000.0
    checkpoint_activations: bool = False

    def __post_init__(self):
        check_int("vocab_size", self.vocab_size, 1)
        check_int("block_size", self.block_size, 1)
        check_int("n_layer", self.n_layer, 1)
        check_int("n_head", self.n_head, 1)
        check_int("n_embd", self.n_embd, 1)
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, "
                f"n_head={self.n_head}"
            )
        check_real("dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_real("init_std", self.init_std, 0.0, low_open=True)
        check_real("rope_base", self.rope_base, 1.0, low_open=True)
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.position == "rope" and self.head_size % 2:
            raise ValueError(f"RoPE needs an even head size n_embd/n_head, got {self.head_size}")
        if not isinstance(self.checkpoint_activations, bool):
            raise TypeError(
                f"checkpoint_activations must be a bool, got {self.checkpoint_activations!r}"
            )

    @property
    def head_size(self) -> int:
        """d_h = d / H, the width of one attention head."""
        return self.n_embd // self.n_head

    @property
    def mlp_hidden(self) -> int:
        """The hidden width of the MLP: 4d for GELU, 2/3 · 4d rounded up to 8 for SwiGLU."""
        if self.mlp == "gelu":
            return 4 * self.n_embd
        return 8 * math.ceil(2 * 4 * self.n_embd / 3 / 8)

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    """x / RMS(x) · γ, with RMS(x) = √(mean(x²) + ε) (Zhang and Sennrich, 2019): LayerNorm
    without the mean subtraction and without a bias."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


def rope_angles(block_size: int, head_size: int, base: float = 10000.0) -> torch.Tensor:
    """The angles m θ_i of RoPE, shape (block_size, head_size / 2): position m = 0, 1, ...
    times the frequencies θ_i = base^(-2i/d_h), i = 0 .. d_h/2 - 1."""
    θ = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    return torch.outer(torch.arange(block_size, dtype=torch.float32), θ)


def rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_{2i}, x_{2i+1}) of the last dimension by the angle m θ_i of its
    position m, as in the RoFormer paper; ``cos`` and ``sin`` have shape (T, d_h / 2) (or
    one such matrix per row, broadcasting against ``x``) and hold the cosines and sines of the
    angles of the T positions of ``x`` (shape (..., T, d_h)).

    Implements :prf:ref:`alg-rope`.
    """
    x1, x2 = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.flatten(-2)


class KVCache:
    """The keys and values of the tokens seen so far, one pair of tensors per layer.

    Implements :prf:ref:`alg-kv-cache-generate` (with :meth:`GPT.generate`).

    Generating token t+1 needs the keys and values of tokens 1..t at every layer; keeping them
    turns each new token's cost from a pass over the whole prefix into a pass over one token.
    """

    def __init__(self, config: GPTConfig, batch_size: int, device=None, dtype=None):
        shape = (batch_size, config.n_head, config.block_size, config.head_size)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.length = 0  # number of positions filled

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store the new keys and values of ``layer``; return all keys and values so far."""
        start, end = self.length, self.length + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


def causal_self_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    start: int = 0,
    dropout_p: float = 0.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(Q Kᵀ / √d_h + M) V, written out, with the causal mask M (0 where a query may
    see a key, -inf elsewhere).

    Implements :prf:ref:`alg-causal-self-attention`.

    ``q`` has shape (..., T, d_h), ``k`` and ``v`` (..., S, d_h) with S = start + T: the T
    queries are the last T of S positions (``start`` > 0 when earlier keys come from a
    :class:`KVCache`), and query i, at position start + i, sees keys 0 .. start + i.
    ``dropout_p`` drops attention weights (training only). ``mask``, if given, replaces the
    causal mask: a boolean tensor that broadcasts to (..., T, S), True where a query may see
    a key (a document mask, :func:`document_mask`).
    """
    T, S = q.shape[-2], k.shape[-2]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    allowed = _causal(T, S, start, q.device) if mask is None else mask
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = F.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return weights @ v


def _causal(T: int, S: int, start: int, device) -> torch.Tensor:
    """True where query i (position start + i) may attend to key j."""
    i = torch.arange(T, device=device)[:, None] + start
    return torch.arange(S, device=device)[None, :] <= i


def document_positions(documents: torch.Tensor) -> torch.Tensor:
    """The position of each token within its own document, for rows of several documents
    packed one after the other: ``documents`` (B, T) holds each token's document id, equal
    ids forming contiguous runs; a run's first token has position 0."""
    T = documents.shape[-1]
    index = torch.arange(T, device=documents.device).expand_as(documents)
    starts = torch.ones_like(documents, dtype=torch.bool)
    starts[..., 1:] = documents[..., 1:] != documents[..., :-1]
    # The start of the run each token is in: the last index <= its own that starts a run.
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=-1).values
    return index - first


def document_mask(documents: torch.Tensor) -> torch.Tensor:
    """The attention mask of packed rows, shape (B, 1, T, T): query i may see key j if j <= i
    and both belong to the same document, so no document sees another."""
    T = documents.shape[-1]
    same = documents[:, :, None] == documents[:, None, :]
    return (same & _causal(T, T, 0, documents.device))[:, None]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: Q, K and V from one linear map, H heads of width d_h
    attending in parallel, their outputs concatenated and projected back to width d."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        # Queries, keys and values of all heads in one matrix multiplication.
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope=None, cache: KVCache | None = None, layer: int = 0, mask=None):
        B, T, d = x.shape
        H, d_h = self.config.n_head, self.config.head_size
        q, k, v = self.c_attn(x).split(d, dim=2)
        # (B, T, d) -> (B, H, T, d_h): each head attends on its own slice of the width.
        q, k, v = (t.view(B, T, H, d_h).transpose(1, 2) for t in (q, k, v))
        if rope is not None:
            q, k = rope_rotate(q, *rope), rope_rotate(k, *rope)
        start = 0
        if cache is not None:
            start = cache.length
            k, v = cache.append(layer, k, v)
        # Query i sits at position start + i and may see keys 0 .. start + i.
        p = self.config.dropout if self.training else 0.0
        if self.config.attention == "explicit":
            y = causal_self_attention(q, k, v, start=start, dropout_p=p, mask=mask)
        elif mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        else:
            y = self._sdpa(q, k, v, start, p)
        y = y.transpose(1, 2).contiguous().view(B, T, d)
        return self.resid_dropout(self.c_proj(y))

    def _sdpa(self, q, k, v, start, p):
        T, S = q.shape[2], k.shape[2]
        if start == 0:  # the usual square causal mask
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        # A cached step: the queries are the last T positions. SDPA's is_causal aligns the
        # mask to the top left, which is wrong here, so pass the mask itself.
        mask = None if T == 1 else _causal(T, S, start, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        hidden = config.mlp_hidden
        # SwiGLU has two input matrices, a gate and a value, multiplied elementwise.
        self.c_fc = nn.Linear(config.n_embd, (2 if self.swiglu else 1) * hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        h = self.c_fc(x)
        if self.swiglu:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        else:
            # GPT-2 used the tanh approximation of GELU.
            h = F.gelu(h, approximate="tanh")
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """A pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).

    Normalising the input of each branch, not the sum, leaves an identity path from the
    embedding to the output, which is what lets deep stacks train without warmup tricks
    (Xiong et al., 2020).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = _norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = _norm(config)
        self.mlp = MLP(config)

    def forward(self, x, rope=None, cache=None, layer=0, mask=None):
        x = x + self.attn(self.ln_1(x), rope, cache, layer, mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A decoder-only Transformer language model.

    Implements :prf:ref:`alg-gpt-forward` in ``forward``.
    Implements :prf:ref:`alg-kv-cache-generate` in :meth:`generate`, with :class:`KVCache`.

    ``model(idx, targets=None)`` returns ``(logits, loss)``: logits of shape (B, T, V) for
    token ids ``idx`` of shape (B, T), and the mean cross-entropy over all positions when
    ``targets`` (same shape, -100 for positions to ignore) is given, else None.
    ``model(idx, cache=cache)`` reads ``idx`` as the continuation of the tokens whose keys and
    values ``cache`` holds, and appends its own.
    ``model(idx, targets, documents)`` reads rows that pack several documents (``documents``,
    shape (B, T), holds each token's document id, each document a contiguous run): a token
    sees only the earlier tokens of its own document, and positions restart at 0 in each
    document, so every document is read exactly as if it were a sequence of its own.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=_norm(config),
            )
        )
        if config.position == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        else:
            angles = rope_angles(config.block_size, config.head_size, config.rope_base)
            self.register_buffer("rope_cos", angles.cos(), persistent=False)
            self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the init of the projections that write into the residual stream by
        # 1/√(2L), since each of the 2L residual branches adds to its variance.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, config.init_std / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, 0.0, self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, *, non_embedding: bool = False) -> int:
        """The number of parameters (a tied matrix counted once); with ``non_embedding``,
        without the token and position embeddings, as Kaplan et al. (2020) count N."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    def forward(self, idx, targets=None, documents=None, *, cache: KVCache | None = None):
        T = idx.shape[1]
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence length must be at most block_size={self.config.block_size}, "
                f"got {start + T}"
            )
        mask = None
        positions = torch.arange(start, start + T, device=idx.device)
        if documents is not None:
            if documents.shape != idx.shape or cache is not None:
                raise ValueError(
                    f"documents must have the shape of idx, {tuple(idx.shape)}, and cannot be "
                    f"used with a cache; got {tuple(documents.shape)}"
                )
            mask = document_mask(documents)
            positions = document_positions(documents)
        x = self.transformer.wte(idx)
        rope = None
        if self.config.position == "learned":
            x = x + self.transformer.wpe(positions)
        else:
            rope = (self.rope_cos[positions], self.rope_sin[positions])
            if documents is not None:  # one set of angles per row: (B, 1, T, d_h/2)
                rope = (rope[0][:, None], rope[1][:, None])
        x = self.transformer.drop(x)
        # Checkpointing only pays when a backward pass follows (training, no KV cache).
        recompute = self.config.checkpoint_activations and self.training and cache is None
        recompute = recompute and torch.is_grad_enabled()
        for layer, block in enumerate(self.transformer.h):
            if recompute:  # saves x alone; the backward pass reruns the block (and its dropout)
                x = checkpoint(block, x, rope, None, layer, mask, use_reentrant=False)
            else:
                x = block(x, rope, cache, layer, mask)
        if cache is not None:
            cache.length += T
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            # In at least float32, also when the model runs in half precision.
            z = logits.view(-1, logits.size(-1))
            z = z.to(torch.promote_types(z.dtype, torch.float32))
            loss = F.cross_entropy(z, targets.reshape(-1), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to each prompt in ``idx`` (shape (B, T)).

        Implements :prf:ref:`alg-kv-cache-generate`.

        The prompt is read in one pass that fills a :class:`KVCache`; after that each step
        feeds only the newest token. Each token is drawn by
        :func:`~llmtrain.pretraining.sample_next_token` with ``temperature`` (0 is greedy),
        ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty`` (on every token of the
        sequence so far, the prompt included) and ``generator``. Once the sequence is longer than
        ``block_size``, the model can only read its last ``block_size`` tokens, and their
        positions shift by one at every step, so the cached keys (which carry their
        positions) go stale: from then on each step recomputes the last ``block_size``
        tokens without a cache. The result is therefore exactly what recomputing
        ``model(idx[:, -block_size:])`` at every step gives, at any length.

        Runs without gradients and in eval mode (no dropout), and restores the training flag.
        Returns a tensor of shape (B, T + max_new_tokens).
        """
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long or idx.ndim != 2:
            raise TypeError(
                f"idx must be a (B, T) tensor of token ids (torch.long), got {idx!r:.80}"
            )
        B, T = idx.shape
        T_ctx = self.config.block_size
        if B < 1 or T < 1:
            raise ValueError(
                f"idx must hold at least one prompt of at least one token, got {B}x{T}"
            )
        if T > T_ctx:
            raise ValueError(
                f"the prompt (idx) has {T} tokens, more than block_size={T_ctx}; "
                f"crop it to the last {T_ctx} tokens"
            )
        max_new_tokens = check_int("max_new_tokens", max_new_tokens, 0)
        _check_sampling(temperature, top_k, top_p, min_p, repetition_penalty)
        was_training = self.training
        self.eval()
        try:
            dtype = next(self.parameters()).dtype
            cache = KVCache(self.config, B, device=idx.device, dtype=dtype)
            logits, _ = self(idx, cache=cache)  # prefill: the whole prompt in one pass
            for step in range(max_new_tokens):
                z = logits[:, -1, :]
                token = sample_next_token(
                    z,
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                    min_p=min_p,
                    repetition_penalty=repetition_penalty,
                    context=idx,
                    generator=generator,
                )
                idx = torch.cat((idx, token[:, None]), dim=1)
                if step == max_new_tokens - 1:
                    break
                if cache.length < T_ctx:
                    logits, _ = self(idx[:, -1:], cache=cache)
                else:  # the window slides: recompute the last block_size tokens
                    logits, _ = self(idx[:, -T_ctx:])
        finally:
            self.train(was_training)
        return idx

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Two optimizer groups of the trainable parameters (frozen ones are left out): weight
        decay on the weight matrices of linear layers, none on embeddings, norms and biases.

        Decay pulls a matrix towards zero, which limits the size of the function it computes;
        it has no such meaning for a gain, a bias or a lookup table, whose rows are updated
        only when their token occurs.
        """
        check_real("weight_decay", weight_decay, 0.0)
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        decay, no_decay = [], []
        for p in self.parameters():  # a tied matrix appears once
            if not p.requires_grad:  # frozen (fine-tuning an adapter): no optimizer state
                continue
            is_matrix = p.dim() >= 2 and id(p) not in embeddings
            (decay if is_matrix else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
