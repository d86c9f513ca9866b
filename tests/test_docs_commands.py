"""
The docs stay true to the code. Every shell command of README.md and docs/*.md (fenced ``bash``,
``sh``, ``shell`` and ``console`` blocks; ``\\`` continuations joined, comments dropped) is checked,
in this process:

- ``.venv/bin/python -m MODULE``: the module exists; ``.venv/bin/python SCRIPT``: the script
  exists; ``.venv/bin/yolos-...``: setup.py declares the console script; ``bash FILE``: the file
  exists. The interpreter is spelled ``.venv/bin/python``. ``.venv/bin/python -m
  torch.distributed.run ... SCRIPT ARGS`` (torchrun) is checked as the script's command;
- yolos_d2's commands parse their arguments with the command's own parser (the program runs
  until its parser returns, and stops there): a flag that does not exist, a value a flag refuses
  or a missing required argument fails;
- ``--config-file`` names a file that exists, and every ``key=value`` override is accepted by
  ``yolos_d2.config.load_config`` on that command's config (``apply_overrides_strict``);
- an ``--output`` never names a file or folder of the repository outside ``output/``;
- the commands :func:`runs_for_real` selects run for real (seconds); every other command's
  program must be listed in :data:`NOT_RUN` with the reason.

Placeholders (``model.pth``, ``/path/to/YOLOS``, ``$VAR``) are fine where a path is expected;
variables assigned in an earlier block of the same page (``W=...``) are substituted. Besides:
``python`` blocks import only yolos_d2 names that exist; the inline code of the text names only
console scripts, modules, yolos_d2 names, files and config keys that exist; the README's
parameters and GFLOPs are what ``yolos-model-info`` prints; docs/design.md lists what each part
of yolos_d2 imports.
"""
import argparse
import ast
import contextlib
import dataclasses
import glob
import importlib
import importlib.util
import io
import logging
import os
import re
import runpy
import shlex
import sys
import warnings
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Tuple
from unittest import mock

import pytest

from conftest import REPO, fenced_blocks
from yolos_d2.tools.cli import OVERRIDE  # what the tools read as a KEY=VALUE config override

PAGES = ["README.md", *sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))]
INTERPRETER = ".venv/bin/python"
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}

# Programs that are not yolos_d2's: only the files they are given to run are checked.
EXTERNAL = {"cp", "mv", "mkdir", "ls", "cd", "git", "export", "tensorboard", "nvidia-smi", "unzip", "wget", "curl"}
# Prefixes that run the rest of the line as a command.
WRAPPERS = {"time", "/usr/bin/time", "env"}

# Programs (a module, a script, a console script's module, or an external program) whose
# commands are checked but not run, with the reason.
NOT_RUN = {
    "bash .ci/setup": "builds .venv (minutes, package downloads)",
    "bash .ci/quickstart": "builds .venv, then trains the quick start: minutes",
    "bash .ci/test": "the test suite itself",
    "pytest": "the test suite itself",
    "train_net.py": "trains or evaluates: minutes (quick start) to days (COCO)",
    "yolos_d2.tools.train": "trains or evaluates: minutes (quick start) to days (COCO)",
    "demo.py": "needs trained weights",
    "yolos_d2.tools.demo": "needs trained weights",
    "yolos_d2.tools.det_token_stats": "needs trained weights",
    "yolos_d2.tools.attention_maps": "needs trained weights",
    "yolos_d2.tools.analyze": "needs trained weights",
    "yolos_d2.tools.sweep": "needs trained weights; evaluates the test set once per size and precision: minutes",
    "yolos_d2.tools.browse_data": "writes drawings into output/ (generating the quick start's dataset on first use)",
    "yolos_d2.tools.convert": "needs released checkpoints",
    "yolos_d2.tools.export": "needs trained weights; an export takes a minute",
    "yolos_d2.tools.submit": "submits a Slurm job",
    "benchmarks": "minutes per benchmark",
    "tests/parity/record_original.py": "needs a checkout of hustvl/YOLOS",
    "benchmarks/make_figures.py": "writes into docs/images",
    "benchmarks/quickstart_levers.py": "trains the quick start once per change and seed: ten minutes each",
    "cp": "copies files the commands before it made",
}


def runs_for_real(command: "Command") -> bool:
    """Commands run for real: ``--help``, ``python -c`` and the model summary (seconds each)."""
    return (
        "--help" in command.args
        or "-h" in command.args
        or command.kind == "code"
        or command.program == "yolos_d2.tools.model_info"
    )


ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


@dataclasses.dataclass
class Command:
    page: str
    line: int
    text: str
    # "module" (python -m), "script" (python FILE), "console" (.venv/bin/yolos-...), "code"
    # (python -c), "bash" (bash FILE), "external", or "" when the program is not understood.
    kind: str = ""
    # The module, script path, console script's module, or external program name.
    program: str = ""
    # What the program is called with (as sys.argv[0]) and its arguments.
    argv0: str = ""
    args: List[str] = dataclasses.field(default_factory=list)
    problems: List[str] = dataclasses.field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


# ---------------------------------------------------------------------------------------------
# Reading the pages


def logical_lines(language: str, first_line: int, body: List[str]) -> List[Tuple[int, str]]:
    """(line number, text) of each command line: ``\\`` continuations joined; in console blocks, "$ " lines."""
    out, pending, pending_line = [], "", None
    for offset, raw in enumerate(body):
        line = raw
        if language == "console" and not pending:
            if not line.lstrip().startswith("$ "):
                continue
            line = line.lstrip()[2:]
        if pending_line is None:
            pending_line = first_line + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        pending += line
        if pending.strip():
            out.append((pending_line, pending.strip()))
        pending, pending_line = "", None
    if pending.strip():
        out.append((pending_line, pending.strip()))
    return out


def split_commands(text: str) -> List[List[str]]:
    """The words of each command of a shell line (comments dropped; split at ; && || |)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, words, redirect = [], [], False
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            commands.append(words)
            words = []
        elif token in (">", ">>", "<", "2>", "&>"):
            redirect = True
        elif redirect:
            redirect = False
        else:
            words.append(token)
    commands.append(words)
    return [c for c in commands if c]


def substitute(text: str, variables: Dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def commands_of_page(page: str) -> List[Command]:
    with open(os.path.join(REPO, page), encoding="utf-8") as f:
        text = f.read()
    variables: Dict[str, str] = {}
    commands = []
    for language, first_line, body in fenced_blocks(text):
        if language not in SHELL_LANGUAGES:
            continue
        for line_number, line in logical_lines(language, first_line, body):
            for words in split_commands(substitute(line, variables)):
                if all(ENV_ASSIGNMENT.match(w) for w in words):  # W=...: a shell variable
                    for w in words:
                        name, value = w.split("=", 1)
                        variables[name] = value
                    continue
                commands.append(classify(Command(page, line_number, line), words))
    return commands


# ---------------------------------------------------------------------------------------------
# What each command runs


@lru_cache(maxsize=None)
def console_scripts() -> Dict[str, str]:
    """Console script name -> "module:function", as setup.py declares them."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entry_points = ast.literal_eval(node.value)
            return dict(
                (part.strip() for part in spec.split("=", 1)) for spec in entry_points.get("console_scripts", [])
            )
    return {}


def classify(command: Command, words: List[str]) -> Command:
    while words and ENV_ASSIGNMENT.match(words[0]):  # NAME=value before a program: its environment
        words = words[1:]
    while words and words[0] in WRAPPERS:
        words = words[1:]
        while words and words[0].startswith("-"):
            words = words[1:]
    program, args = words[0], words[1:]
    name = os.path.basename(program)
    if program == INTERPRETER:
        while args and args[0] in ("-u", "-B", "-W", "-X"):
            args = args[2:] if args[0] in ("-W", "-X") else args[1:]
        if args[:2] == ["-m", TORCHRUN]:
            return classify(command, [INTERPRETER, *torchrun_script(command, args[2:])])
        if args[:1] == ["-m"] and len(args) > 1:
            command.kind, command.program, command.argv0, command.args = "module", args[1], args[1], args[2:]
            if importlib.util.find_spec(args[1]) is None:
                command.problems.append(f"module {args[1]!r} does not exist")
        elif args[:1] == ["-c"] and len(args) > 1:
            command.kind, command.program, command.argv0, command.args = "code", "-c", "-c", args[1:]
        elif args:
            command.kind, command.program, command.argv0, command.args = "script", args[0], args[0], args[1:]
            if not os.path.isfile(os.path.join(REPO, args[0])):
                command.problems.append(f"script {args[0]!r} does not exist")
        else:
            command.problems.append("the interpreter alone")
    elif name.startswith("python") or name == "pip":
        command.problems.append(f"{program!r}: spell the interpreter {INTERPRETER} (pip: {INTERPRETER} -m pip)")
    elif program.startswith(".venv/bin/"):
        target = console_scripts().get(name)
        if target is None:
            command.problems.append(f"console script {name!r} is not declared in setup.py")
        else:
            command.kind, command.program, command.argv0, command.args = "console", target.split(":")[0], name, args
            if importlib.util.find_spec(command.program) is None:
                command.problems.append(f"console script {name!r} runs {target}, whose module does not exist")
    elif program == "bash":
        command.kind, command.program, command.args = "bash", f"bash {args[0]}" if args else "bash", args
        if not args or not os.path.isfile(os.path.join(REPO, args[0])):
            command.problems.append(f"bash script {args[:1]} does not exist")
    elif program in EXTERNAL:
        command.kind, command.program, command.args = "external", program, args
    else:
        command.problems.append(
            f"unknown program {program!r}: add it to EXTERNAL in {__file__} if it is not yolos_d2's"
        )
    return command


TORCHRUN = "torch.distributed.run"


def torchrun_script(command: Command, args: List[str]) -> List[str]:
    """The script that torchrun's arguments ``args`` start, and its arguments (torchrun's own parser reads them)."""
    from torch.distributed.run import get_args_parser

    try:
        parsed = get_args_parser().parse_args(args)
    except SystemExit:
        command.problems.append(f"torchrun's parser refuses {' '.join(args)}")
        return []
    return [parsed.training_script, *parsed.training_script_args]


def is_ours(command: Command) -> bool:
    """Whether the command's arguments are parsed by yolos_d2's code (a tool, or a script of the repository)."""
    if command.kind in ("console", "script"):
        return True
    return command.kind == "module" and command.program.split(".")[0] in ("yolos_d2", "benchmarks")


def runner(command: Command) -> Callable[[], object]:
    """A function that runs the command's program in this process, as its command line would."""
    if command.kind == "module":
        return lambda: _run_module(command.program)
    if command.kind == "script":
        return lambda: runpy.run_path(os.path.join(REPO, command.program), run_name="__main__")
    if command.kind == "console":
        module, function = console_scripts()[command.argv0].split(":")
        return getattr(importlib.import_module(module), function)
    raise ValueError(f"{command.kind} commands are not run in this process")


def _run_module(name: str):
    """``python -m name``: the module's code run as ``__main__``, also when an earlier test imported it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".* found in sys.modules after import", category=RuntimeWarning)
        return runpy.run_module(name, run_name="__main__", alter_sys=True)


@contextlib.contextmanager
def as_command(argv: List[str]):
    """sys.argv and the working directory of a command, its output captured; logging restored after."""
    loggers = [logging.getLogger(n) for n in ("yolos_d2", "detectron2", "fvcore", "d2")]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    out = io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        with mock.patch.object(sys, "argv", argv), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield out
    finally:
        os.chdir(cwd)
        for lg, (handlers, propagate, level) in zip(loggers, saved):
            lg.handlers[:], lg.propagate, lg.level = handlers, propagate, level
        from detectron2.utils.logger import setup_logger

        setup_logger.cache_clear()


class _Parsed(BaseException):
    """Raised once a command has parsed its arguments, carrying the result."""

    def __init__(self, namespace: argparse.Namespace):
        super().__init__("parsed")
        self.namespace = namespace


class _UsageError(Exception):
    pass


_PARSE_METHODS = ("parse_args", "parse_known_args", "parse_intermixed_args", "parse_known_intermixed_args")


def parse(command: Command) -> Optional[argparse.Namespace]:
    """
    The command's arguments as its own parser reads them: the program runs, on the command's
    arguments, until its first call to an ``ArgumentParser`` returns; None for ``--help``.
    Raises _UsageError with the parser's message.
    """
    depth = [0]

    def stop_after(method):
        original = getattr(argparse.ArgumentParser, method)

        def parse_then_stop(self, *args, **kwargs):
            depth[0] += 1
            try:
                result = original(self, *args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0]:  # called by another parse method: let that one finish
                return result
            if any(a.nargs == argparse.REMAINDER and a.dest != "opts" and not a.option_strings for a in self._actions):
                return result  # a dispatcher (yolos-benchmark NAME ...): its subcommand parses the rest
            namespace, unknown = result if isinstance(result, tuple) else (result, [])
            if unknown:
                raise _UsageError(f"{self.prog}: error: unrecognized arguments: {' '.join(unknown)}")
            raise _Parsed(namespace)

        return parse_then_stop

    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message}")

    run = runner(command)
    with mock.patch.multiple(argparse.ArgumentParser, error=error, **{m: stop_after(m) for m in _PARSE_METHODS}):
        with as_command([command.argv0, *command.args]):
            try:
                run()
            except _Parsed as parsed:
                return parsed.namespace
            except SystemExit as e:  # --help
                if e.code in (0, None) and ("--help" in command.args or "-h" in command.args):
                    return None
                raise _UsageError(f"{command.program} exited ({e.code}) before parsing its arguments") from None
    raise _UsageError(f"{command.program} returned without parsing arguments")


@lru_cache(maxsize=None)
def _load(config_file: str, overrides: Tuple[str, ...]) -> str:
    """'' if ``config_file`` loads with ``overrides``, else the error."""
    from yolos_d2.config import load_config

    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        load_config(config_file, list(overrides))
    except Exception as e:  # noqa: BLE001  (any failure to load is the finding)
        return f"{type(e).__name__}: {e}"
    finally:
        os.chdir(cwd)
    return ""


def check(command: Command) -> List[str]:
    """Everything wrong with ``command`` (empty: it holds)."""
    problems = list(command.problems)
    if problems or not is_ours(command):
        return problems
    try:
        namespace = parse(command)
    except _UsageError as e:
        return [str(e)]
    if namespace is None:  # --help
        return []
    overrides = tuple(a for a in command.args if OVERRIDE.match(a))
    config_files = getattr(namespace, "config_file", None) or []
    config_files = [config_files] if isinstance(config_files, str) else config_files
    if overrides and not config_files:
        problems.append(f"overrides {' '.join(overrides)} but no --config-file")
    for config_file in config_files:
        if config_file in READERS_FILES:  # the page shows it; a test of that page loads it
            continue
        error = _load(config_file, overrides)
        if error:
            problems.append(error)
    output = getattr(namespace, "output", None)
    if isinstance(output, str) and not output.startswith(("$", "~", "/")):
        path = os.path.normpath(output)
        if os.path.exists(os.path.join(REPO, path)) and path.split(os.sep)[0] != "output":
            problems.append(f"--output {output} would write over the repository's {path}: write under output/")
    return problems


# ---------------------------------------------------------------------------------------------
# The tests

COMMANDS = [c for page in PAGES for c in commands_of_page(page)]


def test_the_pages_have_commands():
    assert {c.page for c in COMMANDS} >= {"README.md", "docs/getting_started.md", "docs/training.md"}


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_command_matches_the_code(command):
    problems = check(command)
    assert not problems, f"{command.id}: {command.text}\n" + "\n".join(problems)


def real_args(command: Command) -> List[str]:
    """
    The arguments a command runs with here: ``model_info`` on YOLOS-Ti alone, as the five paper
    configs take half a minute to build.
    """
    if command.program != "yolos_d2.tools.model_info":
        return command.args
    args, in_config_files = [], False
    for a in command.args:
        in_config_files = a == "--config-file" or (in_config_files and not a.startswith("-") and not OVERRIDE.match(a))
        if not in_config_files:
            args.append(a)
    return ["--config-file", SMALL_PAPER_CONFIG, *args]


SMALL_PAPER_CONFIG = "configs/yolos_ti.py"


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_command_runs_or_says_why_not(command):
    if not runs_for_real(command):
        assert command.program in NOT_RUN, (
            f"{command.id}: {command.text}\nneither run by this test (runs_for_real) nor listed in NOT_RUN with "
            "the reason"
        )
        return
    if command.kind == "code":
        with as_command(["-c"]):
            exec(compile(command.args[0], "<-c>", "exec"), {"__name__": "__main__"})
        return
    with as_command([command.argv0, *real_args(command)]) as out:
        try:
            runner(command)()
        except SystemExit as e:
            assert e.code in (0, None), f"{command.id}: {command.text}\nexit status {e.code}\n{out.getvalue()}"


def table_rows(text: str, first_cell: str) -> Dict[str, str]:
    """The Markdown table row whose first cell is ``first_cell``, as {column header: cell}."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            start = i
            while lines[start - 1].startswith("|"):
                start -= 1
            header = [c.strip() for c in lines[start].strip().strip("|").split("|")]
            return dict(zip(header, cells))
    raise AssertionError(f"no table row for {first_cell}")


def test_readme_models_table_is_model_info_output():
    """The parameters and GFLOPs of the README's models table are what yolos-model-info prints (YOLOS-Ti here)."""
    from yolos_d2.tools.model_info import main

    with as_command(["yolos-model-info"]) as out:
        assert main(["--config-file", SMALL_PAPER_CONFIG]) == 0
    printed = table_rows(out.getvalue(), SMALL_PAPER_CONFIG)
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = table_rows(f.read(), SMALL_PAPER_CONFIG)
    for what in ("parameters", "GFLOPs"):
        (printed_value,) = [v for k, v in printed.items() if k.startswith(what)]
        (readme_value,) = [v for k, v in readme.items() if k.startswith(what)]
        assert readme_value == printed_value, f"README.md: {what} of {SMALL_PAPER_CONFIG}"


def python_blocks():
    for page in PAGES:
        with open(os.path.join(REPO, page), encoding="utf-8") as f:
            for language, line, body in fenced_blocks(f.read()):
                if language == "python":
                    yield pytest.param("\n".join(body), id=f"{page}:{line}")


@pytest.mark.parametrize("code", list(python_blocks()))
def test_python_block_imports_exist(code):
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "yolos_d2":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "yolos_d2":
                    assert importlib.util.find_spec(alias.name) is not None, f"no module {alias.name}"


# Names in the text and tables: commands, modules, configs and config keys that exist.

# Pages whose text quotes mistaken names on purpose, with the reason.
TEXT_EXEMPT = {"docs/failure_modes.md": "quotes mistaken inputs and the messages they give"}
# Files the docs name that the reader makes, not the repository.
READERS_FILES = {
    "configs/my_data.py": "the reader's own config (docs/your_data.md)",
    "configs/my_data_cpu.py": "the reader's own config (docs/your_data.md)",
}
INLINE_CODE = re.compile(r"`([^`\n]+)`")
CONFIG_ROOTS = ("model", "train", "dataloader", "optimizer", "lr_multiplier")
FILE_NAME = re.compile(r"\.(pth|pt|pkl|bin|safetensors|json|py|png|jpg|onnx)$")  # model.safetensors is a file


def page_text(page: str) -> str:
    """The page without its fenced blocks (their commands are checked above)."""
    with open(os.path.join(REPO, page), encoding="utf-8") as f:
        lines = f.read().splitlines()
    kept, fence = [], None
    for line in lines:
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if m and fence is None:
            fence = m.group(1)
        elif m and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            kept.append(line)
    return "\n".join(kept)


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` names a module, or an attribute of one (``yolos_d2.data.read_image``)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        obj = module
        for part in parts[i:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


@lru_cache(maxsize=None)
def project_configs():
    from detectron2.config import LazyConfig

    return [LazyConfig.load(p) for p in sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))]


def config_key_exists(key: str) -> bool:
    """Whether some config of the project has ``key``, as a ``key=value`` override may set it."""
    from yolos_d2.config import ConfigError, _check_key_exists  # the check apply_overrides_strict runs

    for cfg in project_configs():
        try:
            _check_key_exists(cfg, key, key)
            return True
        except (ConfigError, KeyError, IndexError, ValueError):
            continue
    return False


def text_problems(page: str) -> List[str]:
    """What the inline code of the text names that does not exist: console scripts, modules, files, config keys."""
    problems = []
    for code in INLINE_CODE.findall(page_text(page)):
        words = code.split()
        first = words[0] if words else ""
        script = first[len(".venv/bin/"):] if first.startswith(".venv/bin/") else first
        if re.fullmatch(r"yolos-[a-z][\w-]*", script) and script not in console_scripts():
            problems.append(f"`{code}`: console script {script!r} is not declared in setup.py")
        modules = re.findall(r"python -m ([\w.]+)", code)
        for module in modules:
            if importlib.util.find_spec(module) is None:
                problems.append(f"`{code}`: module {module!r} does not exist")
        for name in re.findall(r"\byolos_d2(?:\.\w+)+", code):
            if name not in modules and not resolves(name):
                problems.append(f"`{code}`: {name} does not exist")
        for path in re.findall(r"(?<![\w/.])((?:configs|docs|tests|yolos_d2)/[\w/.*-]*[\w*])", code):
            if path not in READERS_FILES and not glob.glob(os.path.join(REPO, path)):
                problems.append(f"`{code}`: {path} does not exist")
        key = re.match(r"^((?:%s)(?:\.\w+)+)(?:=|$)" % "|".join(CONFIG_ROOTS), code)
        if key and not FILE_NAME.search(key.group(1)) and not config_key_exists(key.group(1)):
            problems.append(f"`{code}`: no config has the key {key.group(1)}")
    return problems


@pytest.mark.parametrize("page", [p for p in PAGES if p not in TEXT_EXEMPT])
def test_names_in_the_text_exist(page):
    problems = text_problems(page)
    assert not problems, f"{page}:\n" + "\n".join(problems)


# docs/design.md: what each part of yolos_d2 imports.


def yolos_d2_imports() -> Dict[str, set]:
    """For each package and top-level module of yolos_d2 (by name), the other ones it imports."""
    root = os.path.join(REPO, "yolos_d2")
    found: Dict[str, set] = {}
    for path in glob.glob(os.path.join(root, "**", "*.py"), recursive=True):
        parts = os.path.relpath(path, root).split(os.sep)
        if parts == ["__init__.py"]:
            continue
        place = parts[0] if len(parts) > 1 else parts[0][: -len(".py")]
        package = ["yolos_d2", *parts[:-1]]
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        names = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                names += [".".join(base + ([node.module] if node.module else [a.name])) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names.append(node.module)
        found.setdefault(place, set()).update(
            n.split(".")[1] for n in names if n.startswith("yolos_d2.") and n.split(".")[1] != place
        )
    return found


def test_design_lists_what_each_package_imports():
    with open(os.path.join(REPO, "docs", "design.md"), encoding="utf-8") as f:
        text = f.read()
    documented = {}
    for line in text.splitlines():
        m = re.match(r"^\| `yolos_d2/(\w+)(?:/|\.py)` \|[^|]*\| ([^|]*) \|$", line)
        if m:
            documented[m.group(1)] = set(re.findall(r"`(\w+)`", m.group(2)))
    actual = yolos_d2_imports()
    assert sorted(documented) == sorted(actual), "docs/design.md: its packages table and yolos_d2/ differ"
    wrong = {place: sorted(actual[place]) for place in actual if documented[place] != actual[place]}
    assert not wrong, f"docs/design.md: what these parts of yolos_d2 import, as the code has it: {wrong}"


# The checks themselves: what they must catch.


def _checked(line: str) -> List[str]:
    (words,) = split_commands(line)
    return check(classify(Command("test", 1, line), words))


def test_a_renamed_flag_fails():
    problems = _checked(f"{INTERPRETER} train_net.py --config-file configs/quickstart.py --eval-only-now")
    assert len(problems) == 1 and "unrecognized arguments: --eval-only-now" in problems[0]


def test_a_renamed_flag_of_a_subcommand_fails():
    problems = _checked(f"{INTERPRETER} -m benchmarks inference --original-checkout /path/to/YOLOS")
    assert len(problems) == 1 and "unrecognized arguments: --original-checkout" in problems[0]


def test_a_renamed_config_fails():
    problems = _checked(f"{INTERPRETER} train_net.py --config-file configs/yolos_tiny.py")
    assert len(problems) == 1 and "configs/yolos_tiny.py" in problems[0] and "does not exist" in problems[0]


def test_an_unknown_override_fails():
    problems = _checked(f"{INTERPRETER} train_net.py --config-file configs/quickstart.py train.max_iters=10")
    assert len(problems) == 1 and "Unknown config key 'train.max_iters'" in problems[0]


def test_a_missing_module_script_or_interpreter_fails():
    assert "module 'yolos_d2.tools.trian' does not exist" in _checked(f"{INTERPRETER} -m yolos_d2.tools.trian")
    assert "script 'train.py' does not exist" in _checked(f"{INTERPRETER} train.py --config-file configs/yolos_s.py")
    assert "spell the interpreter" in _checked("python train_net.py --config-file configs/yolos_s.py")[0]


def test_an_output_into_the_repository_fails():
    problems = _checked(
        f"{INTERPRETER} demo.py --config-file configs/quickstart.py --input a.png --output docs/images/demo.png"
    )
    assert len(problems) == 1 and "write under output/" in problems[0]


def test_shell_lines_are_read_as_the_shell_reads_them():
    (language, line, body), = fenced_blocks("x\n```bash\nW=a.pth  # the weights\nrun \\\n  --weights $W 'b c'\n```\n")
    assert (language, line) == ("bash", 3)
    assert logical_lines(language, line, body) == [(3, "W=a.pth  # the weights"), (4, "run    --weights $W 'b c'")]
    assert split_commands(substitute("run --weights $W 'b c' && cp x y  # z", {"W": "a.pth"})) == [
        ["run", "--weights", "a.pth", "b c"],
        ["cp", "x", "y"],
    ]


def test_a_torchrun_command_is_checked_as_that_of_its_script():
    problems = _checked(
        f"{INTERPRETER} -m torch.distributed.run --nproc-per-node 2 train_net.py --config-file configs/quickstart.py "
        "--eval-only-now"
    )
    assert len(problems) == 1 and "unrecognized arguments: --eval-only-now" in problems[0]
