"""
transformers' ``YolosForObjectDetection`` as a peer of a yolos_d2 config's model, for comparisons
of outputs and speed; its config is the one ``yolos-convert --to hf`` writes
(:func:`~yolos_d2.checkpoint.huggingface.huggingface_config`).
"""
import torch

from yolos_d2.checkpoint.huggingface import huggingface_config

__all__ = ["random_huggingface_model"]


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
