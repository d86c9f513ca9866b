"""
Draw a trained YOLOS's detections (boxes, class names, scores) on images or videos::

    yolos-demo --config-file configs/quickstart.py --input photo.jpg --output photo_pred.png \\
        --weights output/quickstart/model_final.pth
    yolos-demo --config-file CONFIG --input images/ 'more/*.jpg' --output drawn/ --weights WEIGHTS
    yolos-demo --config-file CONFIG --input clip.mp4 --output clip_pred.mp4 --weights WEIGHTS

(also ``python -m yolos_d2.tools.demo`` or ``python demo.py``).

``--input`` takes image files, folders (their images), glob patterns (quoted) and video files; a
file named twice is drawn once. ``--output`` is the file to write when there is one input and it
has an extension, else a folder (created) receiving a file of the same name per input; when two
inputs have the same name, each keeps its path relative to the inputs' common folder
(``a/x.png``, ``b/x.png``). Drawings of images are written in the format of their extension
(any PIL writes), those of videos as MPEG-4 (``.mp4``, ``.m4v``, ``.mov``, ``.mkv`` or ``.avi``).
An ``--output`` that is or lies inside an ``--input`` folder, a write that would replace an input,
the config file or the weights, an output whose extension names no such format and a setting out
of its range are refused before anything is done (exit status 2). Each drawing is written
atomically: a write that fails (e.g. a full disk) leaves no partial file and is reported, naming it.

Images are read at any bit depth (16-bit ones scaled to 8 bits), resized by the config's test
mapper, then scaled down to at most ``--max-size`` pixels on their longer side, and the class
names come from the config's test dataset. Predictions scoring at least ``--confidence-threshold``
are drawn; the log gives their number per image. Consecutive images, and the frames of a video,
are predicted in lists of ``--batch-size`` (see :class:`~yolos_d2.inference.YOLOSPredictor`: an
image's detections do not depend on the others in its list). ``--scale`` sets the size of the
drawings; one of more than :data:`~yolos_d2.visualization.MAX_DRAWING_PIXELS` pixels is refused.
An input that cannot be read or drawn, or whose drawing cannot be written, is reported and
skipped; the exit status is then 1.
"""
import argparse
import glob
import logging
import os
import time
from typing import Iterator, List, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ..config import prepare_config
from ..data import read_image
from ..inference import YOLOSPredictor
from ..utils.file_io import create_atomic
from ..visualization import MAX_DRAWING_PIXELS, check_drawing_size, draw_predictions, image_format, save_image
from . import cli
from .outputs import check_folder_output, check_outputs, config_inputs

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".avi", ".m4v", ".mkv", ".mov", ".mp4", ".webm")
# The containers OpenCV writes the MPEG-4 (mp4v) drawings of videos in.
VIDEO_OUTPUT_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi")


def expand_inputs(patterns: Sequence[str]) -> List[str]:
    """
    The files named by ``--input``: a folder gives its images, a glob pattern its matches (both
    sorted), anything else is taken as a file name, whether it exists or not. A file named more
    than once (also through a link) is kept the first time and logged.
    """
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            names = sorted(n for n in os.listdir(pattern) if n.lower().endswith(IMAGE_EXTENSIONS))
            paths += [os.path.join(pattern, n) for n in names]
        elif any(c in pattern for c in "*?["):
            paths += sorted(glob.glob(pattern))
        else:
            paths.append(pattern)
    unique = {}  # real path -> the path as first given
    for path in paths:
        real = os.path.realpath(path)
        if real in unique:
            logger.info(f"{path} is given more than once; it is drawn once")
        else:
            unique[real] = path
    return list(unique.values())


def output_paths(output: str, input_paths: Sequence[str]) -> List[str]:
    """
    Where the drawing of each of ``input_paths`` (distinct files) goes: ``output`` itself if
    there is one input and ``output`` is a file name with an extension; else a file in the folder
    ``output`` named as its input or, if two inputs have the same name, by the input's path
    relative to the inputs' common folder. The paths returned are distinct.
    """
    if len(input_paths) == 1 and os.path.splitext(output)[1] and not os.path.isdir(output):
        return [output]
    names = [os.path.basename(path) for path in input_paths]
    if len(set(names)) < len(names):
        absolute = [os.path.abspath(path) for path in input_paths]
        root = os.path.commonpath([os.path.dirname(path) for path in absolute])
        names = [os.path.relpath(path, root) for path in absolute]
    return [os.path.join(output, name) for name in names]


def is_video(path: str) -> bool:
    """Whether ``path`` names a video, by its extension."""
    return path.lower().endswith(VIDEO_EXTENSIONS)


def check_output_formats(inputs: Sequence[Tuple[str, str]]) -> None:
    """
    Raise ValueError naming the first output of ``inputs`` ((path, output) pairs) whose extension
    names no format its drawing can be written in: an image format PIL writes for an image, one
    of :data:`VIDEO_OUTPUT_EXTENSIONS` for a video.
    """
    for path, output in inputs:
        if not is_video(path):
            image_format(output)
        elif not output.lower().endswith(VIDEO_OUTPUT_EXTENSIONS):
            raise ValueError(
                f"Cannot write the drawing of the video {path} to {output}: videos are drawn as MPEG-4 "
                f"({', '.join(VIDEO_OUTPUT_EXTENSIONS)})"
            )


def input_batches(inputs: Sequence[Tuple[str, str]], batch_size: int) -> Iterator[List[Tuple[str, str]]]:
    """
    ``inputs`` ((path, output) pairs) in order: runs of consecutive images in lists of at most
    ``batch_size``, each video alone.
    """
    images: List[Tuple[str, str]] = []
    for path, output in inputs:
        if is_video(path):
            if images:
                yield images
                images = []
            yield [(path, output)]
        else:
            images.append((path, output))
            if len(images) == batch_size:
                yield images
                images = []
    if images:
        yield images


def draw_images(
    predictor: YOLOSPredictor, inputs: Sequence[Tuple[str, str]], threshold: float, scale: float
) -> List[str]:
    """
    Predict on the image files of ``inputs`` ((path, output) pairs) in one list and write the
    drawing of each to its output (atomically). Returns the paths skipped (and logged) because
    they could not be read, their drawing would be too large or could not be written.
    """
    images, skipped = {}, []
    for path, output in inputs:
        try:
            image = read_image(path, format=predictor.input_format)
            check_drawing_size(image.shape[0], image.shape[1], scale)
        except (OSError, ValueError) as e:
            logger.warning(f"Skipped {path}: {e}")
            skipped.append(path)
        else:
            images[path, output] = image
    if not images:
        return skipped
    start = time.perf_counter()
    predictions = predictor(list(images.values()))
    seconds = time.perf_counter() - start
    logger.info(f"Predicted a list of {len(images)} in {seconds:.3f} s ({seconds / len(images):.3f} s per image)")
    for ((path, output), image), instances in zip(images.items(), predictions):
        detections = int((instances.scores >= threshold).sum())
        logger.info(f"{path}: {detections} detections scoring >= {threshold}")
        drawn = draw_predictions(image, instances, predictor.metadata, threshold, scale, predictor.input_format)
        try:
            save_image(drawn, output)
        except OSError as e:
            logger.warning(f"Skipped {path}: {e}")
            skipped.append(path)
    return skipped


def read_frames(video: cv2.VideoCapture, count: int) -> List[np.ndarray]:
    """The next ``count`` frames of ``video`` (fewer at its end), (H, W, 3) uint8 BGR as OpenCV decodes them."""
    frames = []
    while len(frames) < count:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame)
    return frames


def draw_video(
    predictor: YOLOSPredictor, path: str, output: str, threshold: float, scale: float, batch_size: int
) -> None:
    """
    Predict on every frame of the video ``path``, in lists of ``batch_size`` frames, and write the
    drawings to ``output`` (MPEG-4 codec, atomically). Raises OSError if ``path`` cannot be read,
    :class:`~yolos_d2.utils.file_io.WriteError` if ``output`` cannot be written, ValueError if
    the drawings would be too large.
    """
    video = cv2.VideoCapture(path)
    try:
        if not video.isOpened():
            raise OSError(f"cannot open the video {path!r}")
        first = read_frames(video, batch_size)
        if not first:
            raise OSError(f"no frame of the video {path!r} could be read")
        check_drawing_size(first[0].shape[0], first[0].shape[1], scale)
        fps = video.get(cv2.CAP_PROP_FPS) or 25.0
        total = int(video.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        with tqdm(total=total, desc=path, unit="frame") as progress:
            num_frames, num_detections, seconds = create_atomic(
                output, lambda tmp: _draw_frames(predictor, video, first, tmp, threshold, scale, fps, progress)
            )
    finally:
        video.release()
    logger.info(
        f"{path}: {num_frames} frames, {num_detections} detections scoring >= {threshold}, in {seconds:.1f} s "
        f"({seconds / num_frames:.3f} s per frame)"
    )


def _draw_frames(
    predictor: YOLOSPredictor,
    video: cv2.VideoCapture,
    first: List[np.ndarray],
    output: str,
    threshold: float,
    scale: float,
    fps: float,
    progress: tqdm,
) -> Tuple[int, int, float]:
    """
    Draw the frames ``first``, then the rest of ``video`` in lists of as many frames, into the
    video file ``output``; returns (frames, detections drawn, seconds of prediction).
    """
    writer = None
    num_frames, num_detections, seconds = 0, 0, 0.0
    frames = first
    try:
        while frames:
            if predictor.input_format == "RGB":
                frames = [np.ascontiguousarray(frame[:, :, ::-1]) for frame in frames]
            start = time.perf_counter()
            predictions = predictor(frames)
            seconds += time.perf_counter() - start
            for image, instances in zip(frames, predictions):
                num_detections += int((instances.scores >= threshold).sum())
                drawn = draw_predictions(image, instances, predictor.metadata, threshold, scale, predictor.input_format)
                if writer is None:
                    size = (drawn.shape[1], drawn.shape[0])
                    writer = cv2.VideoWriter(output, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                    if not writer.isOpened():
                        raise OSError("OpenCV cannot open an MPEG-4 (mp4v) video there")
                writer.write(np.ascontiguousarray(drawn[:, :, ::-1]))
            num_frames += len(frames)
            progress.update(len(frames))
            frames = read_frames(video, len(first))
    finally:
        if writer is not None:
            writer.release()
    return num_frames, num_detections, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--input", nargs="+", required=True, help="images, folders, quoted glob patterns or videos")
    parser.add_argument("--output", required=True, help="the output file for a single input, else a folder")
    parser.add_argument(
        "--confidence-threshold", type=cli.fraction, default=0.5, help="draw predictions scoring at least it (0 to 1)"
    )
    cli.add_scale_argument(parser, MAX_DRAWING_PIXELS)
    cli.add_batch_size_argument(parser)
    cli.add_max_size_argument(parser)
    cli.add_precision_argument(parser)
    args = cli.parse_args(parser, argv)

    paths = expand_inputs(args.input)
    if not paths:
        parser.error(f"--input {' '.join(args.input)} matched no files")
    inputs = list(zip(paths, output_paths(args.output, paths)))
    input_folders = [folder for folder in args.input if os.path.isdir(folder)]
    with cli.usage_errors(parser):  # a config mistake, an output that cannot or must not be written
        cfg = prepare_config(args.config_file, args.opts, args.weights, args.device)
        check_output_formats(inputs)
        outputs = [output for _, output in inputs]
        if outputs != [args.output]:
            check_folder_output(args.output)
        check_outputs([args.output, *outputs], [*paths, *config_inputs(args.config_file, cfg)], input_folders)
        predictor = YOLOSPredictor(cfg, max_size=args.max_size, precision=args.precision)

    skipped = []
    with tqdm(total=len(paths), disable=len(paths) == 1, unit="input") as progress:
        for batch in input_batches(inputs, args.batch_size):
            (path, output), *_ = batch
            if is_video(path):
                try:
                    draw_video(predictor, path, output, args.confidence_threshold, args.scale, args.batch_size)
                except (OSError, ValueError) as e:
                    logger.warning(f"Skipped {path}: {e}")
                    skipped.append(path)
            else:
                skipped += draw_images(predictor, batch, args.confidence_threshold, args.scale)
            progress.update(len(batch))
    written = len(paths) - len(skipped)
    summary = f"Wrote {written} of {len(paths)} inputs to {args.output}"
    return cli.finish(logger, summary, skipped)


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
