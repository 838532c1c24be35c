"""The driver's progress bars: one terminal bar per ``tqdm_ray`` bar in any worker.

A worker's ``asyncray.experimental.tqdm_ray.tqdm`` prints its state as one
JSON line (Ray's format, with Ray's magic token); the driver's output writer
hands those lines here (``_wire.output.progress_hook``) instead of printing
them, so a task updating its bar a thousand times shows one bar that moves,
not a thousand lines. Bars are drawn with ``tqdm`` when it is installed;
without it, a bar prints one line when it closes.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from .._wire import output


class BarManager:
    """The bars on this driver's terminal, by the worker bar they stand for."""

    def __init__(self) -> None:
        # Output of the runtime thread (embedded) and the reader thread (a head's driver).
        self._lock = threading.Lock()
        self._bars: dict[tuple[Any, Any], Any] = {}
        self._shown: dict[tuple[Any, Any], dict[str, Any]] = {}
        try:
            import tqdm

            self._tqdm: Any = tqdm.tqdm
        except ImportError:
            self._tqdm = None

    def update(self, state: dict[str, Any]) -> None:
        """Apply one worker bar's state (create, advance, close its terminal bar)."""
        key = (state.get("pid"), state.get("uuid"))
        with self._lock:
            if self._tqdm is None:
                self._update_plain(key, state)
                return
            bar = self._bars.get(key)
            if bar is None:
                if state.get("closed"):
                    return
                bar = self._bars[key] = self._tqdm(
                    desc=state.get("desc") or "",
                    total=state.get("total"),
                    unit=state.get("unit") or "it",
                    position=len(self._bars),
                    dynamic_ncols=True,
                    file=sys.stderr,
                )
            if state.get("desc") is not None and bar.desc != state["desc"]:
                bar.set_description(state["desc"], refresh=False)
            if state.get("total") != bar.total:
                bar.total = state.get("total")
            delta = int(state.get("x", 0)) - bar.n
            if delta:
                bar.update(delta)
            else:
                bar.refresh()
            if state.get("closed"):
                bar.close()
                del self._bars[key]

    def _update_plain(self, key: tuple[Any, Any], state: dict[str, Any]) -> None:
        if state.get("closed") and key not in self._shown:
            self._shown[key] = state
            total = state.get("total")
            done = f"{state.get('x', 0)}/{total}" if total else f"{state.get('x', 0)}"
            print(
                f"{state.get('desc') or 'progress'}: {done} {state.get('unit') or 'it'}",
                file=sys.stderr,
            )

    def close_all(self) -> None:
        """The session ends: close the bars still open."""
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            self._shown.clear()


_manager: BarManager | None = None


def manager() -> BarManager:
    """This driver's bars (made on first use)."""
    global _manager
    if _manager is None:
        _manager = BarManager()
    return _manager


def install() -> None:
    """Draw workers' progress bars on this driver's terminal from now on (``init``)."""
    output.progress_hook = lambda state: manager().update(state)


def uninstall() -> None:
    """``shutdown``: close what is open; progress lines print as they are again."""
    global _manager
    output.progress_hook = None
    if _manager is not None:
        _manager.close_all()
        _manager = None
