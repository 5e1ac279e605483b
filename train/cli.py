"""`mad-train`: training, evaluation, export and data generation."""

from __future__ import annotations

import sys

from mad import subcommands

# name -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("train.commands.info", "parameters per component and GMACs of a model preset"),
    "synth": ("train.commands.synth", "materialise a synthetic data set (.h5 or AI Hub folder)"),
    "synth-recording": ("train.commands.synth_recording", "write a multi-sensor recorded.h5"),
    "gallery": ("train.commands.gallery", "draw the PRPD gallery and series figures"),
    "baselines": ("train.commands.baselines", "difficulty ladder: simple classifiers per preset"),
    "fit": ("train.commands.fit", "two-stage training (SupCon then cross-entropy)"),
    "eval": ("train.commands.eval", "evaluate a checkpoint and write a report"),
    "calibrate": ("train.commands.calibrate", "fit temperature scaling and the familiarity gate into a checkpoint"),
    "export": ("train.commands.export", "export a checkpoint (TorchScript, ONNX)"),
    "classify-prpd": ("train.commands.classify_prpd", "classify a folder of PRPD exports (CSV matrices, PNG/JPEG)"),
    "prpd-families": ("train.commands.prpd_families", "scores per PRPD rendering family (training vs held-out)"),
    "noise-families": ("train.commands.noise_families", "votes on Noise windows per noise family (seen vs unseen)"),
    "experiment": ("train.commands.experiment", "the paper's Tables 2-4 and Figures 3, 6: train, measure, tabulate"),
}


def main(argv: list[str] | None = None) -> int:
    return subcommands.main("mad-train", __doc__ or "", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
