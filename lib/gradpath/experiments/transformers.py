"""Attention and transformers: what the gradient sees in them (chapter 10).

- :func:`reversal_batch` is the synthetic task: reverse a sequence of random tokens.
- :func:`path_sensitivity` measures ``‖∂y_T/∂x_t‖`` against the distance ``T - t``, for an RNN
  and for self-attention; :func:`softmax_saturation` measures what the ``1/sqrt(d_k)`` scale
  of dot-product attention (Vaswani et al. 2017) does to the softmax and its Jacobian.
- :class:`TokenTransformer` is a small encoder built from ``nn.TransformerEncoderLayer``
  (``norm_first`` selects pre-LN), used for every probe at initialization.
- :func:`attention`, :class:`SelfAttention`, :class:`Block` and :class:`StackedTransformer` write
  the same model out in a few lines, with a leading *runs* dimension so that many small
  transformers (different seeds and learning rates) train side by side as one computation; with
  the same weights they compute what :class:`TokenTransformer` computes (tests check it). The
  block also has the DeepNorm (Wang et al. 2022) and ReZero (Bachlechner et al. 2020) variants.
- :func:`train_stacked` trains all runs at once with Adam written out (each run its own learning
  rate and linear warm-up), and :func:`warmup_grid` sweeps learning rates and warm-up for post-LN
  and pre-LN stacks (Xiong et al. 2020); :func:`schedule_runs` trains a list of settings for a
  budget study, read at several budgets with :func:`loss_at`, and :func:`deepnorm_ablation` trains
  DeepNorm with each of its two parts alone.
- :func:`layer_gradient_norms`, :func:`stream_statistics` and :func:`first_update_output_change`
  are the probes: per-layer gradient norms by parameter name, the size of the residual stream,
  and how much one optimizer step changes the output (Liu et al. 2020).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from gradpath.init import initialize_by_name_
from gradpath.plots import plot_training_curves, use_course_style
from gradpath.probes import group_norms, probe_gradient_norms_by_name

VARIANTS = ("post", "pre", "deepnorm", "rezero")
LAYER_KEY = r"^layers\.(\d+)\."

# --------------------------------------------------------------------------- the task


def reversal_batch(generator: torch.Generator, batch_size: int, length: int, vocab: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of the reversal task: random tokens ``x`` (batch, length) and ``y = x`` reversed.

    Every output position must fetch the token at the mirrored input position, so the task needs
    attention to use positions; a model that ignores its input scores ``ln(vocab)`` nats.

    Raises:
        ValueError: for a non-positive size or a vocabulary smaller than 2.
    """
    for name, value in (("batch_size", batch_size), ("length", length)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(vocab, int) or vocab < 2:
        raise ValueError(f"vocab must be an integer >= 2, got {vocab!r}")
    x = torch.randint(0, vocab, (batch_size, length), generator=generator)
    return x, x.flip(-1)


# --------------------------------------------------------------------------- path length


def path_sensitivity(sequence_map: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
                     ) -> np.ndarray:
    """``‖∂y_T/∂x_t‖_F`` for every input position ``t``: how strongly the last output depends on
    each input.

    Args:
        sequence_map: maps a sequence ``x`` of shape (1, T, d_in) to outputs (1, T, d_out).
        x: the input sequence, shape (1, T, d_in).

    Returns:
        Array of length T, indexed by the distance ``T - t`` (entry 0 is the last position
        itself, entry T-1 the first), each the Frobenius norm of a (d_out, d_in) Jacobian
        computed in float64.

    Raises:
        ValueError: if ``x`` is not a single sequence of shape (1, T, d_in).
    """
    if x.dim() != 3 or x.shape[0] != 1:
        raise ValueError(f"x must have shape (1, T, d_in), got {tuple(x.shape)}")
    jac = torch.autograd.functional.jacobian(lambda v: sequence_map(v)[0, -1], x)
    # jac: (d_out, 1, T, d_in)
    norms = torch.linalg.vector_norm(jac.double()[:, 0], dim=(0, 2))
    return norms.flip(0).cpu().numpy()


@dataclass(frozen=True)
class SoftmaxSaturation:
    """What the attention softmax does for random queries and keys, per key width ``d_k``.

    Each query ``q`` meets ``keys`` keys; ``s_j = q·k_j`` (divided by ``sqrt(d_k)`` if scaled),
    ``p = softmax(s)``, and a random upstream gradient ``g = ∂L/∂p`` is sent back. Medians are
    over queries (a mean would be dominated by the few queries that are not saturated).

    Attributes:
        widths: the ``d_k`` values.
        logit_std: standard deviation of the logits (≈ sqrt(d_k) unscaled, ≈ 1 scaled).
        saturated_fraction: share of queries whose largest weight ``max_j p_j`` exceeds 0.99.
        jacobian_norm: median of ``‖diag(p) - p pᵀ‖_F``, the softmax's Jacobian ``∂p/∂s``.
        logit_gradient: median of ``‖∂L/∂s‖ / ‖g‖``: the gradient that passes the softmax.
        query_gradient: median of ``‖∂L/∂q‖ / ‖g‖``: what reaches the query (and so W_q).
    """

    widths: list[int]
    logit_std: list[float]
    saturated_fraction: list[float]
    jacobian_norm: list[float]
    logit_gradient: list[float]
    query_gradient: list[float]


def softmax_saturation(widths: Sequence[int], *, scaled: bool, keys: int = 16,
                       queries: int = 256, seed: int = 0) -> SoftmaxSaturation:
    """Measure the attention softmax at each key width ``d_k``, with or without ``1/sqrt(d_k)``.

    Queries and keys have independent N(0, 1) entries (what unit-variance inputs through
    variance-preserving projections give), so an unscaled logit ``q·k`` has variance ``d_k``.
    Computed in float64.

    Raises:
        ValueError: for an empty or non-positive list of widths, or fewer than 2 keys.
    """
    if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be positive integers, got {widths!r}")
    if keys < 2:
        raise ValueError(f"keys must be at least 2, got {keys}")
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {k: [] for k in ("std", "sat", "jac", "ds", "dq")}
    for d_k in widths:
        q = torch.randn(queries, d_k, generator=generator, dtype=torch.float64)
        k = torch.randn(keys, d_k, generator=generator, dtype=torch.float64)
        upstream = torch.randn(queries, keys, generator=generator, dtype=torch.float64)
        q.requires_grad_(True)
        logits = q @ k.T / (math.sqrt(d_k) if scaled else 1.0)
        logits.retain_grad()
        p = logits.softmax(dim=-1)
        (p * upstream).sum().backward()
        pd = p.detach()
        jac = torch.diag_embed(pd) - pd.unsqueeze(-1) * pd.unsqueeze(-2)
        size = upstream.norm(dim=-1)
        assert q.grad is not None and logits.grad is not None
        out["std"].append(float(logits.detach().std()))
        out["sat"].append(float((pd.max(dim=-1).values > 0.99).double().mean()))
        out["jac"].append(float(torch.linalg.matrix_norm(jac).median()))
        out["ds"].append(float((logits.grad.norm(dim=-1) / size).median()))
        out["dq"].append(float((q.grad.norm(dim=-1) / size).median()))
    return SoftmaxSaturation(list(widths), out["std"], out["sat"], out["jac"], out["ds"],
                             out["dq"])


# --------------------------------------------------------------------------- PyTorch's transformer


class TokenTransformer(nn.Module):
    """A small transformer encoder from PyTorch's parts, for tokens in, token logits out.

    ``embed`` (token embedding) plus ``position`` (learned position embedding, one row per
    position), ``depth`` ``nn.TransformerEncoderLayer`` (ReLU, no dropout, ``batch_first``) in
    ``layers``, an optional final ``nn.LayerNorm`` in ``norm``, and a linear ``head``.

    Args:
        vocab: number of token values.
        length: the longest sequence (rows of the position embedding).
        d_model, heads, feedforward: width of the stream, attention heads, MLP hidden width.
        depth: number of encoder layers.
        norm_first: ``False`` is the original post-LN block ``x = LN(x + F(x))``; ``True`` the
            pre-LN block ``x = x + F(LN(x))``.
        final_norm: a LayerNorm before the head; defaults to ``norm_first`` (pre-LN needs it).
        init: ``"pytorch"`` (default) keeps PyTorch's own initialization of
            ``nn.TransformerEncoderLayer`` (Xavier-uniform over the whole (3d, d)
            ``in_proj_weight``, ``nn.Linear``'s default U(±1/sqrt(fan_in)) for the output
            projection and the MLP, zero attention biases); ``"xavier"`` makes every weight
            matrix Xavier-uniform, W_q, W_k and W_v each as its own d × d matrix, with zero
            biases (:func:`xavier_init_`).
        seed: the weights depend only on it; the global random state is left untouched.

    Raises:
        ValueError: for non-positive sizes, ``d_model`` not divisible by ``heads``, or an
            unknown ``init``.
    """

    def __init__(self, vocab: int = 10, length: int = 8, d_model: int = 16, heads: int = 2,
                 feedforward: int = 32, depth: int = 6, norm_first: bool = False,
                 final_norm: bool | None = None, init: str = "pytorch", seed: int = 0) -> None:
        super().__init__()
        for name, value in (("vocab", vocab), ("length", length), ("d_model", d_model),
                            ("heads", heads), ("feedforward", feedforward), ("depth", depth)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        if init not in ("xavier", "pytorch"):
            raise ValueError(f"unknown init {init!r}; valid choices are 'xavier', 'pytorch'")
        self.norm_first = norm_first
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embed = nn.Embedding(vocab, d_model)
            self.position = nn.Parameter(torch.randn(length, d_model))
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(d_model, heads, feedforward, dropout=0.0,
                                           batch_first=True, norm_first=norm_first)
                for _ in range(depth))
            use_final = norm_first if final_norm is None else final_norm
            self.norm: nn.Module = nn.LayerNorm(d_model) if use_final else nn.Identity()
            self.head = nn.Linear(d_model, vocab)
        if init == "xavier":
            xavier_init_(self, seed=seed)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, length, vocab) for tokens of shape (batch, length)."""
        x = self.embed(tokens) + self.position[: tokens.shape[-1]]
        for layer in self.layers:
            x = layer(x)
        return cast(torch.Tensor, self.head(self.norm(x)))


def xavier_init_(model: nn.Module, *, seed: int = 0, value_gain: float = 1.0,
                 branch_gain: float = 1.0) -> nn.Module:
    """Xavier-uniform weights for every attention and MLP matrix of a transformer, zero biases.

    W_q, W_k and W_v inside ``in_proj_weight`` are initialized as three d × d matrices
    (``row_blocks=3``). ``value_gain`` multiplies W_v's gain and ``branch_gain`` that of the
    output projection and both MLP layers (DeepNorm's β goes there, see :func:`deepnorm_init_`).
    Uses :func:`gradpath.init.initialize_by_name_`; returns the model.
    """
    generator = torch.Generator().manual_seed(seed)
    initialize_by_name_(model, r"self_attn\.in_proj_weight$", "xavier_uniform", row_blocks=3,
                        gain=(1.0, 1.0, value_gain), generator=generator)
    initialize_by_name_(model, r"(self_attn\.out_proj|linear1|linear2)\.weight$",
                        "xavier_uniform", gain=branch_gain, generator=generator)
    initialize_by_name_(model, r"(in_proj_bias|out_proj\.bias|linear1\.bias|linear2\.bias)$",
                        "zeros")
    return model


def deepnorm_constants(depth: int) -> tuple[float, float]:
    """DeepNorm's ``(α, β)`` for an encoder-only stack of ``depth`` layers (Wang et al. 2022).

    ``α = (2N)^(1/4)`` scales the residual ``x`` in ``LN(α x + F(x))`` and ``β = (8N)^(-1/4)``
    scales the initial weights of the value projection, the attention output projection and
    the MLP.
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    return (2 * depth) ** 0.25, (8 * depth) ** -0.25


def deepnorm_init_(model: TokenTransformer, seed: int = 0) -> TokenTransformer:
    """Re-initialize a post-LN :class:`TokenTransformer` with DeepNorm's β (see
    :func:`deepnorm_constants`); the α goes into the forward pass (:class:`Block`).

    Adapted from Wang et al. (2022), whose pseudo-code draws Xavier-normal weights with gain β
    for W_v, the output projection and the MLP, and gain 1 for W_q and W_k; this draws
    Xavier-uniform weights with the same gains, hence the same variances.
    """
    if model.norm_first:
        raise ValueError("DeepNorm modifies the post-LN block: build the model with "
                         "norm_first=False")
    _, beta = deepnorm_constants(len(model.layers))
    return cast(TokenTransformer, xavier_init_(model, seed=seed, value_gain=beta,
                                               branch_gain=beta))


# --------------------------------------------------------------------------- written out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaled: bool = True
              ) -> torch.Tensor:
    """Scaled dot-product attention, ``softmax(q kᵀ / sqrt(d_k)) v`` (Vaswani et al. 2017).

    Shapes (..., T, d_k) for ``q`` and ``k`` and (..., T, d_v) for ``v``; any leading
    dimensions (runs, batch, heads). ``scaled=False`` drops the ``1/sqrt(d_k)``.
    """
    scores = q @ k.transpose(-2, -1)
    if scaled:
        scores = scores / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


class StackedLinear(nn.Module):
    """``R`` independent linear maps: weight (R, out, in), bias (R, out); x is (R, ..., in)."""

    def __init__(self, runs: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(runs, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(runs, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        y = torch.baddbmm(self.bias.unsqueeze(1), flat, self.weight.transpose(1, 2))
        return y.reshape(*x.shape[:-1], -1)


class StackedLayerNorm(nn.Module):
    """``R`` independent LayerNorms over the last dimension (eps 1e-5, as ``nn.LayerNorm``)."""

    def __init__(self, runs: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(runs, width))
        self.bias = nn.Parameter(torch.zeros(runs, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        normed = F.layer_norm(x, x.shape[-1:], eps=1e-5)
        return normed * self.weight.reshape(shape) + self.bias.reshape(shape)


class SelfAttention(nn.Module):
    """Multi-head self-attention written out, parameters named as in ``nn.MultiheadAttention``.

    ``in_proj_weight`` (R, 3d, d) stacks W_q, W_k and W_v; ``out_proj`` maps the concatenated
    heads back to d. Input and output: (R, batch, T, d).
    """

    def __init__(self, runs: int, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.zeros(runs, 3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(runs, 3 * d_model))
        self.out_proj = StackedLinear(runs, d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        runs, batch, length, d = x.shape
        qkv = torch.baddbmm(self.in_proj_bias.unsqueeze(1), x.reshape(runs, -1, d),
                            self.in_proj_weight.transpose(1, 2))
        # (R, B, T, 3, heads, d_k) -> three tensors of shape (R, B, heads, T, d_k)
        q, k, v = qkv.reshape(runs, batch, length, 3, self.heads, -1).permute(3, 0, 1, 4, 2, 5)
        heads = attention(q, k, v)
        return cast(torch.Tensor, self.out_proj(heads.transpose(2, 3).reshape(x.shape)))


class Block(nn.Module):
    """One transformer encoder layer, written out: attention and MLP sublayers on a residual
    stream. Parameter names match ``nn.TransformerEncoderLayer``'s.

    Variants (``x`` is the stream, ``A`` attention, ``M`` the MLP, ``LN`` layer norm):

    - ``"post"`` (Vaswani et al. 2017): ``x = LN(x + A(x)); x = LN(x + M(x))``;
    - ``"pre"`` (Xiong et al. 2020): ``x = x + A(LN(x)); x = x + M(LN(x))``;
    - ``"deepnorm"`` (Wang et al. 2022): ``x = LN(α x + A(x)); x = LN(α x + M(x))``;
    - ``"rezero"`` (Bachlechner et al. 2020): ``x = x + g A(x); x = x + g M(x)``, no layer norm,
      with one learned scalar ``g`` (``resweight``) per layer that starts at 0.
    """

    def __init__(self, runs: int, d_model: int, heads: int, feedforward: int,
                 variant: str = "post", alpha: float = 1.0) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; valid choices are "
                             f"{', '.join(VARIANTS)}")
        self.variant, self.alpha = variant, alpha
        self.self_attn = SelfAttention(runs, d_model, heads)
        self.linear1 = StackedLinear(runs, d_model, feedforward)
        self.linear2 = StackedLinear(runs, feedforward, d_model)
        if variant == "rezero":
            self.resweight = nn.Parameter(torch.zeros(runs))
        else:
            self.norm1 = StackedLayerNorm(runs, d_model)
            self.norm2 = StackedLayerNorm(runs, d_model)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.linear2(torch.relu(self.linear1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "pre":
            x = x + self.self_attn(self.norm1(x))
            x = x + self.mlp(self.norm2(x))
        elif self.variant in ("post", "deepnorm"):       # alpha is 1 for post-LN
            x = self.norm1(self.alpha * x + self.self_attn(x))
            x = self.norm2(self.alpha * x + self.mlp(x))
        else:                                            # rezero
            g = self.resweight.reshape(-1, 1, 1, 1)
            x = x + g * self.self_attn(x)
            x = x + g * self.mlp(x)
        return x


class StackedTransformer(nn.Module):
    """``runs`` independent transformers side by side: every parameter has a leading runs axis.

    Same architecture as :class:`TokenTransformer`, written out with :class:`Block`. Build it with
    :meth:`from_models`, which copies the weights of ``TokenTransformer`` instances (one per run),
    so run ``r`` computes exactly what ``models[r]`` computes (for ``"post"`` and ``"pre"``).
    Tokens go in as (R, batch, T), logits come out as (R, batch, T, vocab).
    """

    def __init__(self, runs: int, vocab: int, length: int, d_model: int, heads: int,
                 feedforward: int, depth: int, variant: str = "post",
                 final_norm: bool = False) -> None:
        super().__init__()
        alpha = deepnorm_constants(depth)[0] if variant == "deepnorm" else 1.0
        self.runs = runs
        self.embed_weight = nn.Parameter(torch.zeros(runs, vocab, d_model))
        self.position = nn.Parameter(torch.zeros(runs, length, d_model))
        self.layers = nn.ModuleList(Block(runs, d_model, heads, feedforward, variant, alpha)
                                    for _ in range(depth))
        self.norm = StackedLayerNorm(runs, d_model) if final_norm else None
        self.head = StackedLinear(runs, d_model, vocab)

    @classmethod
    def from_models(cls, models: Sequence[TokenTransformer], variant: str | None = None
                    ) -> StackedTransformer:
        """Stack the weights of ``models`` (same sizes). ``variant`` defaults to each model's
        ``"pre"``/``"post"``; ``"deepnorm"`` and ``"rezero"`` reuse post-LN models' weights
        (ReZero drops the layer norms and starts every ``resweight`` at 0)."""
        if not models:
            raise ValueError("need at least one model to stack")
        first = models[0]
        if any(m.norm_first != first.norm_first for m in models):
            raise ValueError("all models must share norm_first")
        variant = variant or ("pre" if first.norm_first else "post")
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; valid choices are "
                             f"{', '.join(VARIANTS)}")
        if (variant == "pre") != first.norm_first:
            raise ValueError(f"variant {variant!r} needs models built with "
                             f"norm_first={variant == 'pre'}")
        layer0 = cast(nn.TransformerEncoderLayer, first.layers[0])
        stacked = cls(len(models), first.embed.num_embeddings, first.position.shape[0],
                      first.embed.embedding_dim, layer0.self_attn.num_heads,
                      layer0.linear1.out_features, len(first.layers), variant,
                      final_norm=isinstance(first.norm, nn.LayerNorm) and variant != "rezero")
        sources = [dict(m.named_parameters()) for m in models]
        with torch.no_grad():
            for name, p in stacked.named_parameters():
                if name.endswith("resweight"):
                    continue
                source = name.replace("embed_weight", "embed.weight")
                p.copy_(torch.stack([s[source].detach() for s in sources]))
        return stacked

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        runs = torch.arange(tokens.shape[0], device=tokens.device).reshape(-1, 1, 1)
        x = self.embed_weight[runs, tokens] + self.position[:, None, : tokens.shape[-1]]
        for layer in self.layers:
            x = layer(x)
        if self.norm is not None:
            x = self.norm(x)
        return cast(torch.Tensor, self.head(x))


# --------------------------------------------------------------------------- training many runs


@dataclass
class StackedRun:
    """What :func:`train_stacked` measured for each of its ``R`` runs.

    Attributes:
        loss: (R, steps) training loss of every run at every step (``nan`` after a run broke).
        first_nonfinite: per run, the first step whose loss or gradient was not finite, or
            ``None``. A broken run stops updating; the others carry on unaffected.
    """

    loss: np.ndarray
    first_nonfinite: list[int | None]

    def final_loss(self, window: int = 10) -> np.ndarray:
        """Mean loss over the last ``window`` steps, per run (``inf`` for a run that broke)."""
        tail = self.loss[:, -window:]
        return np.where(np.isfinite(tail).all(axis=1), tail.mean(axis=1), np.inf)


def warmup_factor(step: int, warmup: torch.Tensor) -> torch.Tensor:
    """Linear warm-up: the learning rate's multiplier ``min(1, step / warmup)`` at 1-based
    ``step``; ``warmup = 0`` means none."""
    return torch.where(warmup > 0, (step / warmup.clamp(min=1)).clamp(max=1.0),
                       torch.ones_like(warmup))


def warmup_factor_per_run(step: torch.Tensor, warmup: torch.Tensor) -> torch.Tensor:
    """:func:`warmup_factor` with a (1-based) step count per run."""
    return torch.where(warmup > 0, (step / warmup.clamp(min=1)).clamp(max=1.0),
                       torch.ones_like(warmup))


def train_stacked(model: StackedTransformer, *, lrs: Sequence[float], warmups: Sequence[int],
                  data_seeds: Sequence[int], steps: int, batch_size: int = 8,
                  betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-8,
                  length: int | None = None,
                  moment_only: Sequence[int] | None = None) -> StackedRun:
    """Train every run of ``model`` on the reversal task, each with its own learning rate.

    Adam, written out (identical to ``torch.optim.Adam`` with these betas, checked in the tests),
    with run ``r``'s step size ``lrs[r] · min(1, t / warmups[r])`` at step ``t``: a linear warm-up
    over ``warmups[r]`` steps, then constant. Runs with the same data seed see the same batches.
    betas (0.9, 0.98) are Vaswani et al.'s.

    ``moment_only[r] = K`` makes run ``r``'s first ``K`` steps update only Adam's second-moment
    estimate (no parameter and no first-moment update), as in the "Adam-2k" ablation of Liu et
    al. (2020, the RAdam paper): the run starts updating at step ``K + 1`` with a second moment
    averaged over ``K`` more gradients, and its bias corrections and warm-up count from there.

    Raises:
        ValueError: if the per-run lists do not all have ``model.runs`` entries, a learning rate
            is not positive, a warm-up is negative, or ``steps`` is not positive.
    """
    runs = model.runs
    for name, values in (("lrs", lrs), ("warmups", warmups), ("data_seeds", data_seeds)):
        if len(values) != runs:
            raise ValueError(f"{name} has {len(values)} entries; the model has {runs} runs")
    if not all(lr > 0 for lr in lrs):
        raise ValueError(f"learning rates must be positive, got {list(lrs)}")
    if not all(w >= 0 for w in warmups):
        raise ValueError(f"warm-up lengths must be >= 0, got {list(warmups)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if moment_only is not None and (len(moment_only) != runs
                                    or not all(k >= 0 for k in moment_only)):
        raise ValueError(f"moment_only must hold {runs} entries >= 0, got {list(moment_only)}")
    device = model.embed_weight.device
    vocab, max_length = model.embed_weight.shape[1], model.position.shape[1]
    length = length or max_length
    lr = torch.tensor(list(lrs), dtype=torch.float32, device=device)
    warmup = torch.tensor(list(warmups), dtype=torch.float32, device=device)
    alive = torch.ones(runs, dtype=torch.bool, device=device)
    generators = {s: torch.Generator().manual_seed(s) for s in dict.fromkeys(data_seeds)}
    params: list[torch.Tensor] = list(model.parameters())
    first_moment = [torch.zeros_like(p) for p in params]
    second_moment = [torch.zeros_like(p) for p in params]
    losses = np.full((runs, steps), np.nan)
    first_nonfinite: list[int | None] = [None] * runs
    beta1, beta2 = betas
    skip = torch.tensor(list(moment_only) if moment_only is not None else [0] * runs,
                        device=device)
    skip_any = bool((skip > 0).any())
    for step in range(1, steps + 1):
        batches = {s: reversal_batch(g, batch_size, length, vocab) for s, g in generators.items()}
        x = torch.stack([batches[s][0] for s in data_seeds]).to(device)
        y = torch.stack([batches[s][1] for s in data_seeds]).to(device)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1), reduction="none")
        loss = loss.reshape(runs, -1).mean(dim=1)
        for p in params:
            p.grad = None
        loss.sum().backward()
        with torch.no_grad():
            grads = [cast(torch.Tensor, p.grad) for p in params]
            finite = torch.isfinite(loss)
            # One cheap test of everything; the exact per-run test only when it fails.
            if not torch.isfinite(torch.stack(torch._foreach_norm(grads))).all():
                for g in grads:
                    finite &= torch.isfinite(g).reshape(runs, -1).all(dim=1)
            for r in torch.nonzero(alive & ~finite).flatten().tolist():
                first_nonfinite[r] = step - 1
            alive &= finite
            if not bool(alive.all()):       # a broken run's gradient must not reach Adam's state
                grads = [torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0) for g in grads]
            losses[:, step - 1] = np.where(alive.cpu().numpy(), loss.detach().cpu().numpy(),
                                           np.nan)
            # Adam (Kingma & Ba 2015), every parameter at once, each run with its own step size.
            torch._foreach_mul_(second_moment, beta2)
            torch._foreach_addcmul_(second_moment, grads, grads, value=1 - beta2)
            updates_done = step - skip                   # this step's count of real updates
            active = updates_done > 0
            if skip_any:                                 # runs still gathering the 2nd moment
                grads = [g * active.reshape((-1,) + (1,) * (g.dim() - 1)) for g in grads]
            torch._foreach_mul_(first_moment, beta1)
            torch._foreach_add_(first_moment, grads, alpha=1 - beta1)
            denom = torch._foreach_div(second_moment, 1 - beta2 ** step)
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, eps)
            update = list(torch._foreach_div(first_moment, denom))
            count = updates_done.clamp(min=1).to(torch.float32)
            step_size = torch.where(alive & active, lr * warmup_factor_per_run(count, warmup),
                                    0.0)
            step_size = step_size / (1 - beta1 ** count)
            torch._foreach_mul_(update, [step_size.reshape((-1,) + (1,) * (p.dim() - 1))
                                         for p in params])
            torch._foreach_sub_(params, update)
    return StackedRun(losses, first_nonfinite)


def build_models(variant: str, depth: int, seeds: Sequence[int], **sizes: Any
                 ) -> list[TokenTransformer]:
    """One :class:`TokenTransformer` per seed for ``variant`` (DeepNorm's β applied for
    ``"deepnorm"``); ``sizes`` go to the constructor (d_model, heads, feedforward, ...)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid choices are {', '.join(VARIANTS)}")
    models = [TokenTransformer(depth=depth, norm_first=(variant == "pre"), seed=s, **sizes)
              for s in seeds]
    if variant == "deepnorm":
        for m, s in zip(models, seeds, strict=True):
            deepnorm_init_(m, seed=s)
    return models


def deepnorm_ablation(depth: int, seeds: Sequence[int], *, lr: float, warmup: int, steps: int,
                      batch_size: int = 8, device: torch.device | str = "cpu"
                      ) -> dict[str, np.ndarray]:
    """Loss curves of post-LN, DeepNorm, and DeepNorm with one of its two parts removed.

    - ``"post"``: the plain post-LN stack (PyTorch's initialization, α = 1);
    - ``"deepnorm"``: the full recipe (:func:`build_models` with ``"deepnorm"``);
    - ``"alpha only"``: the DeepNorm block ``LN(α x + F(x))`` with Xavier weights at gain 1
      (no β);
    - ``"beta only"``: DeepNorm's initialization (β on W_v, the output projection and the MLP)
      in a plain post-LN block (α = 1).

    Same learning rate, warm-up, steps, initial seeds and batches (data seed ``1000 + seed``) as
    :func:`warmup_grid`, so ``"post"`` and ``"deepnorm"`` are the runs ``warmup_grid`` makes;
    the four groups train in two stacks (one per block), which is cheaper than four.

    Returns:
        ``{group: array of shape (len(seeds), steps)}``, every step's training loss.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    stacks = {
        "post": {"post": build_models("post", depth, seeds),
                 "beta only": [deepnorm_init_(TokenTransformer(depth=depth, seed=s), seed=s)
                               for s in seeds]},
        "deepnorm": {"deepnorm": build_models("deepnorm", depth, seeds),
                     "alpha only": [TokenTransformer(depth=depth, seed=s, init="xavier")
                                    for s in seeds]},
    }
    out: dict[str, np.ndarray] = {}
    for variant, groups in stacks.items():
        models = [m for group in groups.values() for m in group]
        stacked = StackedTransformer.from_models(models, variant).to(device)
        run = train_stacked(stacked, lrs=[lr] * len(models), warmups=[warmup] * len(models),
                            data_seeds=[1000 + s for _ in groups for s in seeds], steps=steps,
                            batch_size=batch_size)
        for k, label in enumerate(groups):
            out[label] = run.loss[k * len(seeds):(k + 1) * len(seeds)]
    return out


@dataclass
class WarmupGrid:
    """Final losses of a learning-rate × warm-up × seed grid for one variant and depth.

    Attributes:
        variant, depth: the architecture.
        lrs, warmups, seeds: the grid's axes.
        final: (len(lrs), len(warmups), len(seeds)) final training loss (mean of the last 10
            steps; ``inf`` where a run broke).
        loss: (len(lrs), len(warmups), len(seeds), steps) every step's loss.
    """

    variant: str
    depth: int
    lrs: list[float]
    warmups: list[int]
    seeds: list[int]
    final: np.ndarray
    loss: np.ndarray

    def median_final(self) -> np.ndarray:
        """(lrs, warmups): the median over seeds of the final loss."""
        return cast(np.ndarray, np.median(self.final, axis=-1))

    def best(self, warmup: int) -> tuple[float, float]:
        """``(learning rate, median final loss)`` of the best learning rate at this warm-up."""
        column = self.median_final()[:, self.warmups.index(warmup)]
        i = int(np.argmin(column))
        return self.lrs[i], float(column[i])


def warmup_grid(variant: str, depth: int, *, lrs: Sequence[float], warmups: Sequence[int],
                seeds: Sequence[int], steps: int, batch_size: int = 8,
                device: torch.device | str = "cpu", **sizes: Any) -> WarmupGrid:
    """Train ``variant`` stacks of ``depth`` layers at every learning rate × warm-up × seed.

    All runs of the grid train side by side in one :class:`StackedTransformer`, with the same
    number of steps and, for a given seed, the same initial weights and batches: only the
    learning rate and the warm-up differ.
    """
    grid = [(lr, w, s) for lr in lrs for w in warmups for s in seeds]
    models = build_models(variant, depth, [s for _, _, s in grid], **sizes)
    stacked = StackedTransformer.from_models(models, variant).to(device)
    run = train_stacked(stacked, lrs=[g[0] for g in grid], warmups=[g[1] for g in grid],
                        data_seeds=[1000 + g[2] for g in grid], steps=steps,
                        batch_size=batch_size)
    shape = (len(lrs), len(warmups), len(seeds))
    return WarmupGrid(variant, depth, list(lrs), list(warmups), list(seeds),
                      run.final_loss().reshape(shape), run.loss.reshape(*shape, steps))


def schedule_runs(variant: str, depth: int, settings: Sequence[tuple[float, ...]], *,
                  seeds: Sequence[int], steps: int, batch_size: int = 8,
                  device: torch.device | str = "cpu", **sizes: Any) -> np.ndarray:
    """Loss curves of ``variant`` stacks trained at each ``(peak learning rate, warm-up)`` or
    ``(peak learning rate, warm-up, second-moment-only steps)`` (``moment_only`` of
    :func:`train_stacked`; 0 when left out).

    Like :func:`warmup_grid` (same initial weights and batches for a given seed, data seed
    ``1000 + seed``), but for a list of settings rather than a full grid, so a budget study
    trains only the runs it needs. The schedule does not depend on ``steps``, so the first ``n``
    steps of a run are the run a budget of ``n`` steps would have made.

    Returns:
        Array of shape (len(settings), len(seeds), steps): every step's training loss (``nan``
        after a run broke).

    Raises:
        ValueError: for an empty list of settings or seeds.
    """
    settings, seeds = list(settings), list(seeds)
    if not settings or not seeds:
        raise ValueError("settings and seeds must each hold at least one entry")
    if any(len(setting) not in (2, 3) for setting in settings):
        raise ValueError(f"each setting is (lr, warmup) or (lr, warmup, moment_only), "
                         f"got {settings!r}")
    full = [(float(t[0]), int(t[1]), int(t[2]) if len(t) == 3 else 0) for t in settings]
    runs = [(lr, w, k, s) for lr, w, k in full for s in seeds]
    models = build_models(variant, depth, [r[3] for r in runs], **sizes)
    stacked = StackedTransformer.from_models(models, variant).to(device)
    run = train_stacked(stacked, lrs=[r[0] for r in runs], warmups=[r[1] for r in runs],
                        data_seeds=[1000 + r[3] for r in runs], steps=steps,
                        batch_size=batch_size, moment_only=[r[2] for r in runs])
    return run.loss.reshape(len(settings), len(seeds), steps)


def loss_at(loss: np.ndarray, budget: int, window: int = 10) -> np.ndarray:
    """The mean loss over steps ``budget - window + 1 .. budget`` along the last axis: what a run
    stopped after ``budget`` steps reports as its final loss (``inf`` where it broke)."""
    if not 1 <= window <= budget <= loss.shape[-1]:
        raise ValueError(f"need 1 <= window ({window}) <= budget ({budget}) <= "
                         f"steps ({loss.shape[-1]})")
    tail = loss[..., budget - window:budget]
    return cast(np.ndarray, np.where(np.isfinite(tail).all(axis=-1), tail.mean(axis=-1), np.inf))


# --------------------------------------------------------------------------- probes


def layer_gradient_norms(model: TokenTransformer, tokens: torch.Tensor, targets: torch.Tensor,
                         pattern: str | None = None) -> list[float]:
    """``‖∂L/∂θ_ℓ‖`` of every encoder layer ``ℓ`` (input side first), all its parameters together
    (or only those whose name matches ``pattern``), for one batch; the model is left as found.

    Uses :func:`gradpath.probes.probe_gradient_norms_by_name` (which sees the attention's
    ``in_proj_weight``) and :func:`gradpath.probes.group_norms` with the key ``layers.<i>.``.
    """
    vocab = model.head.out_features
    norms = probe_gradient_norms_by_name(
        model, lambda: F.cross_entropy(model(tokens).reshape(-1, vocab), targets.reshape(-1)),
        pattern)
    per_layer = group_norms(norms, LAYER_KEY)
    return [per_layer[str(i)] for i in range(len(model.layers))]


@dataclass(frozen=True)
class StreamStatistics:
    """The residual stream of a :class:`TokenTransformer`, layer by layer (input side first).

    Attributes:
        rms: RMS of the stream entering each layer, then of the last layer's output (depth + 1
            values).
        update_ratio: ``‖x_{ℓ+1} - x_ℓ‖ / ‖x_ℓ‖`` for each layer: how much each layer changes
            the stream relative to its size.
        head_input_rms: RMS of what the head receives (after the final LayerNorm, if any).
    """

    rms: list[float]
    update_ratio: list[float]
    head_input_rms: float


@torch.no_grad()
def stream_statistics(model: TokenTransformer, tokens: torch.Tensor) -> StreamStatistics:
    """Measure the residual stream on ``tokens`` (in float64 reductions)."""
    states = [model.embed(tokens) + model.position[: tokens.shape[-1]]]
    for layer in model.layers:
        states.append(layer(states[-1]))
    s = [t.double() for t in states]
    rms = [float(t.pow(2).mean().sqrt()) for t in s]
    ratio = [float((b - a).norm() / a.norm()) for a, b in zip(s[:-1], s[1:], strict=True)]
    head_input = model.norm(states[-1]).double()
    return StreamStatistics(rms, ratio, float(head_input.pow(2).mean().sqrt()))


def first_update_output_change(models: Sequence[TokenTransformer], variant: str | None = None,
                               *, lr: float, batch_size: int = 64, seed: int = 0) -> np.ndarray:
    """``‖f(x; θ₁) - f(x; θ₀)‖ / ‖f(x; θ₀)‖`` per model after one Adam step of size ``lr``.

    Adam's first step moves every parameter by about ``lr`` (``m/√v = g/|g|``), whatever the
    size of its gradient, so this isolates how strongly the architecture turns a parameter change
    into an output change — the amplification Liu et al. (2020) measured. ``f`` is the logits on
    a fixed batch; the models themselves are not modified (their weights are copied).
    """
    stacked = StackedTransformer.from_models(models, variant)
    probe, _ = reversal_batch(torch.Generator().manual_seed(seed), batch_size,
                              stacked.position.shape[1], stacked.embed_weight.shape[1])
    probe = probe.expand(stacked.runs, -1, -1)
    with torch.no_grad():
        before = stacked(probe).double()
    train_stacked(stacked, lrs=[lr] * stacked.runs, warmups=[0] * stacked.runs,
                  data_seeds=[seed + 1] * stacked.runs, steps=1, batch_size=batch_size)
    with torch.no_grad():
        after = stacked(probe).double()
    change = torch.linalg.vector_norm((after - before).flatten(1), dim=1)
    return (change / torch.linalg.vector_norm(before.flatten(1), dim=1)).numpy()


# --------------------------------------------------------------------------- figure helper


def plot_warmup_runs(*, depth: int, lr: float, warmup: int, steps: int = 150,
                     seed: int = 0, seeds: Sequence[int] | None = None) -> Figure:
    """Train post-LN and pre-LN stacks of ``depth`` layers at ``lr``, with and without
    ``warmup`` steps of linear warm-up, and draw the four loss curves (the live explorer).

    With ``seeds`` (a list) every curve is the median over those seeds, step by step, as in the
    chapter's figures; otherwise it is the single run of ``seed``.
    """
    use_course_style()
    fig, ax = plt.subplots()
    curves = {}
    run_seeds = list(seeds) if seeds is not None else [seed]
    if not run_seeds:
        raise ValueError("seeds must hold at least one seed")
    for variant in ("post", "pre"):
        grid = warmup_grid(variant, depth, lrs=[lr], warmups=[0, warmup], seeds=run_seeds,
                           steps=steps)
        for j, w in enumerate(grid.warmups):
            label = f"{variant}-LN, " + (f"warm-up {w}" if w else "no warm-up")
            curves[label] = list(np.median(grid.loss[0, j], axis=0))
    title = f"{depth} layers, learning rate {lr:g}"
    if len(run_seeds) > 1:
        title += f" (median of {len(run_seeds)} seeds)"
    plot_training_curves(curves, ax=ax, title=title)
    ax.axhline(math.log(10), ls=":", color="gray")
    return fig
