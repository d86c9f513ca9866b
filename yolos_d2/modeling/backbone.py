"""The plain ViT/DeiT backbone of YOLOS, with ``[DET]`` tokens appended to the patch sequence."""
from collections import OrderedDict
from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .position_embedding import (
    Grid,
    embedding_grid,
    patch_grid,
    resize_patch_pos_embed,
    sincos_patch_pos_embed,
)
from .patch_embedding import PatchEmbedding
from .transformer import Block

__all__ = ["ViTWithDetTokens"]


class ViTWithDetTokens(nn.Module):
    """
    A ViT whose token sequence is ``[CLS], patches..., [DET] x num_det_tokens``.

    Parameter names follow DeiT/timm (``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``,
    ``norm``) so that ImageNet checkpoints map one to one; YOLOS adds:

    - ``det_token``: (1, K, D) the learnable ``[DET]`` tokens,
    - ``det_pos_embed``: (1, K, D) their position embeddings,
    - ``mid_pos_embed``: (depth - 1, 1, 1 + Gm + K, D), optional position embeddings added to the
      whole sequence after every block but the last (Gm = patches of ``mid_pe_size``).

    ``pos_embed`` is (1, 1 + Gi, D): the ``[CLS]`` entry, then the patch grid of ``init_pe_size``
    (Gi patches). Patch position embeddings are resized to the patch grid of each input
    (bicubic, as the original) whenever that grid differs; the original skipped the resize when only
    the token count matched (e.g. a transposed grid), which is fixed here.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depth: int,
        num_heads: int,
        patch_size: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        init_pe_size: Tuple[int, int] = (800, 1328),
        mid_pe_size: Optional[Tuple[int, int]] = None,
        num_det_tokens: int = 100,
        drop_path_rate: float = 0.0,
        pos_embed_init: str = "trunc_normal",
        use_act_checkpoint: bool = False,
        pe_cache_size: int = 8,
    ):
        """
        Args:
            embed_dim, depth, num_heads, patch_size, mlp_ratio, qkv_bias, norm_eps: the ViT.
            init_pe_size: (H, W) pixels on whose patch grid ``pos_embed`` is defined; both
                multiples of ``patch_size``.
            mid_pe_size: (H, W) pixels on whose patch grid ``mid_pos_embed`` is defined, as
                ``init_pe_size``; None for no mid-layer position embeddings.
            num_det_tokens: number of ``[DET]`` tokens, i.e. of predictions per image.
            drop_path_rate: stochastic depth, increasing linearly over the blocks.
            pos_embed_init: how the learned patch position embeddings start: "trunc_normal"
                (std 0.02, the original's) or "sincos" (MAE's 2-D sine-cosine table, with a zero
                ``[CLS]`` entry), which lets a model trained from scratch localise far sooner.
            use_act_checkpoint: recompute each block's activations in backward to save memory.
            pe_cache_size: how many input grids keep their resized position embeddings
                (used while no gradient is recorded, e.g. at inference; emptied by
                :meth:`train`).
        """
        super().__init__()
        if pos_embed_init not in ("trunc_normal", "sincos"):
            raise ValueError(f"pos_embed_init must be 'trunc_normal' or 'sincos', got {pos_embed_init!r}")
        self.embed_dim = embed_dim
        self.depth = depth
        self.patch_size = patch_size
        self.num_det_tokens = num_det_tokens
        self.init_grid = embedding_grid(init_pe_size, patch_size, "init_pe_size")
        self.mid_grid = embedding_grid(mid_pe_size, patch_size, "mid_pe_size") if mid_pe_size is not None else None
        self.use_act_checkpoint = use_act_checkpoint
        self.pe_cache_size = pe_cache_size
        self._pe_cache: "OrderedDict[tuple, tuple]" = OrderedDict()

        self.patch_embed = PatchEmbedding(patch_size, embed_dim)
        num_init_patches = self.init_grid[0] * self.init_grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_init_patches, embed_dim))
        self.det_token = nn.Parameter(torch.zeros(1, num_det_tokens, embed_dim))
        self.det_pos_embed = nn.Parameter(torch.zeros(1, num_det_tokens, embed_dim))
        if self.mid_grid is not None:
            num_mid_tokens = 1 + self.mid_grid[0] * self.mid_grid[1] + num_det_tokens
            self.mid_pos_embed = nn.Parameter(torch.zeros(depth - 1, 1, num_mid_tokens, embed_dim))
        else:
            self.mid_pos_embed = None

        drop_path = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_path=drop_path[i], norm_eps=norm_eps)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self._init_weights(pos_embed_init)

    def _init_weights(self, pos_embed_init: str):
        for param in (self.cls_token, self.pos_embed, self.det_token, self.det_pos_embed, self.mid_pos_embed):
            if param is not None:
                nn.init.trunc_normal_(param, std=0.02)
        if pos_embed_init == "sincos":
            with torch.no_grad():
                self.pos_embed[:, 0].zero_()
                self.pos_embed[:, 1:] = sincos_patch_pos_embed(self.init_grid, self.embed_dim)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def train(self, mode: bool = True) -> "ViTWithDetTokens":
        """
        ``nn.Module.train``. Switching to training mode also empties the cache of resized position
        embeddings: the entries an evaluation during training filled (up to ``pe_cache_size``
        grids, about 80 MB each for YOLOS-S at 800 pixels) are never used again once the
        parameters are updated, and would hold their memory for the rest of the run.
        """
        if mode:
            self._pe_cache.clear()
        return super().train(mode)

    def position_embeddings(self, grid: Grid) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """
        Position embeddings of a sequence whose patches lie on ``grid`` (rows, cols).

        Returns:
            pos: (1, 1 + rows * cols + K, D) for ``[CLS]``, patches, ``[DET]``.
            mid: (depth - 1, 1, 1 + rows * cols + K, D), or None without mid-layer embeddings.
        """
        params = [p for p in (self.pos_embed, self.det_pos_embed, self.mid_pos_embed) if p is not None]
        records_grad = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        # jit tracing, torch.export and torch.compile must record the resize in their graph, and
        # may run on fake tensors that have no data pointer: no cache there.
        if records_grad or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return self._compute_position_embeddings(grid)
        # A parameter's data pointer and version change when it is moved, cast, loaded or updated.
        key = (tuple(grid), *((p.data_ptr(), p._version) for p in params))
        if key not in self._pe_cache:
            self._pe_cache[key] = self._compute_position_embeddings(grid)
            while len(self._pe_cache) > self.pe_cache_size:
                self._pe_cache.popitem(last=False)
        self._pe_cache.move_to_end(key)
        return self._pe_cache[key]

    def _compute_position_embeddings(self, grid: Grid):
        patch_pos = resize_patch_pos_embed(self.pos_embed[:, 1:], self.init_grid, grid)
        pos = torch.cat([self.pos_embed[:, :1], patch_pos, self.det_pos_embed], dim=1)
        if self.mid_pos_embed is None:
            return pos, None
        depth_1, _, num_tokens, dim = self.mid_pos_embed.shape
        mid = self.mid_pos_embed.reshape(depth_1, num_tokens, dim)
        mid_patch_pos = resize_patch_pos_embed(mid[:, 1 : num_tokens - self.num_det_tokens], self.mid_grid, grid)
        mid = torch.cat([mid[:, :1], mid_patch_pos, mid[:, num_tokens - self.num_det_tokens :]], dim=1)
        return pos, mid.unsqueeze(1)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """
        Args:
            images: (B, 3, H, W) normalised images; H and W are cut down to whole patches.

        Returns:
            (B, 1 + (H // p) * (W // p) + K, D) all tokens after the final LayerNorm.
        """
        return self._encode(images, num_outputs=None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """
        Args:
            images: (B, 3, H, W) normalised images.

        Returns:
            (B, K, D) the final ``[DET]`` token features.
        """
        # Nothing else of the last block's output is used: compute it for the [DET] tokens only.
        return self._encode(images, num_outputs=self.num_det_tokens)

    def _encode(self, images: torch.Tensor, num_outputs: Optional[int]) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, Q, D) final features of the last Q = num_outputs tokens (None: all)."""
        batch = images.shape[0]
        grid = patch_grid(images.shape[-2:], self.patch_size)
        pos, mid = self.position_embeddings(grid)
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), x, self.det_token.expand(batch, -1, -1)], dim=1)
        x = x + pos
        for i, block in enumerate(self.blocks):
            num_queries = num_outputs if i == self.depth - 1 else None
            if self.use_act_checkpoint and torch.is_grad_enabled():
                x = checkpoint(block, x, num_queries, use_reentrant=False)
            else:
                x = block(x, num_queries)
            if mid is not None and i < self.depth - 1:
                x = x + mid[i]
        return self.norm(x)
