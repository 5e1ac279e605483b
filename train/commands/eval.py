"""`mad-train eval`: metrics, figures and a markdown report for a checkpoint on a data spec."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="<name>.safetensors (with its <name>.json sidecar)")
    parser.add_argument("--data", required=True, help="synth:<preset> | path/to/file.h5 | aihub:<folder>")
    parser.add_argument("--out", default=None, help="report folder (default: <checkpoint dir>/eval)")
    parser.add_argument("--split", choices=["test", "all"], default="test",
                        help="test split of the spec as fit made it (default), or every window of it")
    parser.add_argument("--n", type=int, default=None, help="synth: windows to generate (default: data.synth_test "
                                                            "of the checkpoint's training config)")
    parser.add_argument("--test-seed", type=int, default=None,
                        help="synth: generate the test windows from this seed instead of the one fit held out "
                             "(a fresh test set; refused if it is the training seed)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--latent-windows", type=int, default=300, help="windows in the latent-space figure")
    parser.add_argument("--single-modality", action="store_true",
                        help="also score image-only and signal-only inputs (missing-modality robustness)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from torch.utils.data import ConcatDataset

    from mad.model import MAD
    from mad.runtime import CheckpointError, load_model
    from train.config import ConfigError, DataConfig
    from train.data_spec import DataSpecError, open_datasets
    from train.distributed import resolve_device
    from train.metrics import classification_report, familiarity_gate_report
    from train.predict import latent_stages, predict_scores
    from train.report import write_report

    try:
        device = resolve_device(args.device)
        model = load_model(args.checkpoint, device=device)
        sidecar = model.mad_meta["sidecar"]
        data_fields = dict((sidecar.get("training_config") or {}).get("data", {}))
        data_fields.update(materialise=False, num_workers=0)
        if args.n is not None:
            if args.n < 2:
                raise ConfigError(f"--n must be >= 2, got {args.n}")
            data_fields.update(synth_test=args.n)
        config = DataConfig.model_validate(data_fields)
        splits = open_datasets(args.data, config, int(sidecar.get("seed", 42)))
    except (CheckpointError, ConfigError, DataSpecError, FileNotFoundError, ValueError) as exc:
        print(f"mad-train eval: {exc}")
        return 2
    dataset = splits.test if args.split == "test" else ConcatDataset([splits.train, splits.val, splits.test])
    if args.test_seed is not None:
        if not args.data.startswith("synth:") or args.split != "test":
            print(f"mad-train eval: --test-seed needs a synth:<preset> spec and --split test (got {args.data!r}, "
                  f"--split {args.split})")
            return 2
        if args.test_seed == config.synth_seed:
            print(f"mad-train eval: --test-seed {args.test_seed} is the training seed (data.synth_seed)")
            return 2
        from mad.data.datasets import SyntheticDataset

        dataset = SyntheticDataset(args.data.removeprefix("synth:"), args.test_seed, config.synth_test,
                                   power_freq_hz=config.power_freq_hz)
    class_names = model.mad_meta["class_names"]
    variants = ["both"]
    if args.single_modality and model.config.use_image and model.config.use_signal:
        variants += ["image", "signal"]
    calibration = model.mad_meta.get("calibration")
    threshold = None if calibration is None else float(calibration["familiarity"]["threshold"])
    reports, uncalibrated, gates, main_probs, main_raw, main_labels = {}, {}, {}, None, None, None
    for variant in variants:
        scores = predict_scores(model, dataset, device, args.batch_size, modalities=variant,
                                desc=f"eval ({variant})")
        labels, probs = scores["labels"], scores["probs"]  # calibrated where the checkpoint is
        raw = torch.softmax(torch.from_numpy(scores["logits"]), dim=-1).numpy()
        reports[variant] = classification_report(labels, probs, class_names)
        uncalibrated[variant] = classification_report(labels, raw, class_names)
        if threshold is not None:
            gates[variant] = familiarity_gate_report(labels, probs, scores["familiarity"] >= threshold, class_names)
        if variant == "both":
            main_probs, main_raw, main_labels = probs, raw, labels
            main_scores = scores
    latent = None  # the latent-space figure shows MAD's flows (the paper's Figure 3); a baseline has none
    if isinstance(model, MAD):
        with torch.inference_mode():
            latent = latent_stages(model, dataset, device, args.latent_windows)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    path = write_report(out, checkpoint=str(args.checkpoint), data_spec=args.data, meta=model.mad_meta,
                        reports=reports, y_true=main_labels, probs=main_probs, latent=latent,
                        uncalibrated=uncalibrated if calibration is not None else None,
                        probs_uncalibrated=main_raw if calibration is not None else None, gates=gates or None)
    # Per-window outputs (labels, raw logits, probabilities, pooled features, familiarity), so another
    # calibration (threshold, T, statistics) can be scored on the same windows without a forward.
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "predictions.npz", **{k: v.astype(np.float32) if k == "pooled" else v
                                                    for k, v in main_scores.items()})
    if calibration is None:
        print("no calibration in this checkpoint: raw probabilities, no familiarity gate (mad-train calibrate)")
    for name, r in reports.items():
        ece = f"{r.ece:.4f}"
        if calibration is not None:
            ece = f"{uncalibrated[name].ece:.4f} -> {ece} (T={calibration['temperature']:.3f})"
        print(f"{name}: n={r.n} accuracy={r.accuracy:.4f} macro-F1={r.macro_f1:.4f} macro-AUC={r.macro_auc:.4f} "
              f"ECE={ece}")
        gate = gates.get(name)
        if gate is not None:
            familiar = gate["familiar"]
            f1 = "n/a" if familiar is None else f"{familiar['macro_f1']:.4f}"
            print(f"  familiarity gate: {gate['unfamiliar']} of {gate['n']} unfamiliar "
                  f"({100 * gate['unfamiliar_fraction']:.2f} %), macro-F1 on familiar windows {f1}, "
                  f"errors flagged {gate['errors_flagged']} of {gate['errors']}")
    print(f"report: {path}")
    return 0
