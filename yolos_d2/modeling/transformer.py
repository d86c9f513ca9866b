"""
The ViT encoder block of YOLOS, with DeiT/timm parameter names (``norm1``, ``attn.qkv``,
``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``).

What timm's ``Block`` does not offer makes it worth owning:

- the last block only needs the outputs of the ``[DET]`` tokens, so it can compute attention,
  projection and MLP for those queries alone (keys and values still cover every token);
- without autograd, the residual stream can be updated in place, saving a write and a read of
  every activation per sub-layer (outside autocast, and when the output projections are float
  ``nn.Linear`` layers: quantised ones, e.g. from ``torch.ao.quantization.quantize_dynamic``,
  take the plain path);
- training on the CPU on short sequences computes attention as explicit matrix products, which
  differentiate faster there than the fused kernel.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp

__all__ = ["Attention", "Block"]


class Attention(nn.Module):
    """Multi-head self-attention whose queries may be limited to the last tokens of the sequence."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def attend(self, x: torch.Tensor, num_queries: Optional[int] = None) -> torch.Tensor:
        """
        Args:
            x: (B, N, D) normalised tokens.
            num_queries: Q, attend from the last Q tokens only; None for all N.

        Returns:
            (B, Q, D) the heads' attention outputs, concatenated, before the output projection.
        """
        batch, num_tokens, dim = x.shape
        qkv = self.qkv(x).view(batch, num_tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if num_queries is not None:
            q = q[:, :, num_tokens - num_queries :]
        if torch.is_grad_enabled() and x.device.type == "cpu" and num_tokens <= 3 * self.head_dim:
            out = _explicit_attention(q, k, v, self.scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(batch, q.shape[2], dim)

    def forward(self, x: torch.Tensor, num_queries: Optional[int] = None) -> torch.Tensor:
        """(B, N, D) tokens -> (B, Q, D) attention outputs of the last Q (default N) tokens."""
        return self.proj(self.attend(x, num_queries))


def _explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """
    Attention as two matrix products around a float32 softmax; q: (B, H, Q, d), k, v: (B, H, N, d).

    For training on the CPU on short sequences, where the fused kernel is slower to differentiate
    (5x in bfloat16 at 70 tokens, docs/performance.md): with N <= 3 d the (B, H, Q, N)
    probabilities it keeps for the backward pass are no larger than q, k and v together.
    """
    probabilities = (q @ k.transpose(-2, -1) * scale).float().softmax(dim=-1)
    return probabilities.to(v.dtype) @ v


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, num_queries: Optional[int] = None) -> torch.Tensor:
        """
        Args:
            x: (B, N, D) tokens.
            num_queries: Q, compute the outputs of the last Q tokens only; None for all N.

        Returns:
            (B, Q, D) the block's outputs for the last Q tokens.
        """
        if (
            self.training
            or torch.is_grad_enabled()
            or torch.is_autocast_enabled(x.device.type)
            or not self._projections_are_float_linear()
        ):
            residual = x if num_queries is None else x[:, x.shape[1] - num_queries :]
            x = residual + self.drop_path(self.attn(self.norm1(x), num_queries))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        return self._inference_forward(x, num_queries)

    def _projections_are_float_linear(self) -> bool:
        """Whether the output projections are plain ``nn.Linear`` layers, whose weights the fast path reads."""
        return type(self.attn.proj) is nn.Linear and type(self.mlp.fc2) is nn.Linear

    def _inference_forward(self, x: torch.Tensor, num_queries: Optional[int]) -> torch.Tensor:
        # The same arithmetic as forward(), adding each sub-layer's output projection into one
        # fresh residual tensor (bias first, then the matrix product accumulated in place) instead
        # of materialising the projection and the sum separately.
        attended = self.attn.attend(self.norm1(x), num_queries)
        residual = x if num_queries is None else x[:, x.shape[1] - num_queries :]
        out = residual + self.attn.proj.bias
        _add_matmul_(out, attended, self.attn.proj.weight)
        hidden = self.mlp.fc1(self.norm2(out))
        torch.ops.aten.gelu_(hidden)
        out += self.mlp.fc2.bias
        _add_matmul_(out, hidden, self.mlp.fc2.weight)
        return out


def _add_matmul_(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> None:
    """``out += x @ weight.T`` in place; out: (B, Q, D_out) contiguous, x: (B, Q, D_in)."""
    out.view(-1, out.shape[-1]).addmm_(x.reshape(-1, x.shape[-1]), weight.t())
