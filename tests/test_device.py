"""The device probe answers without importing torch where no accelerator can exist (the Train page's
first visit took seconds importing torch only to say "CPU")."""

from __future__ import annotations

import subprocess
import sys

import pytest

from promptmix_core import device


def test_probe_without_torch_on_a_machine_without_accelerator():
    if not device.no_accelerator():
        pytest.skip("this machine has an accelerator device node")
    code = ("import sys; from promptmix_core.device import device_info; i = device_info(); "
            "print(i['device'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["cpu", "False"]


def test_probe_agrees_with_torch():
    torch = pytest.importorskip("torch")
    info = device.device_info()
    assert info["device"] == device.pick_device("auto")
    if info["device"] == "cpu":
        assert not torch.cuda.is_available()
