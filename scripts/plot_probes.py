"""One figure from several RL probes: `python scripts/plot_probes.py [LABEL=]PROBE_CSV ... --out FIG.png`.

Each argument is an `rl/<method>/probe.csv` (label: the method folder's name) or `label=path`; the figure
(`budgetlab.plots.probe_curves`) is written as PNG and SVG next to `--out`, and the table is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from budgetlab import plots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probes", nargs="+", metavar="[LABEL=]PROBE_CSV")
    ap.add_argument("--out", required=True, help="figure path; .png and .svg are written")
    args = ap.parse_args(argv)
    frames = []
    for spec in args.probes:
        label, _, path = spec.rpartition("=")
        path = Path(path)
        if not path.is_file():
            print(f"{path} does not exist: give rl/<method>/probe.csv files of runs with PROBE_EVERY > 0.", file=sys.stderr)
            return 2
        frames.append(pd.read_csv(path).assign(method=label or path.parent.name))
    probes = pd.concat(frames, ignore_index=True)
    plots.setup_style()
    out = Path(args.out)
    plots.save(plots.probe_curves(probes), out.parent, out.stem)
    print(probes.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
