"""Training-loop settings shared by the variants (detectron2's ``train`` dict)."""
import torch

train = dict(
    output_dir="./output",
    # A yolos_d2 checkpoint: a converted DeiT ImageNet model to fine-tune, or a trained YOLOS
    # (see README, "Weights"); empty trains from random initialisation.
    init_checkpoint="",
    # False loads a checkpoint that lacks some of the model's tensors, or holds others, on purpose
    # (logging them); by default that is an error naming them.
    init_checkpoint_strict=True,
    max_iter=0,
    # Autocast dtype: None (full precision), "float16" (CUDA), "bfloat16", or "auto": bfloat16 where
    # train.device computes it natively (a CPU with AVX512-BF16 or AMX, a GPU from Ampere on), else
    # full precision. A CPU that would emulate the dtype asked for is refused at start.
    amp=dict(dtype=None),
    # The original's --clip_max_norm; 0 disables clipping.
    clip_grad_norm=0.1,
    # An exponential moving average of the weights, updated after each step, used for evaluation
    # and saved beside the trained weights (see yolos_d2.engine.WeightEMA): the decay reaches
    # `decay` over the first few `warmup_iters` steps. decay and warmup_iters need enabled=True.
    ema=dict(enabled=False, decay=0.9998, warmup_iters=2000),
    # Evaluations and predictions (--eval-only, yolos-demo, YOLOSPredictor, yolos-export, and the
    # evaluations of a run with ema.enabled) use a checkpoint's EMA of the weights where it has
    # one; False: its trained weights.
    eval_with_ema=True,
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=5000,
    log_period=20,
    # Seeds the data order and augmentations (and, per worker, everything else); -1 draws one.
    seed=-1,
    device="cuda" if torch.cuda.is_available() else "cpu",
    # True runs the float32 matrix products of each process in TF32 (a 10-bit mantissa), faster on
    # NVIDIA GPUs from Ampere on; for a CUDA device only (else the command stops at start).
    allow_tf32=False,
    # torch's intra-op threads per process: "auto" takes the CPUs this process may use less those
    # other processes keep busy (yolos_d2.engine.threads; OMP_NUM_THREADS, if set, wins), or a number.
    num_threads="auto",
)
