"""DDP on CPU (gloo, 2 processes): SupCon gathers features with gradients; a short fit runs and stays in sync."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _batch():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, 6, generator=generator)  # (B, V, in)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])  # class 3 has a single sample: no positive for its views
    return x, labels


def _net():
    torch.manual_seed(0)
    return torch.nn.Linear(6, 4)


def _supcon(net, x, labels, gather):
    from mad.losses import supcon_loss
    from train.distributed import gather_no_grad

    feats = torch.nn.functional.normalize(net(x), dim=-1)
    return supcon_loss(gather(feats), gather_no_grad(labels), 0.5)


def _gradient_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    _env(rank, world, port)
    from torch.nn.parallel import DistributedDataParallel

    from train.distributed import gather_with_grad, init_distributed, shutdown_distributed

    init_distributed("cpu")

    def step() -> dict:  # the DDP wrapper must be gone before the process group is torn down
        x, labels = _batch()
        part = slice(rank * 4, (rank + 1) * 4)
        net = DistributedDataParallel(_net())
        loss = _supcon(net, x[part], labels[part], gather_with_grad)
        loss.backward()
        return {"loss": loss.item(), "grads": {name: p.grad.tolist() for name, p in net.module.named_parameters()}}

    result = step()
    with open(os.path.join(out_dir, f"grad_{rank}.json"), "w") as handle:
        json.dump(result, handle)
    shutdown_distributed()


def test_gathered_supcon_gradients_equal_single_process_on_the_whole_batch(tmp_path):
    port = _free_port()
    mp.spawn(_gradient_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    x, labels = _batch()
    net = _net()
    loss = _supcon(net, x, labels, lambda t: t)
    loss.backward()
    for rank in range(2):
        result = json.loads((tmp_path / f"grad_{rank}.json").read_text())
        assert result["loss"] == pytest.approx(loss.item(), rel=1e-5)
        for name, p in net.named_parameters():
            torch.testing.assert_close(torch.tensor(result["grads"][name]), p.grad, rtol=1e-4, atol=1e-6)


def test_gather_without_gradients_would_be_wrong(tmp_path):
    """Guards the test above: gathering without autograd loses the other rank's gradient paths."""
    x, labels = _batch()
    net = _net()
    _supcon(net, x, labels, lambda t: t).backward()
    full = net.weight.grad.clone()
    net.zero_grad()
    half = _supcon(net, x[:4], labels[:4], lambda t: t)  # what one rank sees without a gather
    half.backward()
    assert not torch.allclose(net.weight.grad, full, atol=1e-6)


def _fit_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    _env(rank, world, port)
    from safetensors.torch import save_file

    from train.config import parse_config
    from train.distributed import shutdown_distributed
    from train.fit import fit

    config = parse_config({
        "name": "ddp_tiny", "model": "mad_tiny",
        "data": {"spec": "synth:easy", "synth_train": 20, "synth_test": 6, "val_fraction": 0.25,
                 "materialise": True},
        "supcon": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "probe_windows": 10},
        "ce": {"epochs": 1, "batch_size": 4, "lr": 1e-3}})
    result = fit(config, out_dir, device="cpu", show_progress=False)
    state = {k: v.contiguous() for k, v in result_model_state(out_dir).items()}
    save_file(state, os.path.join(out_dir, f"rank{rank}.safetensors"))
    shutdown_distributed()
    assert result.completed


def result_model_state(out_dir: str):
    from safetensors.torch import load_file

    return load_file(os.path.join(out_dir, "state", "model.safetensors"))


def test_short_ddp_fit_runs_and_ranks_stay_in_sync(tmp_path):
    port = _free_port()
    mp.spawn(_fit_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    from safetensors.torch import load_file

    assert (tmp_path / "ddp_tiny.safetensors").is_file() and (tmp_path / "ddp_tiny.json").is_file()
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + one epoch per stage, written by rank 0 only
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
