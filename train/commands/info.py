"""`mad-train info`: parameters per component and GMACs of model presets (MAD and the baselines), next to the
paper's figures."""

from __future__ import annotations

import argparse

from mad.flops import COMPONENTS, PAPER_FIGURES, ModelCost, model_cost
from mad.model import PRESETS

CONVENTION = ("GMACs: multiply-adds (fvcore convention, 1 MAC = 1 multiply + 1 add), batch 1, classification "
              "path, Linear/Conv layers + attention matmuls; norms/activations/softmax not counted.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", choices=sorted(PRESETS), metavar="NAME",
                        help=f"preset to describe (repeatable; default: all of {', '.join(PRESETS)})")


def format_table(costs: list[ModelCost]) -> str:
    header = ["model", "tokens", *(f"{c} (M)" for c in COMPONENTS), "total (M)", "GMACs", "paper M", "paper GFLOPs"]
    rows = []
    for cost in costs:
        paper_params, paper_flops = PAPER_FIGURES.get(cost.name, (None, None))
        rows.append([
            cost.name, str(cost.tokens), *(f"{cost.params[c] / 1e6:.3f}" for c in COMPONENTS),
            f"{cost.params['total'] / 1e6:.3f}", f"{cost.gmacs:.3f}",
            "-" if paper_params is None else f"{paper_params:.2f}",
            "-" if paper_flops is None else f"{paper_flops:.2f}",
        ])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    names = args.model or list(PRESETS)
    print(format_table([model_cost(name) for name in names]))
    print(CONVENTION)
    print("Paper (table 3) does not state its FLOP convention; see docs/model.md for the gap.")
    return 0
