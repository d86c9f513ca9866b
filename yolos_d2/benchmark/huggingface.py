"""
transformers' ``YolosForObjectDetection`` as a peer of a yolos_d2 config's model, for comparisons
of outputs and speed (transformers is needed only here).
"""
import torch

__all__ = ["huggingface_config", "random_huggingface_model"]


def huggingface_config(backbone_cfg, num_labels: int = 91):
    """
    The transformers ``YolosConfig`` of the model a ``ViTWithDetTokens`` config describes (the
    LazyConfig node ``model.detector.backbone``), e.g. to build a ``YolosForObjectDetection`` peer.
    transformers has one image size for both position embeddings, so ``mid_pe_size`` must be None
    or equal ``init_pe_size``.
    """
    from transformers import YolosConfig

    if backbone_cfg.mid_pe_size is not None and tuple(backbone_cfg.mid_pe_size) != tuple(backbone_cfg.init_pe_size):
        raise ValueError(
            f"transformers' YOLOS needs mid_pe_size == init_pe_size, got {backbone_cfg.mid_pe_size} "
            f"and {backbone_cfg.init_pe_size}"
        )
    return YolosConfig(
        hidden_size=backbone_cfg.embed_dim,
        num_hidden_layers=backbone_cfg.depth,
        num_attention_heads=backbone_cfg.num_heads,
        intermediate_size=int(backbone_cfg.embed_dim * backbone_cfg.mlp_ratio),
        image_size=list(backbone_cfg.init_pe_size),
        patch_size=backbone_cfg.patch_size,
        num_detection_tokens=backbone_cfg.num_det_tokens,
        use_mid_position_embeddings=backbone_cfg.mid_pe_size is not None,
        layer_norm_eps=backbone_cfg.norm_eps,
        qkv_bias=backbone_cfg.qkv_bias,
        num_labels=num_labels,
    )


def random_huggingface_model(backbone_cfg, seed: int = 0):
    """
    A ``YolosForObjectDetection`` of :func:`huggingface_config` (91 labels) with random weights
    drawn after ``torch.manual_seed(seed)``, in eval mode. Its position embeddings, ``[CLS]`` and
    ``[DET]`` tokens, which transformers starts at zero, are drawn too (std 0.02, as trained ones
    are not zero), so that a mix-up between them changes the outputs.
    """
    from transformers import YolosForObjectDetection

    torch.manual_seed(seed)
    model = YolosForObjectDetection(huggingface_config(backbone_cfg)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "position_embeddings" in name or "tokens" in name or "cls_token" in name:
                param.normal_(std=0.02)
    return model
