"""Two recipes compared end to end, seed by seed (docs/results.md section 8: what ships as `default`).

    python -m benchmarks.paired_end_to_end --base jam --other zv-full runs/e2e_seed0.json runs/e2e_seed1.json ...

Each JSON is one `python -m benchmarks.end_to_end` run holding one seed of both recipes as `--extra` systems
named <prefix><seed> (e.g. jam0 and zv-full0). The pairing and the table are pose3dfr.eval.end_to_end_paired.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from pose3dfr.eval.end_to_end_paired import markdown, paired


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="end_to_end JSONs, one seed of both recipes each")
    parser.add_argument("--base", required=True, help="system name prefix of the recipe compared against")
    parser.add_argument("--other", required=True, help="system name prefix of the recipe compared")
    args = parser.parse_args(argv)
    print(markdown(paired(args.files, args.base, args.other), args.base, args.other))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
