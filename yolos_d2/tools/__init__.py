"""
yolos_d2's command-line tools. Each runs as ``python -m yolos_d2.tools.<name>`` and as the
console script installed with the package:

- ``train`` (``yolos-train``): train and evaluate, as detectron2's ``lazyconfig_train_net.py``;
- ``demo`` (``yolos-demo``): draw a trained model's detections on images, folders or videos;
- ``convert`` (``yolos-convert``): ViT releases, original YOLOS and Hugging Face weights to yolos_d2's, and back;
- ``export`` (``yolos-export``): the detector as ONNX or TorchScript;
- ``det_token_stats`` (``yolos-det-token-stats``): what each ``[DET]`` token predicts over a dataset;
- ``attention_maps`` (``yolos-attention-maps``): where chosen ``[DET]`` tokens attend in an image;
- ``model_info`` (``yolos-model-info``): size and FLOPs of the configs' models;
- ``sweep`` (``yolos-sweep``): AP and milliseconds per image of a trained model at several input sizes and precisions;
- ``browse_data`` (``yolos-browse-data``): a dataset's images with their ground-truth boxes, raw or augmented;
- ``analyze`` (``yolos-analyze``): where a model fails: per-class AP, precision-recall curves, error kinds, an HTML page;
- ``submit`` (``yolos-submit``): training or evaluation as a Slurm job that requeues itself.

A tool parses its arguments, reads and writes its files and leaves the work to yolos_d2's
packages (e.g. the predictions and their analyses to :mod:`yolos_d2.inference`, the figures to
:mod:`yolos_d2.visualization`). :mod:`.cli` gives the tools the same arguments
(``--config-file``, ``KEY=VALUE`` overrides anywhere, ``--weights``, ``--device``) and
:mod:`.outputs` keeps their outputs off their inputs. Nothing is imported here, so that importing
one tool does not load the others' dependencies.
"""
