"""Progress bars that stay readable in log files: ``progress(...)``, a drop-in for ``tqdm(...)``.

On a terminal it is tqdm's bar. When the output is not a terminal (``nnUNetv2_glrp prepare > log``)
tqdm would write every redraw after a carriage return, one endless line; ``progress`` writes one plain
line at the start, about every 10 % (or every minute when the total is unknown) and at the end instead.
A caller's ``disable=None`` (tqdm's "no bar when not a terminal") keeps that meaning.

``GLRP_PROGRESS`` overrides the detection: ``1`` gives tqdm's bars as on a terminal, ``0`` no progress
output at all, unset (or anything else) the automatic choice above.

Modules import it as ``from nnunetv2_glrp.progress import tqdm`` so that their call lines stay tqdm's.
"""

from __future__ import annotations

import os
import sys

ENV = "GLRP_PROGRESS"
#: a line per this fraction of the total when not on a terminal
LINE_FRACTION = 0.1
#: seconds between lines when the total is unknown
UNKNOWN_TOTAL_INTERVAL = 60.0


class _LineWriter:
    """A stream for tqdm that turns each carriage-return redraw into its own line (blank redraws and
    redraws of the previous line's count are dropped)."""

    def __init__(self, stream):
        self.stream = stream
        self.last = None

    def write(self, text: str) -> int:
        for piece in text.replace("\r", "\n").split("\n"):
            piece = piece.rstrip()
            # "desc: 100%|####| 3/3 [00:01<00:00, 2.9it/s]": the closing redraw differs in its rate, and with a
            # fixed width a longer rate string also narrows the bar: compare what is left of the bar and after it
            head = piece.split("[")[0]
            parts = head.split("|")
            count = parts[0] + parts[-1] if len(parts) >= 3 else head
            if piece and count != self.last:
                self.stream.write(piece + "\n")
                self.last = count
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)``, with the log-file behaviour described in the module docstring."""
    from tqdm import tqdm as _tqdm

    stream = kwargs.pop("file", None) or sys.stderr
    mode = os.environ.get(ENV, "").strip()
    if mode == "0":
        return _tqdm(iterable, file=stream, **{**kwargs, "disable": True})
    if mode == "1" or _is_terminal(stream):
        disable = kwargs.pop("disable", False)
        return _tqdm(iterable, file=stream, disable=bool(disable), **kwargs)
    if kwargs.get("disable") is None and "disable" in kwargs:  # the caller wanted no bar in logs
        kwargs["disable"] = True
    total = kwargs.get("total")
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if total:
        kwargs.update(miniters=max(1, int(total * LINE_FRACTION)), mininterval=0)
    else:
        kwargs.update(mininterval=UNKNOWN_TOTAL_INTERVAL)
    # maxinterval: tqdm's monitor thread would otherwise drop miniters to 1 after 10 s without a line
    return _tqdm(iterable, file=_LineWriter(stream), dynamic_ncols=False, ncols=100, maxinterval=float("inf"),
                 **kwargs)


tqdm = progress
