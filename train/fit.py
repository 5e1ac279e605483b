"""Two-stage training: SupCon pretraining (stage 1), then cross-entropy fine-tuning (stage 2).

Run layout under `out_dir`:
  metrics.csv                     one row per epoch and stage
  tensorboard/                    the same figures plus the per-step loss (with tensorboard=True)
  data.json                       split sizes and class balance
  stages/<name>_<stage>_best.*    best weights of each stage (safetensors + sidecar)
  state/                          last epoch's resumable state (see train/checkpoint.py)
  <name>.safetensors + .json      the final model (best stage-2 weights) with test metrics

Reproducibility: shuffling comes from DistributedSampler(seed, epoch) and augmentation from a
generator seeded by (seed, stage, epoch); the global RNG (dropout) is saved with the state, so a
resumed run continues exactly where an uninterrupted one would be.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from mad.constants import CLASS_NAMES, NUM_CLASSES
from mad.losses import combine_aux_losses, supcon_loss
from mad.model import build_model
from train.augment import ModalityMask, augment_batch, sample_modality_mask
from train.checkpoint import load_training_state, save_checkpoint, save_training_state
from train.config import StageConfig, TrainConfig, config_to_dict, parse_config
from train.data_spec import DataSplits, iterate_batches, open_datasets
from train.distributed import DistContext, barrier, gather_no_grad, gather_with_grad, init_distributed
from train.metrics import alignment_uniformity, classification_report, macro_f1
from train.predict import autocast_for, embed, nearest_centroid_predict, predict_probs

STAGE_SEED_OFFSET = {"supcon": 1, "ce": 2}
CSV_FIELDS = ("stage", "epoch", "step", "lr", "train_loss", "train_main", "train_flow_nll", "train_moe",
              "val_macro_f1", "val_accuracy", "best_val_macro_f1", "epoch_seconds", "train_samples_per_s",
              "val_alignment", "val_uniformity")  # the last two: SupCon stage only (train/metrics.py)


@dataclass
class FitResult:
    out_dir: Path
    completed: bool  # False when stopped by stop_after_epochs (resume to continue)
    checkpoint: Path | None = None
    test_metrics: dict[str, Any] | None = None
    best_val: dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine down to min_ratio at the last step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: nn.Module, stage: StageConfig, config: TrainConfig) -> torch.optim.AdamW:
    # nanoGPT: decay matrices only; biases, norms and embeddings-as-vectors stay undecayed.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=stage.lr, betas=config.optim.betas)


def set_trainable_heads(model: nn.Module, stage: str) -> None:
    """Stage 1 trains the projection head, stage 2 the classifier; the other head is frozen (dropped)."""
    for p in model.parameters():
        p.requires_grad_(True)
    frozen = model.classifier if stage == "supcon" else model.projection_head
    for p in frozen.parameters():
        p.requires_grad_(False)


class StageObjective(nn.Module):
    """One forward = one training loss, so DDP sees a single forward per backward."""

    def __init__(self, model: nn.Module, stage: str, stage_config: StageConfig, config: TrainConfig) -> None:
        super().__init__()
        self.model, self.stage, self.stage_config, self.config = model, stage, stage_config, config

    def forward(self, images: torch.Tensor, series: torch.Tensor, labels: torch.Tensor, mask: ModalityMask
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out, aux = self.model(images, series, for_supcon=self.stage == "supcon", return_aux=True,
                              image_present=mask.keep_image, signal_present=mask.keep_signal)
        if self.stage == "supcon":
            views = self.stage_config.views
            feats = out.float().reshape(views, -1, out.shape[-1]).transpose(0, 1)  # (B, V, P)
            main = supcon_loss(gather_with_grad(feats), gather_no_grad(labels), self.stage_config.temperature)
        else:
            main = F.cross_entropy(out.float(), labels)
        optim = self.config.optim
        moe = combine_aux_losses(aux, {"moe_load_balance": optim.moe_load_balance_weight,
                                       "moe_local_entropy": optim.moe_local_entropy_weight,
                                       "moe_global_entropy": optim.moe_global_entropy_weight})
        flow = aux["flow_nll"].float() if "flow_nll" in aux else main.new_zeros(())  # baselines have no flows
        loss = main + self.stage_config.flow_nll_weight * flow + moe
        return loss, {"main": main.detach(), "flow_nll": flow.detach(), "moe": moe.detach()}


def load_init_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a checkpoint's weights into `model` (same architecture); -> its provenance.

    `mad.load_model` does the checking (sidecar, sha256, readable safetensors); this only adds
    that the checkpoint is the same network with the same classes as the run.
    """
    from mad.runtime.loading import CheckpointError, load_model

    source = load_model(path)
    theirs, ours = dataclasses.asdict(source.config), dataclasses.asdict(model.config)
    if theirs != ours:
        diff = sorted(k for k in theirs if theirs[k] != ours[k])
        raise CheckpointError(f"init_from {path}: its model_config differs from this run's model in {diff}")
    meta = source.mad_meta
    if meta["class_names"] != list(CLASS_NAMES):
        raise CheckpointError(f"init_from {path}: class_names {meta['class_names']} differ from {list(CLASS_NAMES)}")
    model.load_state_dict(source.state_dict(), strict=True)
    return {"path": str(path), "name": meta["name"], "model_version": meta["version"],
            "weights_sha256": meta["sidecar"]["weights_sha256"]}


class MissingExtraError(RuntimeError):
    """An option needs an optional package that is not installed; the message says which extra."""


def open_tensorboard(log_dir: Path) -> Any:
    """A SummaryWriter, or a clear error when the optional `tensorboard` package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch raises this when the tensorboard package is absent
        raise MissingExtraError("--tensorboard needs the tensorboard package: "
                                "pip install 'mad-pd[tensorboard]'") from exc
    return SummaryWriter(log_dir=str(log_dir))


class Trainer:
    def __init__(self, config: TrainConfig, splits: DataSplits, out_dir: Path, ctx: DistContext,
                 show_progress: bool = True, tb_writer: Any = None) -> None:
        self.config, self.splits, self.out_dir, self.ctx = config, splits, out_dir, ctx
        self.show_progress = show_progress and ctx.is_main
        self.tb = tb_writer  # rank 0 only (None elsewhere and without --tensorboard)
        self.model = build_model(config.model, seed=config.seed).to(ctx.device)
        self.both_modalities = bool(self.model.config.use_image and self.model.config.use_signal)
        self.stage_progress: dict[str, dict[str, Any]] = {}

    # ---- helpers ------------------------------------------------------------------------------

    def _stage_config(self, stage: str) -> StageConfig:
        return self.config.supcon if stage == "supcon" else self.config.ce

    def _best_path(self, stage: str) -> Path:
        return self.out_dir / "stages" / f"{self.config.name}_{stage}_best.safetensors"

    def _views(self, batch: dict[str, torch.Tensor], stage: str, stage_config: StageConfig,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ModalityMask]:
        """Stack the views of a batch (view-major) with their modality masks."""
        device = self.ctx.device
        images, series = batch["image"].to(device), batch["series"].to(device)
        labels = batch["label"].to(device)
        n_views = stage_config.views if stage == "supcon" else 1
        all_images, all_series, mask = [], [], None
        for _ in range(n_views):
            if stage_config.augment:
                view_images, view_series = augment_batch(images, series, self.config.augment, generator,
                                                         self.splits.power_freq_hz)
                view_mask = (sample_modality_mask(len(labels), self.config.augment, generator)
                             if self.both_modalities else ModalityMask.full(len(labels)))
            else:
                view_images, view_series, view_mask = images, series.float(), ModalityMask.full(len(labels))
            all_images.append(view_images)
            all_series.append(view_series)
            mask = view_mask if mask is None else mask.cat(view_mask)
        mask = ModalityMask(mask.keep_image.to(device), mask.keep_signal.to(device))
        return torch.cat(all_images), torch.cat(all_series), labels, mask

    def _validate(self, stage: str, stage_config: StageConfig) -> dict[str, float]:
        """Validation macro-F1: the classifier in stage 2; nearest class centroid on projections in stage 1."""
        model, device = self.model, self.ctx.device
        batch_size = stage_config.batch_size
        if stage == "ce":
            # Workers too: on-the-fly splits generate their windows, which is the slow part off the CPU.
            probs, labels = predict_probs(model, self.splits.val, device, batch_size,
                                          num_workers=self.config.data.num_workers)
            pred = probs.argmax(axis=1)
        else:
            n_probe = min(stage_config.probe_windows, len(self.splits.train))
            probe = np.random.default_rng(self.config.seed).choice(len(self.splits.train), n_probe, replace=False)
            workers = self.config.data.num_workers
            probe_feats, probe_labels = embed(model, self.splits.train, np.sort(probe), device, batch_size, workers)
            feats, labels = embed(model, self.splits.val, np.arange(len(self.splits.val)), device, batch_size,
                                  workers)
            pred = nearest_centroid_predict(probe_feats, probe_labels, feats, NUM_CLASSES)
            geometry = alignment_uniformity(feats, labels)
            return {"macro_f1": macro_f1(labels, pred, NUM_CLASSES), "accuracy": float((pred == labels).mean()),
                    **geometry}
        return {"macro_f1": macro_f1(labels, pred, NUM_CLASSES), "accuracy": float((pred == labels).mean())}

    def _log_row(self, row: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        path = self.out_dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({key: row.get(key, "") for key in CSV_FIELDS})
        if self.tb is not None:
            stage, step = row["stage"], int(row["step"])
            for key in CSV_FIELDS[3:]:
                if key in row:  # val_alignment/val_uniformity: SupCon rows only
                    self.tb.add_scalar(f"{stage}/{key}", float(row[key]), step)
            self.tb.flush()

    def _save_best(self, stage: str, val: dict[str, float], epoch: int) -> None:
        if self.ctx.is_main:
            save_checkpoint(self._best_path(stage), self.model, name=f"{self.config.name}_{stage}_best",
                            power_freq_hz=self.splits.power_freq_hz,
                            extra={"stage": stage, "epoch": epoch, "val": val, "seed": self.config.seed,
                                   "data_spec": self.splits.spec, "training_config": config_to_dict(self.config)})

    # ---- one stage ----------------------------------------------------------------------------

    def _save_state(self, stage: str, optimizer: torch.optim.Optimizer) -> None:
        if self.ctx.is_main:
            save_training_state(self.out_dir / "state", self.model, optimizer,
                                {"current": stage, "stages": self.stage_progress,
                                 "config": config_to_dict(self.config)})
        barrier()

    def run_stage(self, stage: str, budget: list[int], restore: bool = False) -> bool:
        """Train `stage` from its progress (epoch, step, best...); False if the epoch budget ran out."""
        sc = self._stage_config(stage)
        progress = self.stage_progress[stage]
        ctx, model = self.ctx, self.model
        set_trainable_heads(model, stage)
        optimizer = make_optimizer(model, sc, self.config)
        if restore:
            load_training_state(self.out_dir / "state", model, optimizer)
        elif stage == "ce" and "supcon" in self.config.stages:
            # Stage 2 starts from the best SupCon weights; the classifier head is still at its init.
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(self._best_path("supcon"))), strict=True)
        # top-k may leave an expert idle in a step (baselines have no routing)
        find_unused = getattr(self.model.config, "routing", "dense") == "topk"
        objective = StageObjective(model, stage, sc, self.config)
        wrapped = (DistributedDataParallel(objective, device_ids=[ctx.device.index] if ctx.device.type == "cuda"
                                           else None, find_unused_parameters=find_unused)
                   if ctx.distributed else objective)

        sampler = DistributedSampler(range(len(self.splits.train)), num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=True, seed=self.config.seed, drop_last=True)
        local_n = len(sampler)
        per_epoch = self.config.data.train_windows_per_epoch
        if per_epoch is not None:  # the first per_epoch of each epoch's shuffle (see DataConfig)
            local_n = min(local_n, max(1, per_epoch // ctx.world_size))
        batch_size = min(sc.batch_size, local_n)
        steps_per_epoch = max(1, local_n // batch_size)
        total_steps = sc.epochs * steps_per_epoch
        warmup_steps = round(sc.warmup_epochs * steps_per_epoch)

        while progress["epoch"] < sc.epochs:
            if budget[0] == 0:
                return False
            epoch = progress["epoch"]
            sampler.set_epoch(epoch)
            generator = torch.Generator().manual_seed(
                self.config.seed * 1000 + STAGE_SEED_OFFSET[stage] * 100_000 + epoch * 10 + ctx.rank)
            model.train()
            started = time.perf_counter()
            sums = {"loss": 0.0, "main": 0.0, "flow_nll": 0.0, "moe": 0.0}
            batches = iterate_batches(self.splits.train, list(sampler)[:local_n], batch_size,
                                      self.config.data.num_workers, drop_last=True)
            bar = tqdm(batches, total=steps_per_epoch, desc=f"{stage} {epoch + 1}/{sc.epochs}", leave=False,
                       disable=not self.show_progress, unit="batch")
            seen = 0
            for batch in bar:
                lr = sc.lr * lr_factor(progress["step"], total_steps, warmup_steps, sc.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images, series, labels, mask = self._views(batch, stage, sc, generator)
                with autocast_for(ctx.device):
                    loss, parts = wrapped(images, series, labels, mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                               self.config.optim.grad_clip)
                optimizer.step()
                progress["step"] += 1
                seen += len(labels)
                sums["loss"] += float(loss.detach())
                for key in ("main", "flow_nll", "moe"):
                    sums[key] += float(parts[key])
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", best_f1=f"{progress['best']:.3f}")
                if self.tb is not None:
                    self.tb.add_scalar(f"{stage}/step_loss", float(loss.detach()), progress["step"])
            if not math.isfinite(sums["loss"]):
                raise FloatingPointError(f"{stage} epoch {epoch + 1}: training loss is not finite; lower the lr")
            seconds = time.perf_counter() - started
            val = self._validate(stage, sc)
            progress["epoch"] = epoch + 1
            improved = val["macro_f1"] > progress["best"]
            if improved:
                progress.update(best=val["macro_f1"], best_epoch=epoch + 1, stale=0)
                self._save_best(stage, val, epoch + 1)
            else:
                progress["stale"] += 1
            n_steps = max(1, steps_per_epoch)
            self._log_row({"stage": stage, "epoch": epoch + 1, "step": progress["step"], "lr": f"{lr:.3e}",
                           "train_loss": f"{sums['loss'] / n_steps:.5f}", "train_main": f"{sums['main'] / n_steps:.5f}",
                           "train_flow_nll": f"{sums['flow_nll'] / n_steps:.5f}",
                           "train_moe": f"{sums['moe'] / n_steps:.5f}",
                           "val_macro_f1": f"{val['macro_f1']:.4f}", "val_accuracy": f"{val['accuracy']:.4f}",
                           "best_val_macro_f1": f"{progress['best']:.4f}", "epoch_seconds": f"{seconds:.1f}",
                           "train_samples_per_s": f"{seen * ctx.world_size / seconds:.2f}",
                           **{f"val_{k}": f"{val[k]:.4f}" for k in ("alignment", "uniformity") if k in val}})
            if self.show_progress:
                tqdm.write(f"{stage} epoch {epoch + 1}/{sc.epochs}: loss {sums['loss'] / n_steps:.4f}, "
                           f"val macro-F1 {val['macro_f1']:.4f} (best {progress['best']:.4f}), {seconds:.0f}s")
            if progress["stale"] >= sc.patience:
                progress["epoch"] = sc.epochs  # early stop: the stage is done
                if self.show_progress:
                    tqdm.write(f"{stage}: early stop, no better validation macro-F1 for {sc.patience} epochs")
            budget[0] -= 1
            self._save_state(stage, optimizer)
        return True


def new_stage_progress() -> dict[str, Any]:
    return {"epoch": 0, "step": 0, "best": -1.0, "best_epoch": 0, "stale": 0}


def _recipe(config: dict[str, Any]) -> dict[str, Any]:
    """The config less the DataLoader worker count, which changes speed but not the windows or their order,
    so a run started on one machine may resume on another."""
    return {**config, "data": {k: v for k, v in config["data"].items() if k != "num_workers"}}


def fit(config: TrainConfig, out_dir: str | Path, *, data_spec: str | None = None, device: str = "auto",
        resume: str | Path | None = None, stop_after_epochs: int | None = None, show_progress: bool = True,
        splits: DataSplits | None = None, tensorboard: bool = False) -> FitResult:
    """Train per `config` into `out_dir` (or continue the run in `resume`); see the module docstring.

    `stop_after_epochs` ends this invocation after that many epochs (all stages together), leaving a
    state that `resume` continues; `splits` skips opening `data_spec` (tests, notebooks);
    `tensorboard` also writes the metrics as TensorBoard events under `out_dir/tensorboard`.
    """
    ctx = init_distributed(device)
    out_dir = Path(resume) if resume is not None else Path(out_dir)
    if resume is None and ((out_dir / "metrics.csv").exists() or (out_dir / "state").exists()):
        # Appending a new run to an old one mixes their metrics and best checkpoints.
        raise FileExistsError(f"{out_dir} already holds a training run; continue it with --resume {out_dir}, "
                              f"or choose another --out")
    if ctx.is_main:
        (out_dir / "stages").mkdir(parents=True, exist_ok=True)
    # Opened before the data so a missing package fails at once; only rank 0 writes, and a resumed
    # run appends to the same folder (TensorBoard orders the points by step).
    tb_writer = open_tensorboard(out_dir / "tensorboard") if tensorboard and ctx.is_main else None
    seed_everything(config.seed)
    spec = data_spec or config.data.spec
    if splits is None:
        splits = open_datasets(spec, config.data, config.seed)
    trainer = Trainer(config, splits, out_dir, ctx, show_progress, tb_writer)
    init_meta = None
    if config.init_from is not None and resume is None:  # a resumed run restores its own state instead
        init_meta = load_init_weights(trainer.model, config.init_from)
    if ctx.is_main:
        (out_dir / "train_config.json").write_text(json.dumps(config_to_dict(config), indent=2), encoding="utf-8")
        (out_dir / "data.json").write_text(json.dumps(splits.summary(), indent=2), encoding="utf-8")
        if show_progress:
            summary = splits.summary()
            for split, balance in summary["class_balance"].items():
                tqdm.write(f"{split}: {summary['sizes'][split]} windows, "
                           + ", ".join(f"{name} {count}" for name, count in balance.items()))

    resume_stage = None
    if resume is not None:
        state_json = out_dir / "state" / "state.json"
        if not state_json.is_file():
            raise FileNotFoundError(f"{state_json}: --resume {resume} has no saved training state")
        saved = json.loads(state_json.read_text(encoding="utf-8"))["progress"]
        # The saved config goes through today's schema first: a key added since (with its default, which by
        # rule keeps the old behaviour) must not make an interrupted run unresumable.
        if _recipe(config_to_dict(parse_config(saved["config"], str(state_json)))) != _recipe(config_to_dict(config)):
            raise ValueError(f"{out_dir}: --resume needs the same training config as the interrupted run")
        trainer.stage_progress = {stage: dict(p) for stage, p in saved["stages"].items()}
        resume_stage = saved["current"]

    budget = [stop_after_epochs if stop_after_epochs is not None else -1]
    for stage in config.stages:
        progress = trainer.stage_progress.setdefault(stage, new_stage_progress())
        finished = progress["epoch"] >= trainer._stage_config(stage).epochs
        if stage == resume_stage and finished:
            # saved right after this stage's last epoch: restore weights and RNG, then go on
            load_training_state(out_dir / "state", trainer.model, None)
            continue
        if finished:
            continue
        if not trainer.run_stage(stage, budget, restore=stage == resume_stage):
            return FitResult(out_dir, completed=False,
                             best_val={s: p["best"] for s, p in trainer.stage_progress.items()})

    final_stage = config.stages[-1]
    from safetensors.torch import load_file

    trainer.model.load_state_dict(load_file(str(trainer._best_path(final_stage))), strict=True)
    result = FitResult(out_dir, completed=True, best_val={s: p["best"] for s, p in trainer.stage_progress.items()})
    if ctx.is_main:
        probs, labels = predict_probs(trainer.model, splits.test, ctx.device, config.ce.batch_size,
                                      num_workers=config.data.num_workers, desc="test" if show_progress else None)
        report = classification_report(labels, probs, CLASS_NAMES).to_dict()
        result.test_metrics = report
        result.checkpoint = save_checkpoint(
            out_dir / f"{config.name}.safetensors", trainer.model, name=config.name,
            power_freq_hz=splits.power_freq_hz,
            extra={"data_spec": spec, "data": splits.summary(), "training_config": config_to_dict(config),
                   "init_from": init_meta,
                   "seed": config.seed, "stages": list(config.stages), "best_val_macro_f1": result.best_val,
                   "metrics": {"test": {k: report[k] for k in ("n", "accuracy", "macro_f1", "macro_auc", "ece")}}})
        (out_dir / "test_metrics.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        if trainer.tb is not None:
            for key in ("accuracy", "macro_f1", "macro_auc", "ece"):
                trainer.tb.add_scalar(f"test/{key}", float(report[key]), 0)
    if trainer.tb is not None:
        trainer.tb.close()
    barrier()
    return result
