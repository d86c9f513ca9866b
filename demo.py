#!/usr/bin/env python
"""
Draw a trained YOLOS's detections on images, folders of images or videos: the ``yolos-demo``
command (``yolos_d2/tools/demo.py``, which lists all options), kept here as detectron2 projects
keep their ``demo.py``::

    python demo.py --config-file configs/quickstart.py --input photo.jpg --output photo_pred.png \
        --weights output/quickstart/model_final.pth
"""
from yolos_d2.tools.demo import console_main

if __name__ == "__main__":
    console_main()
