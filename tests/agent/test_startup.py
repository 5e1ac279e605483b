"""Start-up of the live agent: a model that cannot run stops the start with its reason, and the CPU
backends run inside the systemd unit's MemoryDenyWriteExecute sandbox."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from agent.commands import run as run_command
from agent.inference import FunctionClassifier, executable_memory_allowed

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mad_small.safetensors"
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1  # linux/prctl.h, kernel >= 6.3


def _mdwe_supported() -> bool:
    """Probe in a child: the flag cannot be cleared once set, so never set it in the test process."""
    probe = "import ctypes,sys; sys.exit(0 if ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) == 0 else 1)"
    return sys.platform == "linux" and subprocess.run([sys.executable, "-c", probe]).returncode == 0


def test_a_model_that_fails_its_first_inference_stops_the_start(tmp_path, monkeypatch, capsys):
    def broken(images, signals):
        raise RuntimeError("could not create a primitive")

    monkeypatch.setattr(run_command, "load_classifier", lambda *args: FunctionClassifier(broken, name="broken"))
    args = type("Args", (), {"config": None, "model": tmp_path / "model.safetensors"})()
    monkeypatch.setenv("MAD_AGENT__STATE_DIR", str(tmp_path / "state"))
    assert run_command.run(args) == 2
    err = capsys.readouterr().err
    assert "loaded, but its first inference failed" in err and "could not create a primitive" in err


def test_executable_memory_is_allowed_in_an_unrestricted_process():
    assert executable_memory_allowed()


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason=f"shipped model {SHIPPED_MODEL} absent")
@pytest.mark.skipif(not _mdwe_supported(), reason="prctl(PR_SET_MDWE) needs Linux >= 6.3")
def test_shipped_model_runs_under_memory_deny_write_execute(tmp_path):
    """prctl(PR_SET_MDWE) is the kernel switch systemd's MemoryDenyWriteExecute=yes uses where it exists.

    oneDNN's JIT conv kernels fail under it ("could not create a primitive"); the agent detects the
    sandbox and runs torch's own kernels, with the same answers."""
    script = textwrap.dedent(f"""
        import ctypes, sys
        import numpy as np
        assert ctypes.CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0
        from agent.inference import executable_memory_allowed, load_classifier
        from agent.commands.run import first_inference
        assert not executable_memory_allowed()
        classifier = load_classifier(sys.argv[1], "cpu")
        first_inference(classifier)
        data = np.load(sys.argv[2])
        np.save(sys.argv[3], classifier.predict(data["images"], data["signals"]))
    """)
    from agent.inference import load_classifier
    from mad.data.synthetic import generate_window

    windows = [generate_window("standard", 5, i) for i in range(5)]
    images = np.stack([w.image for w in windows])
    signals = np.stack([w.series for w in windows]).astype(np.float32)
    np.savez(tmp_path / "windows.npz", images=images, signals=signals)
    result = subprocess.run([sys.executable, "-c", script, str(SHIPPED_MODEL), str(tmp_path / "windows.npz"),
                             str(tmp_path / "probabilities.npy")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    sandboxed = np.load(tmp_path / "probabilities.npy")
    expected = load_classifier(SHIPPED_MODEL, "cpu").predict(images, signals)
    np.testing.assert_allclose(sandboxed, expected, atol=1e-4)
