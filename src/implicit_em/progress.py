"""What a long command tells its user while it works: stage lines and one bar per stack.

Both go to stderr (stdout stays for results). On a terminal a stack's bar (tqdm) redraws in
place, one line per CPU worker process (`set_position`); elsewhere (a log file, a pipe, CI)
the same meter is written as a plain line now and then and when the stack ends, so the log
stays readable. `quiet` callers pass enabled=False.
"""

from __future__ import annotations

import io
import sys
import time

from tqdm.auto import tqdm

LINE_EVERY_S = 30.0
"""Off a terminal: seconds between the plain progress lines of one stack."""


class _Discard(io.TextIOBase):
    """Where the bar draws off a terminal: nowhere (its meter is written as lines instead)."""

    def write(self, s: str) -> int:
        return len(s)


_position: int | None = None  # this process's bar line, when it is one of several workers


def set_position(position: int | None) -> None:
    """Draw this process's bars on terminal line `position` (a worker process among several)."""
    global _position
    _position = position


def stage(message: str, enabled: bool = True) -> None:
    """One line naming what the command does next ("training ablation: 4 runs in 1 stack")."""
    if enabled:
        tqdm.write(f"implicit-em: {message}", file=sys.stderr)


class StackBar:
    """Progress of one stack: epoch e/E, samples/s and ETA.

    A sample is one row of the training set through every model of the stack, so samples/s
    is the data throughput (models x samples/s is the model-sample rate). desc: the stack's
    name; epochs: its total; samples: rows per epoch; start: epochs already done (a stack
    continued from its checkpoint).
    """

    def __init__(
        self, desc: str, epochs: int, samples: int, start: int = 0, enabled: bool = True
    ) -> None:
        self.desc, self.epochs, self.enabled = desc, epochs, enabled
        self.tty = enabled and sys.stderr.isatty()
        self._last_line = time.monotonic()
        self.bar = tqdm(
            total=epochs * samples, initial=start * samples, unit="samples", unit_scale=True,
            desc=self._desc(start), disable=not enabled, position=_position,
            leave=_position is None, file=sys.stderr if self.tty else _Discard(),
            dynamic_ncols=True, mininterval=0.5,
        )  # fmt: skip
        if enabled and start:
            self._line(f"continued from its checkpoint at epoch {start}")

    def _desc(self, epoch: int) -> str:
        return f"{self.desc} | epoch {epoch}/{self.epochs}"

    def _line(self, note: str = "") -> None:
        meter = str(self.bar).strip()
        tqdm.write(meter + (f" ({note})" if note else ""), file=sys.stderr)
        self._last_line = time.monotonic()

    def update(self, samples: int) -> None:
        """samples rows went through the stack's models (one step)."""
        self.bar.update(samples)

    def epoch_done(self, epoch: int, **postfix: str) -> None:
        """Epoch `epoch` (1-based) has finished; postfix: short numbers to show (loss)."""
        if not self.enabled:
            return
        self.bar.set_description_str(self._desc(epoch), refresh=False)
        self.bar.set_postfix(postfix, refresh=self.tty)
        if not self.tty and time.monotonic() - self._last_line >= LINE_EVERY_S:
            self._line()

    def close(self) -> None:
        """The stack has ended: off a terminal, or in a worker, its final meter as one line."""
        if self.enabled and (not self.tty or _position is not None):
            self._line()
        self.bar.close()
