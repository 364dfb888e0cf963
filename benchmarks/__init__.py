"""The benchmark scripts: thin command lines over pose3dfr, run from the repository root as modules,
`python -m benchmarks.NAME --help`. Their shared helpers live in benchmarks/harness.py; what produces a
published number (protocols, reports) lives in the package (pose3dfr.eval)."""
