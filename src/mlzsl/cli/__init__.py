"""The ``mlzsl`` command line: a thin shell over library calls.

Each subcommand is a module in this package exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; :data:`COMMANDS` lists them in help order.
Any :class:`~mlzsl.errors.MlzslError` becomes one line on stderr and exit status 2.

Data-preparing commands live under ``mlzsl data``; :data:`RENAMED` keeps their old top-level
spellings working for one release, each run printing a one-line notice.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from mlzsl import __version__
from mlzsl.errors import MlzslError

# module names under mlzsl.cli, in the order `mlzsl --help` lists them
COMMANDS = (
    "demo",
    "data",
    "extract",
    "train",
    "eval",
    "compare",
    "report",
    "tag",
    "serve",
    "models",
    "export",
    "bench",
)

# old top-level spelling -> (module under mlzsl.cli, new spelling); hidden from --help
RENAMED = {
    "scenes": ("data_scenes", "data scenes"),
    "verify-data": ("data_verify", "data verify"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with its rejections in one line (docs/design.md, "Errors"), not a usage block.

    Subparsers inherit the class (``add_subparsers`` defaults ``parser_class`` to it).
    """

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command module."""
    parser = _Parser(prog="mlzsl", description="Multi-label zero-shot learning of images.")
    parser.add_argument("--version", action="version", version=f"mlzsl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        module = importlib.import_module(f"mlzsl.cli.{module_name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    for old, (module_name, new) in RENAMED.items():
        module = importlib.import_module(f"mlzsl.cli.{module_name}")
        p = sub.add_parser(
            old, description=f"{module.HELP} (now `mlzsl {new}`)"
        )  # no help=: hidden
        module.add_arguments(p)
        p.set_defaults(_run=_renamed(module.run, old, new))
    return parser


def _renamed(run: Callable[[argparse.Namespace], int], old: str, new: str) -> Callable[..., int]:
    """``run`` behind a one-line notice that ``mlzsl old`` is now ``mlzsl new``."""

    def notice_then_run(args: argparse.Namespace) -> int:
        print(f"mlzsl {old}: note: this command is now `mlzsl {new}`", file=sys.stderr)
        return run(args)

    return notice_then_run


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlzsl`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except MlzslError as e:
        print(f"mlzsl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlzsl {args.command}: interrupted", file=sys.stderr)
        return 130


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--threads`` option every torch-computing command takes."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is often fastest when busy)",
    )


def add_runtime_argument(
    parser: argparse.ArgumentParser, *, exported: str = "the checkpoint"
) -> None:
    """The ``--runtime`` and ``--threads`` options of the commands that run images through a
    backbone (``exported``: what onnxruntime runs, exported on first use)."""
    parser.add_argument(
        "--runtime",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help=f"the engine: auto (default: onnxruntime on a CPU, {exported} exported on first use "
        "and cached; torch on a GPU), torch or onnx",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads, one image each (default: every core this process may use; "
        "--runtime torch: torch's thread count)",
    )


def add_batch_size_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--batch-size`` option of the commands that run photos through a backbone."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        help="images per backbone call (1 is fastest on a CPU; raise it on a GPU)",
    )
