"""
Everything a YOLOS variant on COCO starts from: the model, the COCO data and the original's
recipe, stated in epochs (YOLOS-S's: 150 epochs at 8 GPUs x 1 image, lr 2.5e-5). The variant
files state what differs.

``train.max_iter``, ``train.eval_period`` and ``train.checkpointer.period`` follow from
``train.schedule`` and the final ``dataloader.train.total_batch_size``, after every override;
an explicit override of one of them wins. The learning rate follows the original's per-epoch
cosine, stepped after each epoch.
"""
from detectron2.config import LazyCall as L

from yolos_d2.engine import EpochCosine, register_schedule_resolvers

from .coco_data import COCO_TRAIN_IMAGES, dataloader
from .optim import optimizer
from .train import train
from .yolos_model import model

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

# The interpolations ${yolos_d2.iters_per_epoch:...} and ${yolos_d2.epochs_to_iters:...} below
# call yolos_d2.engine's iters_per_epoch and epochs_to_iters, when the value is read.
register_schedule_resolvers()

train.schedule = dict(
    epochs=150,
    # Images of one epoch.
    epoch_size=COCO_TRAIN_IMAGES,
    # The paper's images per iteration. A run at another total batch warns once; with
    # scale_lr=True, optimizer.lr is scaled linearly to it (the original does not scale).
    reference_batch_size=8,
    scale_lr=False,
)
_ITERS_PER_EPOCH = "${yolos_d2.iters_per_epoch:${train.schedule.epoch_size},${dataloader.train.total_batch_size}}"
train.max_iter = (
    "${yolos_d2.epochs_to_iters:${train.schedule.epochs},${train.schedule.epoch_size},"
    "${dataloader.train.total_batch_size}}"
)
train.eval_period = _ITERS_PER_EPOCH
train.checkpointer.period = _ITERS_PER_EPOCH

# The original's --min-lr; its --warmup-epochs default, 0 (EpochCosine's warmup_epochs, warmup_lr).
lr_multiplier = L(EpochCosine)(
    base_lr="${optimizer.lr}",
    min_lr=1e-7,
    epochs="${train.schedule.epochs}",
    iters_per_epoch=_ITERS_PER_EPOCH,
    max_iter="${train.max_iter}",
)
