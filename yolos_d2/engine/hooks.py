"""Hooks that yolos_d2 adds to detectron2's training loop."""
import contextlib
import logging
import os
from typing import Callable, ContextManager, Dict

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import HookBase, hooks
from detectron2.utils import comm

from ..data import read_image
from ..visualization import draw_predictions, save_image
from .ema import unwrap_model

__all__ = ["PeriodicCheckpointer", "SavePredictionImages"]


class PeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """
    detectron2's hook, which saves a checkpoint every ``period`` iterations and ``model_final``
    after the last one, given a :class:`~yolos_d2.checkpoint.YOLOSCheckpointer`. Before training
    it also:

    - removes the temporary files of saves that a killed run left in the folder;
    - in a run resumed with no iteration left, saves ``model_final`` unless the last checkpoint is
      that already: the run it continues was killed while writing it, after its last step.
    """

    def before_train(self):
        super().before_train()
        self.checkpointer.remove_unfinished_saves()
        final = f"{self.file_prefix}_final"
        last = os.path.basename(self.checkpointer.get_checkpoint_file()) if self.checkpointer.has_checkpoint() else ""
        if self.trainer.start_iter >= self.max_iter and last != f"{final}.pth":
            self.checkpointer.save(final, iteration=self.trainer.start_iter - 1)


class SavePredictionImages(HookBase):
    """
    When training ends, draw the model's predictions on the first images of a dataset with
    detectron2's ``Visualizer`` and save them as PNGs (main process only). The log gives the
    score threshold, how many predictions reached it and the highest score: after a short run,
    drawings without a box mean that no prediction scored high enough yet.
    """

    def __init__(
        self,
        dataset_name: str,
        mapper: Callable[[Dict], Dict],
        output_dir: str,
        num_images: int = 8,
        score_threshold: float = 0.5,
        scale: float = 1.0,
        weights: Callable[[], ContextManager] = contextlib.nullcontext,
    ):
        """
        Args:
            dataset_name: a registered dataset; its metadata names the classes.
            mapper: the test-time mapper, turning a dataset dict into the model's input.
            output_dir: folder the images ``<image id>.png`` are written to.
            num_images: how many images of the dataset to draw.
            score_threshold: predictions scoring below it are not drawn.
            scale: the drawings' size relative to the images (enlarge small images so that
                the labels stay readable).
            weights: a context in which the model holds the weights to draw with, e.g. an
                EMA's :meth:`~yolos_d2.engine.WeightEMA.applied`; the trained ones by default.
        """
        self.dataset_name = dataset_name
        self.mapper = mapper
        self.output_dir = output_dir
        self.num_images = num_images
        self.score_threshold = score_threshold
        self.scale = scale
        self.weights = weights

    def after_train(self):
        if not comm.is_main_process() or self.trainer.iter + 1 < self.trainer.max_iter:
            return
        with self.weights():
            self._draw(unwrap_model(self.trainer.model))

    def _draw(self, model: torch.nn.Module) -> None:
        metadata = MetadataCatalog.get(self.dataset_name)
        os.makedirs(self.output_dir, exist_ok=True)
        was_training = model.training
        model.eval()
        drawn_boxes, best_score = 0, 0.0
        dataset_dicts = DatasetCatalog.get(self.dataset_name)[: self.num_images]
        for dataset_dict in dataset_dicts:
            with torch.no_grad():
                instances = model([self.mapper(dict(dataset_dict))])[0]["instances"].to("cpu")
            drawn_boxes += int((instances.scores >= self.score_threshold).sum())
            best_score = max(best_score, instances.scores.max().item())
            image = read_image(dataset_dict["file_name"], format="RGB")
            drawn = draw_predictions(image, instances, metadata, self.score_threshold, self.scale)
            name = os.path.splitext(os.path.basename(dataset_dict["file_name"]))[0]
            save_image(drawn, os.path.join(self.output_dir, f"{name}.png"))
        model.train(was_training)
        logging.getLogger(__name__).info(
            f"Saved predictions on {len(dataset_dicts)} images to {self.output_dir}: {drawn_boxes} boxes scoring "
            f">= {self.score_threshold} drawn (highest score {best_score:.3f})"
        )
