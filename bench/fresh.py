"""Fresh-process probe: time ``import X; X.init(); X.get(f.remote())``, then idle memory.

Run by :mod:`bench.orchestrate` as ``python fresh.py SYSTEM IDLE_S [child |
--address ADDR]``
from a private temporary directory (a copy of this file), so the timed
imports see nothing of the benchmark package. Only ``time`` and ``sys`` are
imported before the clock starts. Prints one line, ``@@bench {json}``, with:

* ``import_s``, ``init_s``, ``first_s``: the three phases, in-process;
  ``total_s`` is their sum, the "init to first result" figure.
* ``first_wall``: ``time.time()`` at the first result, so the parent can add
  interpreter start (spawn to first result, end to end).
* ``rss_mb``, ``pss_mb``, ``n_procs``: the process tree (this driver and all
  its descendants) after ``IDLE_S`` seconds of idling. PSS is ``None`` if any
  process's ``smaps`` is unreadable.

With ``--address ADDR`` (``connect time``), the runtime's ``init`` is
``init(address=ADDR)``: a driver connecting to a running head.

With ``child`` (quick mode), the line is a ``fresh`` event of the
:mod:`bench.child` protocol, and the process then *becomes* the system's
child: it reads the spec from stdin and runs the workloads, the runtimes on
the ``init()`` measured here, which saves a second start of the runtime (3-5 s
for Ray). Everything above is measured before the benchmark package is
imported, so the figures are those of a standalone probe.

The workers must not be this file's ``__main__`` body, so all work is under
``if __name__ == "__main__"`` (pools with the spawn method re-import it).
"""

import time

T0 = time.perf_counter()

import sys  # noqa: E402

RUNTIMES = ("asyncray", "ray")


def f() -> int:
    """The first (and only) task."""
    return 1


def start(system: str, address: str = "") -> tuple[list[float], object]:
    """Import, start and use ``system`` once; return phase end times and a closer."""
    marks = []
    if system in RUNTIMES:
        rt = __import__(system)
        marks.append(time.perf_counter())
        if address:
            rt.init(address=address)
        else:
            rt.init()
        marks.append(time.perf_counter())
        rt.get(rt.remote(f).remote())
        closer = rt.shutdown
    elif system == "mp":
        import multiprocessing

        marks.append(time.perf_counter())
        pool = multiprocessing.Pool()
        marks.append(time.perf_counter())
        pool.apply(f)
        closer = pool.terminate
    elif system == "cf":
        import concurrent.futures

        marks.append(time.perf_counter())
        ex = concurrent.futures.ProcessPoolExecutor()
        marks.append(time.perf_counter())
        ex.submit(f).result()
        closer = ex.shutdown
    elif system == "loky":
        import loky

        marks.append(time.perf_counter())
        ex = loky.get_reusable_executor()
        marks.append(time.perf_counter())
        ex.submit(f).result()
        closer = ex.shutdown
    else:
        raise SystemExit(f"unknown system {system!r}")
    marks.append(time.perf_counter())
    return marks, closer


def tree_memory() -> dict:
    """RSS and PSS (MB) and process count of this process and its descendants."""
    import psutil

    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    rss = pss = 0
    pss_ok = True
    n = 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            n += 1
        except psutil.Error:
            continue
        try:
            pss += p.memory_full_info().pss
        except (psutil.Error, AttributeError):
            pss_ok = False
    mb = 1024 * 1024
    return {"rss_mb": rss / mb, "pss_mb": pss / mb if pss_ok else None, "n_procs": n}


def main() -> None:
    """Measure, print the line, shut down (or hand over to the child)."""
    system, idle_s = sys.argv[1], float(sys.argv[2])
    handoff = sys.argv[3:] == ["child"]
    address = sys.argv[4] if sys.argv[3:4] == ["--address"] else ""
    (t_import, t_init, t_first), closer = start(system, address)
    first_wall = time.time()
    time.sleep(idle_s)
    result = {
        "import_s": t_import - T0,
        "init_s": t_init - t_import,
        "first_s": t_first - t_init,
        "total_s": t_first - T0,
        "first_wall": first_wall,
        **tree_memory(),
    }
    import json

    if handoff:
        result = {"event": "fresh", **result}
    sys.stdout.write("@@bench " + json.dumps(result) + "\n")
    sys.stdout.flush()
    if not handoff:
        closer()
        return
    if system not in RUNTIMES:
        closer()  # the child makes its pools with the harness's worker counts
    from bench import child  # the repository root is on PYTHONPATH

    child.main(initialized=system in RUNTIMES)


if __name__ == "__main__":
    main()
