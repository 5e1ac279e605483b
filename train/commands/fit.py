"""`mad-train fit`: two-stage training (SupCon then cross-entropy) from a YAML config."""

from __future__ import annotations

import argparse
import json

from train.config import ConfigError, load_config
from train.data_spec import DataSpecError


def _stages(text: str) -> tuple[str, ...]:
    stages = tuple(part.strip() for part in text.split(",") if part.strip())
    if stages not in (("supcon", "ce"), ("ce",)):
        raise argparse.ArgumentTypeError(f"--stages must be supcon,ce or ce, got {text!r}")
    return stages


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training YAML, e.g. configs/mad_small.yaml")
    parser.add_argument("--data", default=None, help="synth:<preset> | path/to/train.h5 | aihub:<folder> "
                                                     "(default: data.spec in the config)")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--resume", default=None, metavar="DIR", help="continue the interrupted run in DIR")
    parser.add_argument("--stages", type=_stages, default=None,
                        help="supcon,ce (default, from the config) or ce (CE-only ablation)")
    parser.add_argument("--stop-after-epochs", type=int, default=None, metavar="N",
                        help="stop this invocation after N epochs (continue later with --resume)")
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                        help="start from these weights (.safetensors + sidecar, same model config) instead "
                             "of a fresh init; overrides init_from in the config")
    parser.add_argument("--num-workers", type=int, default=None, metavar="N",
                        help="DataLoader workers generating/reading windows; overrides data.num_workers (a property "
                             "of the machine, not of the recipe: the same windows come in the same order)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write TensorBoard events to <out>/tensorboard (needs mad-pd[tensorboard])")


def run(args: argparse.Namespace) -> int:
    from mad.runtime.loading import CheckpointError
    from train.distributed import shutdown_distributed
    from train.fit import MissingExtraError, fit

    try:
        config = load_config(args.config)
        if args.stages is not None:
            config = config.model_copy(update={"stages": args.stages})
        if args.init_from is not None:
            config = config.model_copy(update={"init_from": args.init_from})
        if args.num_workers is not None:
            if args.num_workers < 0:
                raise ConfigError(f"--num-workers must be >= 0, got {args.num_workers}")
            data = config.data.model_copy(update={"num_workers": args.num_workers})
            config = config.model_copy(update={"data": data})
        if args.stop_after_epochs is not None and args.stop_after_epochs < 1:
            raise ConfigError(f"--stop-after-epochs must be >= 1, got {args.stop_after_epochs}")
        out = args.out or f"runs/{config.name}"
        result = fit(config, out, data_spec=args.data, device=args.device, resume=args.resume,
                     stop_after_epochs=args.stop_after_epochs, tensorboard=args.tensorboard)
    except (ConfigError, DataSpecError, FileNotFoundError, FileExistsError, MissingExtraError,
            CheckpointError) as exc:
        print(f"mad-train fit: {exc}")
        return 2
    finally:
        shutdown_distributed()
    if not result.completed:
        print(f"stopped after the requested epochs; continue with --resume {result.out_dir}")
        return 0
    if result.test_metrics is not None:
        summary = {k: result.test_metrics[k] for k in ("n", "accuracy", "macro_f1", "macro_auc", "ece")}
        print(f"checkpoint: {result.checkpoint}\ntest: {json.dumps(summary)}")
    return 0
