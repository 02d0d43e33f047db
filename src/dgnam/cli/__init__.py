"""The ``dgnam`` command: a thin layer over the public API (the parser in :mod:`.parser`, one module per command group)."""

from __future__ import annotations

import contextlib
import sys

from .parser import build_parser


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """``--threads N``: torch's CPU thread count for the command, as it was after (main() may be called in-process)."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> int:
    """Run the ``dgnam`` command; expected errors print one line (exit code 2), ``--debug`` or
    ``DGNAM_DEBUG=1`` shows their traceback."""
    from ..infra.errors import debug_requested, error_line

    debug, argv = debug_requested(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    args.argv = list(argv)  # what the run records as its command (main(argv) need not be the process's argv)
    try:
        with _torch_threads(getattr(args, "threads", None)):
            return args.handler(args)
    except Exception as exc:
        message = error_line(exc)
        if message is None or debug:  # a bug (or --debug): the traceback
            raise
        print(f"dgnam: error: {message}", file=sys.stderr)
        return 2


__all__ = ["main"]
