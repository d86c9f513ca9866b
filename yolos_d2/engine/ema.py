"""
An exponential moving average (EMA) of a model's weights, kept beside the weights being trained,
and the hook that updates it in detectron2's training loop.
"""
import contextlib
import logging
import math
from typing import Dict, Iterator, Optional

import torch
from detectron2.engine import HookBase

__all__ = ["EMAHook", "WeightEMA", "unwrap_model"]

logger = logging.getLogger(__name__)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module a ``DistributedDataParallel`` wraps, or ``model`` itself."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


class WeightEMA:
    """
    After update ``t`` (1, 2, ...) each floating-point tensor of the model's state dict
    (parameters and buffers) has the average ``ema = d_t * ema + (1 - d_t) * weight``, starting
    from the weights at :meth:`reset`; other tensors (integer buffers) are copied. The decay
    ``d_t = decay * (1 - exp(-t / warmup_iters))`` grows from 0 to ``decay`` over the first few
    ``warmup_iters`` updates, so that the average is not held back by the first, random weights
    (``warmup_iters=0``: ``d_t = decay`` throughout).

    The average is kept in the dtype and on the device of each tensor (under AMP, the float32
    master weights). Under DDP every process updates its own copy from identical weights, so the
    copies stay identical without communication.
    """

    def __init__(self, model: torch.nn.Module, decay: float, warmup_iters: int = 0):
        """
        Args:
            model: the model trained (or its DDP wrapper).
            decay: in [0, 1); the weight of the average at each update once warmed up.
            warmup_iters: updates over which the decay approaches ``decay`` (time constant); >= 0.
        """
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if warmup_iters < 0:
            raise ValueError(f"EMA warmup_iters must be >= 0, got {warmup_iters}")
        self.model = unwrap_model(model)
        self.decay = decay
        self.warmup_iters = warmup_iters
        self.num_updates = 0
        self.weights: Optional[Dict[str, torch.Tensor]] = None

    def decay_at(self, update: int) -> float:
        """``d_t`` of update ``t`` (see the class description)."""
        if self.warmup_iters == 0:
            return self.decay
        return self.decay * (1 - math.exp(-update / self.warmup_iters))

    def reset(self) -> None:
        """Start the average from the model's current weights."""
        self.weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.num_updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights into the average (after an optimizer step)."""
        if self.weights is None:
            self.reset()
        self.num_updates += 1
        averages, values = [], []
        for name, value in self.model.state_dict().items():
            average = self.weights[name]
            if average.is_floating_point():
                averages.append(average)
                values.append(value.detach())
            else:
                average.copy_(value)
        # One call over all the tensors: a ViT has hundreds, each a kernel launch of its own on a GPU.
        torch._foreach_lerp_(averages, values, 1 - self.decay_at(self.num_updates))

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights; its own are restored after."""
        if self.weights is None:
            raise RuntimeError("The EMA has no weights yet: reset() or update() it first")
        trained = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.weights)
        try:
            yield
        finally:
            self.model.load_state_dict(trained)

    def state_dict(self) -> Dict:
        """The averaged weights (under "weights", keyed as the model's state dict) and the update count."""
        return {"weights": self.weights, "num_updates": self.num_updates}

    def load_state_dict(self, state: Dict) -> None:
        model_state = self.model.state_dict()
        weights = state["weights"]
        if weights is not None and set(weights) != set(model_state):
            raise ValueError("The checkpoint's EMA weights do not have the model's tensors")
        self.weights = None if weights is None else {k: weights[k].to(model_state[k]).clone() for k in model_state}
        self.num_updates = state["num_updates"]


class EMAHook(HookBase):
    """
    Keeps a :class:`WeightEMA` of the trainer's model: started from the weights training starts
    with (unless a resumed checkpoint restored it) and updated after every step. Register it
    before the hooks that checkpoint or evaluate after a step, so that they see this step's
    average; the checkpointer saves it when given it as a checkpointable (``ema=``). A run
    resumed from a checkpoint without an average starts one, with a warning.
    """

    def __init__(self, ema: WeightEMA):
        self.ema = ema

    def before_train(self):
        if self.ema.weights is not None:
            logger.info(f"EMA of the weights resumed after {self.ema.num_updates} updates")
            return
        if self.trainer.start_iter > 0:
            logger.warning(
                "The checkpoint resumed holds no EMA of the weights (its run had train.ema.enabled=False): the "
                f"average starts from the weights of iteration {self.trainer.start_iter}, not from those the run "
                "started with"
            )
        self.ema.reset()

    def after_step(self):
        self.ema.update()
