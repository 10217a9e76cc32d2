"""Progress that suits where it is shown: a notebook bar in Jupyter, a terminal bar on a
terminal, plain lines (no carriage returns, no cursor moves) in a file or a pipe."""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where a widget bar shows)."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        return type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except AttributeError:
        return False


class Lines:
    """The bar's interface (write, update, set_description, refresh, close, n, total) as
    plain lines: each `write` is one line; the rest prints nothing."""

    def __init__(self, total: int, initial: int = 0, file=None):
        self.total, self.n, self.file = total, initial, file or sys.stderr

    def write(self, text: str, file=None) -> None:
        print(text, file=file or self.file, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_description(self, desc: str, refresh: bool = True) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bar(total: int, initial: int = 0, desc: str = "", unit: str = "it", file=None, **kw):
    """A progress bar of `total` steps, `initial` done already (see the module docstring)."""
    file = file or sys.stderr
    if in_notebook():
        try:
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(total=total, initial=initial, desc=desc, unit=unit, **kw)
        except ImportError:  # no ipywidgets: plain lines
            return Lines(total, initial, file)
    if not getattr(file, "isatty", lambda: False)():
        return Lines(total, initial, file)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=file, dynamic_ncols=True, **kw)
