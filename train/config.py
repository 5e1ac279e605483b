"""The YAML training config: one pydantic model, `extra="forbid"` so a misspelt key is named, not ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    spec: str = "synth:easy"  # synth:<preset> | path/to/train.h5 | aihub:<folder>; --data overrides
    # synth only: windows generated per split; each split has its own seed so they never share a window.
    synth_train: int = Field(200, ge=2)
    synth_test: int = Field(200, ge=2)
    synth_seed: int = 0  # train uses synth_seed, test synth_seed + 1 (validation is carved from train)
    power_freq_hz: float = Field(60.0, gt=0)
    # .h5 without a stored split and AI Hub folders: fraction of all windows kept for test (paper: 1:1).
    test_fraction: float = Field(0.5, gt=0, lt=1)
    h5_use_file_split: bool = False  # .h5 only: the file's own split column instead of test_fraction
    val_fraction: float = Field(0.1, gt=0, lt=1)  # carved from train, stratified by class
    materialise: bool = False  # load every window into memory once (synthetic generation is CPU work)
    num_workers: int = Field(0, ge=0)
    # Windows per training epoch: each epoch takes this many from its own seeded shuffle of the whole
    # train split, so a large on-the-fly synthetic split gives mostly unseen windows every epoch
    # while validation and checkpoints still come at a steady pace. None: the whole split per epoch.
    train_windows_per_epoch: int | None = Field(None, ge=1)
    # synth only: nuisance probabilities changed in the train split (validation, carved from it, too),
    # to oversample rare hard cases; the test split keeps the preset as it is. E.g. {multi_source_prob: 0.3}.
    synth_train_overrides: dict[str, float] = Field(default_factory=dict)
    # synth only: PRPD rendering families (mad.data.prpd_styles) the train split (and validation, carved
    # from it) draws its images with, one per window, uniformly (repeat a name to weight it); the test
    # split keeps the native renderer. Empty: native only. Held-out families are for evaluation.
    synth_prpd_families: tuple[str, ...] = ()
    # synth only: noise and nuisance families (mad.data.synthetic.NOISE_FAMILIES) the train split (and
    # validation) draws, one per window; items are names, "all", "default" or "-name" to drop one (e.g.
    # [all, -carrier] holds the carrier out); the test split keeps the default mixture. Empty: the default
    # (legacy) mixture of train/random/converter, which the shipped model was trained on.
    synth_noise_families: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check_overrides(self) -> DataConfig:
        from mad.data.prpd_styles import HELD_OUT_FAMILIES, check_families
        from mad.data.synthetic import preset_variant

        if self.synth_prpd_families:
            if not self.spec.startswith("synth:"):
                raise ValueError(f"data.synth_prpd_families applies to synth: specs only, spec is {self.spec!r}")
            try:
                check_families(self.synth_prpd_families)
            except ValueError as exc:
                raise ValueError(f"data.synth_prpd_families: {exc}") from None
            held_out = sorted(set(self.synth_prpd_families) & set(HELD_OUT_FAMILIES))
            if held_out:
                raise ValueError(f"data.synth_prpd_families: {held_out} are held-out families, kept for evaluation")

        if self.synth_noise_families:
            from mad.data.synthetic import resolve_noise_families

            if not self.spec.startswith("synth:"):
                raise ValueError(f"data.synth_noise_families applies to synth: specs only, spec is {self.spec!r}")
            try:
                resolve_noise_families(self.synth_noise_families)
            except ValueError as exc:
                raise ValueError(f"data.synth_noise_families: {exc}") from None

        if self.synth_train_overrides:
            if not self.spec.startswith("synth:"):
                raise ValueError(f"data.synth_train_overrides applies to synth: specs only, spec is {self.spec!r}")
            try:
                preset_variant(self.spec.removeprefix("synth:"), self.synth_train_overrides)
            except ValueError as exc:
                raise ValueError(f"data.synth_train_overrides: {exc}") from None
        return self


class AugmentConfig(_Strict):
    gain: tuple[float, float] = (0.8, 1.25)  # sensor gain multiplier on the series
    baseline_counts: float = Field(20.0, ge=0)  # +- ADC counts added to the series
    noise_std_counts: float = Field(2.0, ge=0)  # Gaussian noise added to the series, ADC counts
    max_phase_shift_samples: int = Field(3, ge=0)  # roll the series by +-k samples, PRPD columns alike
    drop_image_prob: float = Field(0.15, ge=0, le=1)  # per view; never together with the signal
    drop_signal_prob: float = Field(0.15, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        low, high = self.gain
        if not 0 < low <= high:
            raise ValueError(f"augment.gain must be 0 < low <= high, got {self.gain}")
        if self.drop_image_prob + self.drop_signal_prob > 1:
            raise ValueError("augment.drop_image_prob + augment.drop_signal_prob must be <= 1 (never drop both)")
        return self


class StageConfig(_Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(5e-6, gt=0)
    warmup_epochs: float = Field(1.0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # cosine floor as a fraction of lr
    patience: int = Field(20, ge=1)  # epochs without a better validation metric before stopping
    augment: bool = True
    # SupCon (stage 1) only.
    views: int = Field(2, ge=2)
    temperature: float = Field(0.5, gt=0)
    flow_nll_weight: float = Field(0.01, ge=0)
    probe_windows: int = Field(200, ge=5)  # train windows whose projections give class centroids for val F1


class OptimConfig(_Strict):
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = Field(1.0, gt=0)
    # topk routing only: weights of the model's MoE auxiliary losses (ignored for dense routing).
    moe_load_balance_weight: float = Field(0.01, ge=0)
    moe_local_entropy_weight: float = Field(0.0, ge=0)
    moe_global_entropy_weight: float = Field(0.0, ge=0)


class TrainConfig(_Strict):
    name: str = "mad_tiny"  # artefact name: <out>/<name>.safetensors + <name>.json
    model: str | dict[str, Any] = "mad_tiny"  # preset name (MAD or a baseline) or a full model config dict
    # Start from these weights (a mad-train checkpoint: .safetensors with its .json sidecar, sha256
    # checked) instead of a fresh init: fine-tuning, e.g. the shipped synthetic model on AI Hub data.
    # Its model_config must equal `model`'s. --init-from overrides.
    init_from: str | None = None
    seed: int = 42
    stages: tuple[Literal["supcon", "ce"], ...] = ("supcon", "ce")
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    supcon: StageConfig = StageConfig(lr=5e-6)
    ce: StageConfig = StageConfig(lr=5e-6)
    optim: OptimConfig = OptimConfig()

    @model_validator(mode="after")
    def _check_stages(self) -> TrainConfig:
        if self.stages not in (("supcon", "ce"), ("ce",)):
            raise ValueError(f"stages must be supcon,ce or ce (the CE-only ablation), got {','.join(self.stages)}")
        return self


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the file and the field."""


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict) else ""
        lines.append(f"  {where}: {err['msg']}{shown}")
    return "\n".join(lines)


def parse_config(raw: dict[str, Any], source: str = "<dict>") -> TrainConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid training config\n{_describe(exc)}") from None


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the training config ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_config(raw if raw is not None else {}, str(path))


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")
