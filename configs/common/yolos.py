"""Everything a YOLOS variant on COCO starts from; the variant files state what differs."""
from .coco_data import dataloader, epochs_to_iters
from .optim import lr_multiplier, optimizer
from .train import train
from .yolos_model import model

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "set_schedule", "train"]


def set_schedule(*, lr: float, epochs: int, ims_per_gpu: int, num_gpus: int = 8) -> None:
    """
    Set the batch, learning rate and length of the COCO fine-tuning: ``epochs`` over COCO
    train2017 at ``num_gpus`` x ``ims_per_gpu`` images, with a checkpoint and an evaluation
    every epoch.
    """
    dataloader.train.total_batch_size = ims_per_gpu * num_gpus
    optimizer.lr = lr
    train.max_iter = epochs_to_iters(epochs, dataloader.train.total_batch_size)
    train.checkpointer.period = train.eval_period = epochs_to_iters(1, dataloader.train.total_batch_size)
