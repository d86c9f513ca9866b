"""The checks the tools run before any work: what they write never replaces or joins their inputs."""
import os
from typing import Iterable, List, Sequence

__all__ = ["OutputError", "check_file_output", "check_folder_output", "check_outputs", "config_inputs"]


class OutputError(ValueError):
    """Writing an output would replace an input file, or put files into an input folder."""


def config_inputs(config_file: str, cfg) -> List[str]:
    """The files a tool reads through its config: the config file ``config_file`` and ``cfg``'s weights, if any."""
    weights = cfg.train.get("init_checkpoint")
    return [config_file, weights] if weights else [config_file]


def check_file_output(path: str, argument: str = "--output") -> None:
    """Raise :class:`OutputError` naming ``argument`` if ``path``, a file a tool is about to write, is a folder."""
    if os.path.isdir(path):
        raise OutputError(f"{argument} {path} is a folder: give the name of the file to write")


def check_folder_output(path: str, argument: str = "--output", empty: bool = False) -> None:
    """
    Raise :class:`OutputError` naming ``argument`` if ``path``, a folder a tool is about to
    write files into, is a file, or, if ``empty`` (the tool writes the folder as a whole), a
    folder holding anything.
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"{argument} {path} is a file: give the name of a folder to write")
    if empty and os.path.isdir(path) and os.listdir(path):
        raise OutputError(
            f"{argument} {path} is a folder that is not empty: give a new or empty folder, or remove it first"
        )


def check_outputs(
    outputs: Sequence[str],
    input_files: Iterable[str] = (),
    input_folders: Iterable[str] = (),
    argument: str = "--output",
) -> None:
    """
    Raise :class:`OutputError` naming ``argument`` (the command-line argument that gives the
    outputs), the output and the input if one of ``outputs`` (the files and folders a tool is
    about to write)

    - is, or lies inside, one of ``input_folders``;
    - is one of ``input_files``: the same file, also through symbolic or hard links.
    """
    folders = [(folder, os.path.realpath(folder)) for folder in input_folders]
    for output in outputs:
        real = os.path.realpath(output)
        for folder, real_folder in folders:
            if os.path.commonpath([real, real_folder]) == real_folder:
                raise OutputError(
                    f"{argument} {output} is or lies inside the input folder {folder}: write the outputs elsewhere"
                )
    existing = [output for output in outputs if os.path.isfile(output)]
    if not existing:
        return
    inputs = {_file_identity(path): path for path in input_files if os.path.isfile(path)}
    for output in existing:
        replaced = inputs.get(_file_identity(output))
        if replaced is not None:
            raise OutputError(
                f"{argument}: writing {output} would replace the input {replaced}: write the outputs elsewhere"
            )


def _file_identity(path: str):
    """(device, inode) of the file ``path`` (or of the file a symbolic link points to)."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino
