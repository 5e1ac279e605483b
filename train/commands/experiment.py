"""`mad-train experiment NAME`: one of the paper's tables or figures, trained, measured and written to a folder.

<out>/table.md (our numbers beside the paper's), <out>/*.png, <out>/results.json (one record per model and
seed), <out>/cells/<key>.json (a finished cell: skipped on --resume), <runs>/<key>/ (fit's run folders).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from train.experiments import TITLES
from train.experiments.budget import BUDGETS

PRESETS = ("standard", "hard")
MARKER = "experiment.json"  # what an experiment folder was started with; --resume must match it


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(TITLES), metavar="NAME",
                        help=f"which experiment: {', '.join(f'{k} ({title})' for k, title in TITLES.items())}")
    parser.add_argument("--preset", choices=PRESETS, default="standard",
                        help="synthetic data preset (default standard; hard is where the methods differ)")
    parser.add_argument("--budget", choices=BUDGETS, default="cpu",
                        help="smoke: seconds, tiny stand-in models (tests); cpu: hours on 2 cores; gpu: paper-sized "
                             "(configs/experiments/<budget>.yaml; default cpu)")
    parser.add_argument("--seeds", type=_at_least(1), default=None, metavar="N",
                        help="training seeds 42..42+N-1 (default: the budget's; mean ± std over them)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default runs/experiments/<name>-<preset>-<budget>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the experiment in --out: skip finished cells, resume interrupted training")
    parser.add_argument("--runs", type=Path, default=None, metavar="DIR",
                        help="fit's run folders (default <out>/runs); experiments may share one, so a cell with the "
                             "same config (e.g. MAD_small seed 42 in table2/3/4 and fig3) trains once; "
                             "do not run two experiments on one folder at the same time")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default); latency is always "
                                                         "measured on the CPU")
    parser.add_argument("--num-workers", type=_at_least(0), default=None, metavar="N",
                        help="DataLoader workers generating windows (overrides data.num_workers; not part of a "
                             "cell's identity)")


def _fail(message: str) -> int:
    print(f"mad-train experiment: {message}", file=sys.stderr)
    return 2


def _check_out(out: Path, args: argparse.Namespace) -> str | None:
    """Why `out` cannot be used, naming the argument; None when it can."""
    if out.exists() and not out.is_dir():
        return f"--out {out}: exists and is not a folder"
    marker = out / MARKER
    if not marker.is_file():
        return None
    if not args.resume:
        return f"--out {out} already holds an experiment; continue it with --resume, or choose another --out"
    started = json.loads(marker.read_text(encoding="utf-8"))
    for key, given in (("name", args.name), ("preset", args.preset), ("budget", args.budget)):
        if started.get(key) != given:
            argument = "NAME" if key == "name" else f"--{key}"
            return (f"{argument} {given} differs from the experiment in --out {out} ({started.get(key)}); "
                    "use its value or another --out")
    return None


def run(args: argparse.Namespace) -> int:
    from train.config import ConfigError
    from train.data_spec import DataSpecError
    from train.distributed import resolve_device
    from train.experiments.base import Context
    from train.experiments.budget import BudgetError, load_budget
    from train.experiments.cells import seeds_for
    from train.experiments.registry import EXPERIMENTS
    from train.experiments.runner import run_experiment, write_json

    experiment = EXPERIMENTS[args.name]
    out = args.out or Path("runs/experiments") / f"{args.name}-{args.preset}-{args.budget}"
    problem = _check_out(out, args)
    if problem:
        return _fail(problem)
    try:
        resolve_device(args.device)
    except ValueError as exc:
        return _fail(str(exc))  # names --device
    try:
        budget = load_budget(args.budget)
    except BudgetError as exc:
        return _fail(f"--budget {args.budget}: {exc}")
    seeds = seeds_for(args.seeds or budget.seeds)
    command = "mad-train experiment " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 2 and sys.argv[1] == "experiment" else f"mad-train experiment {args.name}"
    ctx = Context(experiment=args.name, preset=args.preset, budget=budget, seeds=seeds, out=out,
                  runs=args.runs or out / "runs", device=args.device, num_workers=args.num_workers, command=command)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MARKER, {"name": args.name, "preset": args.preset, "budget": args.budget})
    try:
        records, stats = run_experiment(experiment, ctx)
    except (ConfigError, BudgetError, DataSpecError) as exc:
        return _fail(str(exc))
    files = experiment.write(records, ctx)
    write_json(out / "results.json", {"experiment": args.name, "title": experiment.title, "preset": args.preset,
                                      "budget": budget.model_dump(mode="json"), "seeds": seeds, "records": records})
    print((out / "table.md").read_text(encoding="utf-8"))
    print(f"cells: {stats.recorded_before} finished before (skipped), {stats.run_now} run now, "
          f"{stats.not_run} not run at budget {budget.name}")
    print(f"wrote {', '.join(str(out / f) for f in [*files, 'results.json'])}")
    return 0
