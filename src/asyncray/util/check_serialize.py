"""``inspect_serializability``: find what keeps an object from pickling (Ray's
``ray.util.inspect_serializability``, same signature, report and return).

It walks a function's globals and nonlocals, or an object's members, down to
``depth`` levels, and collects the innermost objects cloudpickle refuses. The
report is Ray's, without colour codes.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Optional

import cloudpickle

__all__ = ["FailureTuple", "inspect_serializability"]

_DOCS = "https://docs.ray.io/en/master/ray-core/objects/serialization.html#troubleshooting"


class _Printer:
    def __init__(self, print_file: Optional[IO[str]]) -> None:
        self.level = 0
        self.print_file = print_file

    @contextmanager
    def indent(self) -> Iterator[None]:
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    def print(self, msg: str) -> None:
        print("    " * self.level + msg, file=self.print_file)


class FailureTuple:
    """One object that failed to serialize: ``obj``, the ``path`` of names
    that leads to it, and the ``parent`` that references it."""

    def __init__(self, obj: Any, path: tuple[Any, ...], parent: Any) -> None:
        self.obj = obj
        self.path = path
        self.parent = parent

    def __repr__(self) -> str:
        formatted = [str(p) if p is not None else "unknown" for p in self.path]
        var_name = formatted[-1] if formatted else "unknown"
        return (
            f"FailTuple({var_name} [path={' -> '.join(formatted)}, "
            f"obj={self.obj}, parent={self.parent}])"
        )


def _named(path: tuple[Any, ...], name: Optional[str]) -> tuple[Any, ...]:
    return path + ((name,) if name is not None else ())


def _inspect_items(
    items: Any, depth: int, parent: Any, failures: set[FailureTuple], printer: _Printer, path: Any
) -> bool:
    for name, obj in items:
        ok, _ = _inspect(obj, name, depth - 1, parent, failures, printer, path)
        if not ok:
            return True
    return False


def _inspect_function(
    base_obj: Any, depth: int, failures: set[FailureTuple], printer: _Printer, path: Any
) -> None:
    printer.print(f"Inspecting closure of '{base_obj.__qualname__}':")
    closure = inspect.getclosurevars(base_obj)
    found = False
    for kind, scope in (("global", closure.globals), ("nonlocal", closure.nonlocals)):
        if scope and not found:
            printer.print(f"Detected {len(scope)} {kind} variables. Checking serializability...")
            with printer.indent():
                found = _inspect_items(scope.items(), depth, base_obj, failures, printer, path)
    if not found:
        printer.print(
            f"WARNING: Did not find non-serializable object in {base_obj.__qualname__}. "
            "This may be because the object is only non-serializable when combined with "
            "other objects, or because cloudpickle and the traversal disagree on which "
            "object causes the failure. Try calling `ray.util.inspect_serializability` "
            "directly on the suspected object, or simplify the closure to isolate the cause."
        )


def _inspect_object(
    base_obj: Any, depth: int, failures: set[FailureTuple], printer: _Printer, path: Any
) -> None:
    with printer.indent():
        functions = inspect.getmembers(base_obj, predicate=inspect.isfunction)
        found = _inspect_items(functions, depth, base_obj, failures, printer, path)
        if not found:
            members = [
                (name, obj)
                for name, obj in inspect.getmembers(base_obj)
                if not (name.startswith("__") and name.endswith("__"))
                and not inspect.isbuiltin(obj)
            ]
            found = _inspect_items(members, depth, base_obj, failures, printer, path)
    if not found:
        obj_name = (
            base_obj.__name__
            if inspect.isclass(base_obj)
            else f"{type(base_obj).__name__} instance"
        )
        printer.print(
            f"WARNING: Did not find non-serializable object in {obj_name}. This may be because "
            "the object is only non-serializable when combined with other objects, or because "
            "cloudpickle and the traversal disagree. Try calling "
            "`ray.util.inspect_serializability` on individual attributes to isolate the cause."
        )


def _inspect(
    base_obj: Any,
    name: Optional[str],
    depth: int,
    parent: Any,
    failures: Optional[set[FailureTuple]],
    printer: _Printer,
    path: tuple[Any, ...] = (),
) -> tuple[bool, set[FailureTuple]]:
    top_level = failures is None
    failures = set() if failures is None else failures
    declaration = f"Checking Serializability of {base_obj}"
    rule = "=" * min(len(declaration), 80)
    if top_level:
        printer.print(rule)
        printer.print(declaration)
        printer.print(rule)
    else:
        printer.print(f"Serializing '{name}' {base_obj}...")
    try:
        cloudpickle.dumps(base_obj)
        return True, failures
    except Exception as e:
        printer.print(f"!!! FAIL serialization: {e}")
        if depth == 0:
            try:
                failures.add(FailureTuple(base_obj, _named(path, name), parent))
            except Exception:
                pass  # an unhashable object: reported by its parent instead
    if depth <= 0:
        return False, failures

    if inspect.isfunction(base_obj):
        _inspect_function(base_obj, depth, failures, printer, _named(path, name))
    else:
        _inspect_object(base_obj, depth, failures, printer, _named(path, name))
    if not failures:
        failures.add(FailureTuple(base_obj, _named(path, name), parent))

    if top_level:
        printer.print(rule)
        listed = "\n".join(str(k) for k in failures)
        printer.print(
            f"Variable: \n\n\t{listed}\n\nwas found to be non-serializable. There may be "
            "multiple other undetected variables that were non-serializable. "
        )
        printer.print(
            "Consider either removing the instantiation/imports of these variables or moving "
            "the instantiation into the scope of the function/class. "
        )
        printer.print(rule)
        printer.print(f"Check {_DOCS} for more information.")
        printer.print(rule)
    return False, failures


def inspect_serializability(
    base_obj: Any,
    name: Optional[str] = None,
    depth: int = 3,
    print_file: Optional[Any] = None,
) -> tuple[bool, set[FailureTuple]]:
    """Identify what keeps ``base_obj`` from serializing; print a report to
    ``print_file`` (stdout by default).

    Returns ``(True, set())`` if it serializes, else ``(False, failures)``: a set
    of ``FailureTuple`` naming the innermost objects that failed.
    """
    return _inspect(base_obj, name, depth, None, None, _Printer(print_file))
