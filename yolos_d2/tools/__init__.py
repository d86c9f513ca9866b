"""
Command-line tools that look at a trained YOLOS (each runs with ``python -m yolos_d2.tools.<name>``):

- ``demo``: draw its detections on images, folders of images or videos;
- ``det_token_stats``: what each ``[DET]`` token predicts over a dataset, as JSON and figures;
- ``attention_maps``: where chosen ``[DET]`` tokens attend in an image, per head.

Nothing is imported here, so that importing one tool does not load the others' dependencies.
"""
