"""The training step of YOLOS on detectron2's ``TrainerBase``."""
import logging
import time
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np
import torch
from detectron2.engine import TrainerBase
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import get_event_storage

from ..config import AMP_DTYPES
from ..modeling.criterion import NonFinitePredictionError

__all__ = ["YOLOSTrainer"]


class YOLOSTrainer(TrainerBase):
    """
    detectron2's ``SimpleTrainer``/``AMPTrainer`` step, plus what the original YOLOS training adds
    and what an exact resume needs:

    - optional autocast in float16 (with a ``GradScaler``) or bfloat16;
    - gradient-norm clipping (the original's ``--clip_max_norm 0.1``);
    - a data order and random state that depend only on (seed, iteration, rank): the data loader
      is built when training starts, before the log says so, from the first iteration to run (its
      augmentations are seeded per sample, see :func:`yolos_d2.data.build_train_loader`), and
      every step reseeds the random generators, so a resumed run sees the same images,
      augmentations and drop paths as an uninterrupted one, with any number of data-loader workers;
    - infinite or NaN predictions (found by the criterion before matching) or losses stop the run
      before the step is applied, with a ``FloatingPointError`` naming the iteration, the loss
      terms (those of the last iteration for predictions) and the image ids of the batch.

    Its state (saved by a checkpointer given ``trainer=``) holds the iteration, the hooks' state,
    the optimizer, the grad scaler, the data seed and torch's intra-op thread count, which changes
    the float rounding of the results (a resume with another count is logged).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        build_data_loader: Callable[[int, int], Iterable[List[Dict]]],
        optimizer: torch.optim.Optimizer,
        *,
        amp_dtype: Optional[str] = None,
        clip_grad_norm: float = 0.1,
        seed: int = -1,
    ):
        """
        Args:
            model: returns a dict of losses for a batch (a list of dataset dicts) in training mode.
            build_data_loader: ``(start_iter, seed) -> iterable of batches``, where the batches
                start ``start_iter`` batches into the order that ``seed`` defines.
            optimizer: steps the model's parameters.
            amp_dtype: None for full precision, "float16" or "bfloat16" for autocast.
            clip_grad_norm: max total L2 norm of the gradients; 0 disables clipping.
            seed: seed of the data order and augmentations; negative draws one, shared by all
                workers. A resumed run keeps the seed of its checkpoint.
        """
        super().__init__()
        if amp_dtype is not None and amp_dtype not in AMP_DTYPES:
            raise ValueError(f"train.amp.dtype must be one of {sorted(AMP_DTYPES)} or None, got {amp_dtype!r}")
        self.model = model
        self.build_data_loader = build_data_loader
        self.optimizer = optimizer
        self.amp_dtype = AMP_DTYPES.get(amp_dtype)
        self.clip_grad_norm = clip_grad_norm
        self.seed = seed if seed >= 0 else comm.shared_random_seed()
        self.device_type = next(model.parameters()).device.type
        self.grad_scaler = torch.amp.GradScaler(self.device_type, enabled=self.amp_dtype == torch.float16)
        self._data_iter = None
        self._last_losses = None  # (iteration, {name: value}) of the last finite losses

    def train(self, start_iter: int, max_iter: int):
        # Built here, once the start iteration and the seed of a resumed run are known, and before
        # detectron2 logs "Starting training": building it may read or generate the dataset.
        self._data_iter = iter(self.build_data_loader(start_iter, self.seed))
        super().train(start_iter, max_iter)

    def run_step(self):
        assert self.model.training, "YOLOSTrainer: the model was switched to eval mode!"
        start = time.perf_counter()
        data = next(self._data_iter)
        data_time = time.perf_counter() - start
        # One seed per (iteration, rank), set after the data loader (which seeds each sample's
        # augmentation itself, in this process when it has no workers): a resumed run draws the
        # same drop paths, with any number of data-loader workers.
        seed_all_rng(int(np.random.SeedSequence([self.seed, self.iter, comm.get_rank()]).generate_state(1)[0]))

        with torch.autocast(self.device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            try:
                loss_dict = self.model(data)
            except NonFinitePredictionError as e:
                what = f"Predictions became infinite or NaN at iteration {self.iter} ({e})"
                raise self._non_finite_error(what, data) from e
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time, data)
        if self.clip_grad_norm > 0:
            self.grad_scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def _write_metrics(self, loss_dict: Dict[str, torch.Tensor], data_time: float, data: List[Dict]):
        """Log the losses averaged over workers (and the slowest worker's data time); stop on NaN/inf."""
        # The loss terms in one copy to the host: on a GPU, each copy is a synchronisation.
        values = torch.stack([v.detach().float() for v in loss_dict.values()]).tolist()
        metrics = dict(zip(loss_dict, values))
        if not np.isfinite(sum(metrics.values())):
            raise self._non_finite_error(f"Loss became infinite or NaN at iteration {self.iter}: {metrics}", data)
        self._last_losses = self.iter, metrics
        all_metrics = comm.gather({"data_time": data_time, **metrics})
        if comm.is_main_process():
            storage = get_event_storage()
            storage.put_scalar("data_time", max(m.pop("data_time") for m in all_metrics))
            means = {k: float(np.mean([m[k] for m in all_metrics])) for k in all_metrics[0]}
            storage.put_scalar("total_loss", sum(means.values()))
            storage.put_scalars(**means)
            if self.grad_scaler.is_enabled():
                storage.put_scalar("grad_scale", self.grad_scaler.get_scale())

    def _non_finite_error(self, what: str, data: List[Dict]) -> FloatingPointError:
        """``what`` went wrong on the batch ``data``: add the last finite losses and the batch's image ids."""
        last = "no loss computed yet in this run"
        if self._last_losses is not None:
            last = "losses of iteration {}: {}".format(*self._last_losses)
        image_ids = [d.get("image_id") for d in data]
        return FloatingPointError(f"{what}; {last}; image ids of the batch on rank {comm.get_rank()}: {image_ids}")

    def state_dict(self):
        state = super().state_dict()
        state.update(
            optimizer=self.optimizer.state_dict(),
            grad_scaler=self.grad_scaler.state_dict(),
            seed=self.seed,
            num_threads=torch.get_num_threads(),
        )
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.grad_scaler.load_state_dict(state["grad_scaler"])
        logger = logging.getLogger(__name__)
        if state["seed"] != self.seed:
            logger.info(f"Resuming with the checkpoint's data seed {state['seed']}")
        self.seed = state["seed"]
        recorded_threads = state.get("num_threads")  # not in checkpoints of older versions
        if recorded_threads is not None and recorded_threads != torch.get_num_threads():
            logger.warning(
                f"The checkpoint was computed with {recorded_threads} intra-op threads, this process runs "
                f"{torch.get_num_threads()}: the results differ from those of the run it continues in float rounding"
            )
