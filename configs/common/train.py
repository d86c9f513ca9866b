"""Training-loop settings shared by the variants (detectron2's ``train`` dict)."""
train = dict(
    output_dir="./output",
    # A yolos_d2 checkpoint: a converted DeiT ImageNet model to fine-tune, or a trained YOLOS
    # (see README, "Weights"); empty trains from random initialisation.
    init_checkpoint="",
    max_iter=0,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=5000,
    log_period=20,
    device="cuda",
)
