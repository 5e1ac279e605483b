"""`mad-train calibrate`: temperature scaling and the familiarity gate, fitted on validation windows and
written into the checkpoint (sidecar "calibration" block + `<name>.calibration.safetensors`)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from train.calibration import CALIBRATION_SEED, DEFAULT_QUANTILE, DEFAULT_WINDOWS

    parser.add_argument("--checkpoint", required=True, help="<name>.safetensors (with its <name>.json sidecar)")
    parser.add_argument("--out", default=None,
                        help="write a calibrated copy here (<stem> or <stem>.safetensors) instead of in place")
    parser.add_argument("--data", default=None, help="data spec (default: the checkpoint's training spec; synth: "
                        "specs generate fresh windows, .h5/aihub: use fit's validation split)")
    parser.add_argument("--n-val", type=int, default=DEFAULT_WINDOWS,
                        help=f"synth: windows to generate (default {DEFAULT_WINDOWS})")
    parser.add_argument("--seed", type=int, default=CALIBRATION_SEED,
                        help=f"synth: seed of the windows (default {CALIBRATION_SEED}; the checkpoint's training "
                             "and test seeds and the documented test seeds 1000/1001 are refused)")
    parser.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE,
                        help=f"fraction of in-family windows the threshold flags unfamiliar (default "
                             f"{DEFAULT_QUANTILE})")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers generating windows")


def run(args: argparse.Namespace) -> int:
    from mad.runtime import CheckpointError
    from train.calibration import CalibrationError, calibrate
    from train.config import ConfigError
    from train.data_spec import DataSpecError
    from train.distributed import resolve_device

    try:
        device = resolve_device(args.device)
        sidecar, fit = calibrate(args.checkpoint, out=args.out, data=args.data, seed=args.seed, n=args.n_val,
                                 quantile=args.quantile, batch_size=args.batch_size, device=device,
                                 num_workers=args.num_workers)
    except (CalibrationError, CheckpointError, ConfigError, DataSpecError, FileNotFoundError, ValueError) as exc:
        print(f"mad-train calibrate: {exc}")
        return 2
    r = fit.report
    print(f"temperature T = {fit.temperature:.4f}: ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f}, "
          f"NLL {r['nll_before']:.4f} -> {r['nll_after']:.4f} on {r['windows']} calibration windows "
          f"(macro-F1 {r['macro_f1']:.4f})")
    print(f"familiarity (mahalanobis) threshold {fit.threshold:.4f}: unfamiliar "
          f"{100 * r['unfamiliar_fraction_out_of_sample']:.2f} % of the calibration windows out of sample, "
          f"{100 * r['unfamiliar_fraction_in_sample']:.2f} % in sample")
    print(f"wrote {sidecar} (calibration block) and its .calibration.safetensors")
    return 0
