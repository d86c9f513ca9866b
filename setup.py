from setuptools import find_packages, setup

setup(
    name="yolos_d2",
    version="0.1.0",
    description="YOLOS (You Only Look at One Sequence) as a Detectron2 project",
    packages=find_packages(include=("yolos_d2", "yolos_d2.*")),
    python_requires=">=3.9",
    # detectron2 and torch are installed beforehand (see README: they are not plain pip deps).
    install_requires=[
        "timm>=1.0",
        "scipy",
        "pycocotools",
        "faster-coco-eval>=1.8",
        "fvcore",
        "safetensors",
        "opencv-python-headless",
    ],
    entry_points={
        "console_scripts": [
            "yolos-train = yolos_d2.tools.train:console_main",
            "yolos-demo = yolos_d2.tools.demo:console_main",
            "yolos-convert = yolos_d2.tools.convert:console_main",
            "yolos-export = yolos_d2.tools.export:console_main",
            "yolos-det-token-stats = yolos_d2.tools.det_token_stats:console_main",
            "yolos-attention-maps = yolos_d2.tools.attention_maps:console_main",
            "yolos-model-info = yolos_d2.tools.model_info:console_main",
            "yolos-analyze = yolos_d2.tools.analyze:console_main",
            "yolos-sweep = yolos_d2.tools.sweep:console_main",
            "yolos-browse-data = yolos_d2.tools.browse_data:console_main",
            "yolos-submit = yolos_d2.tools.submit:console_main",
        ]
    },
    extras_require={
        "export": ["onnx", "onnxscript"],
        # Slurm jobs with requeue (yolos-submit).
        "slurm": ["submitit>=1.5"],
        "test": ["pytest", "hypothesis", "transformers>=4.40", "onnx", "onnxruntime", "onnxscript", "submitit>=1.5"],
    },
)
