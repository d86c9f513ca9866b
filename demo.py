#!/usr/bin/env python
"""
Draw a trained YOLOS's detections on images, folders of images or videos (see
``yolos_d2/tools/demo.py`` for all options)::

    python demo.py --config-file configs/quickstart.py --input photo.jpg --output photo_pred.png \
        train.init_checkpoint=output/quickstart/model_final.pth
    python demo.py --config-file configs/yolos_s.py --input images/ --output drawn/ train.init_checkpoint=yolos_s_d2.pth
    python demo.py --config-file configs/yolos_s.py --input clip.mp4 --output clip_pred.mp4 train.init_checkpoint=...
"""
import sys

from detectron2.utils.logger import setup_logger

from yolos_d2.tools.demo import main

if __name__ == "__main__":
    setup_logger(name="yolos_d2")
    sys.exit(main())
