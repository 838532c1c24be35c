"""asyncray's benchmark harness: Ray's microbenchmarks and more, run side by side.

Entry point: ``python bench/run.py`` or ``python -m bench`` (see bench/README.md).

Modules: :mod:`bench.cli` (command line), :mod:`bench.orchestrate` (one
subprocess per system, hard timeouts), :mod:`bench.child` (runs inside that
subprocess), :mod:`bench.fresh` (fresh-process probe), :mod:`bench.harness`
(timing and statistics), :mod:`bench.catalog` (the workload list),
:mod:`bench.workloads` (Ray-API workloads), :mod:`bench.peers` (process-pool
peers), :mod:`bench.tasks` (code that runs in workers), :mod:`bench.report`
(table, JSON, chart), :mod:`bench.systems` (interpreters and environments).
"""
