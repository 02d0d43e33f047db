"""Stopping a long run cleanly on Ctrl-C (SIGINT) or SIGTERM, the signal a batch scheduler sends at
its time limit: the work in the block stops, what finished is kept, and the caller records
``interrupted: true``.

Used by ``dgnam visualize``, ``dgnam sample`` and ``dgnam atlas``.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class Interruption:
    """What :func:`stop_on_signals` saw.

    Attributes:
        signal: ``"SIGINT"`` or ``"SIGTERM"`` once the block was interrupted, else ``None``.
    """

    signal: str | None = None
    armed: bool = field(default=True, repr=False)  # a first SIGTERM now stops the work (False: the clean-up, ignored)

    @contextmanager
    def interruptible(self) -> Iterator["Interruption"]:
        """The part of a :func:`stop_on_signals` block that a signal stops (the work); after it, to the end of
        the block, SIGTERM is ignored, so the clean-up there (saving what finished) runs to its end.

        Example:
            >>> with stop_on_signals() as stop:
            ...     with stop.interruptible():
            ...         for batch in batches:
            ...             writer.add(batch)      # doctest: +SKIP
            ...     writer.finish(interrupted=stop.interrupted)  # a second SIGTERM cannot cut this short  # doctest: +SKIP
        """
        self.armed = True
        try:
            yield self
        except KeyboardInterrupt:
            if self.signal is None:
                self.signal = "SIGINT"
        finally:
            self.armed = False

    @property
    def interrupted(self) -> bool:
        """True when the block was stopped by a signal."""
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """The shell's convention: 0, or 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        if self.signal is None:
            return 0
        return 128 + int(getattr(signal, self.signal))


@contextmanager
def stop_on_signals() -> Iterator[Interruption]:
    """Run the block until it ends or a SIGINT/SIGTERM arrives; either way, carry on after it.

    Inside the block SIGTERM raises :class:`KeyboardInterrupt` where the program is, as Ctrl-C does;
    the context manager swallows that interrupt (and only that: other errors propagate) and records
    which signal stopped the block. Code after the block saves what finished. A second SIGTERM while
    the first is being handled is ignored, so the clean-up is not cut short; so is any SIGTERM after
    :meth:`Interruption.interruptible` (the clean-up inside the block: a Ctrl-C there is not swallowed).
    The previous SIGTERM handler is restored on exit. Outside the main thread (where handlers cannot be installed),
    SIGTERM keeps its handler and only Ctrl-C is caught.

    Yields:
        An :class:`Interruption`; its ``interrupted`` is True after the block if a signal stopped it.

    Example:
        >>> with stop_on_signals() as stop:
        ...     for batch in batches:
        ...         writer.add(batch)          # doctest: +SKIP
        >>> writer.finish(interrupted=stop.interrupted)  # doctest: +SKIP
    """
    state = Interruption()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None

    def on_term(signum, frame):
        if state.signal is None and state.armed:
            state.signal = "SIGTERM"
            raise KeyboardInterrupt
        # else ignored: a second SIGTERM, or one during the clean-up after stop.interruptible()

    if main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        yield state
    except KeyboardInterrupt:
        if not state.armed:
            raise  # Ctrl-C during the clean-up after stop.interruptible(): the user insists
        if state.signal is None:
            state.signal = "SIGINT"
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


__all__ = ["Interruption", "stop_on_signals"]
