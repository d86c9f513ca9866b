#!/usr/bin/env python
"""
Train and evaluate YOLOS: the ``yolos-train`` command (``yolos_d2/tools/train.py``, which lists
all options), kept here as detectron2 projects keep their ``train_net.py``::

    python train_net.py --config-file configs/yolos_s.py --num-gpus 8
    python train_net.py --config-file configs/yolos_s.py --eval-only --weights model.pth
    python train_net.py --config-file configs/quickstart.py    # a few minutes on a CPU
"""
from yolos_d2.tools.train import console_main

if __name__ == "__main__":
    console_main()
