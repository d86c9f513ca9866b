"""The check the tools run before any work: what they write never replaces or joins their inputs."""
import os
from typing import Iterable, Sequence

__all__ = ["OutputError", "check_outputs"]


class OutputError(ValueError):
    """Writing an output would replace an input file, or put files into an input folder."""


def check_outputs(outputs: Sequence[str], input_files: Iterable[str] = (), input_folders: Iterable[str] = ()) -> None:
    """
    Raise :class:`OutputError` naming the ``--output`` path and the input if one of ``outputs``
    (the files and folders a tool is about to write)

    - is, or lies inside, one of ``input_folders``;
    - is one of ``input_files``: the same file, also through symbolic or hard links.
    """
    folders = [(folder, os.path.realpath(folder)) for folder in input_folders]
    for output in outputs:
        real = os.path.realpath(output)
        for folder, real_folder in folders:
            if os.path.commonpath([real, real_folder]) == real_folder:
                raise OutputError(
                    f"--output {output} is or lies inside the input folder {folder}: write the outputs elsewhere"
                )
    existing = [output for output in outputs if os.path.isfile(output)]
    if not existing:
        return
    inputs = {_file_identity(path): path for path in input_files if os.path.isfile(path)}
    for output in existing:
        replaced = inputs.get(_file_identity(output))
        if replaced is not None:
            raise OutputError(
                f"--output: writing {output} would replace the input {replaced}: write the outputs elsewhere"
            )


def _file_identity(path: str):
    """(device, inode) of the file ``path`` (or of the file a symbolic link points to)."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino
