"""DDP under torchrun (2 gloo processes on CPU) gives the same training as one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import supernet as sn
from test_train_common import mlp_space, vector_task

HERE = Path(__file__).resolve().parent

CONFIG = {"steps": 5, "batch_size": 8, "lr": 1e-2, "weight_decay": 0.1, "log_every": 1, "progress": False, "seed": 7}
RUNS = [("mlp", "uniform"), ("mlp", "sandwich"), ("mlp", "pada"), ("mlp", "shiftnas"), ("mlp", "gm"), ("mlp", "mos"),
        ("gpt", "uniform")]
# Attention's key bias has an exactly-zero true gradient (softmax ignores a per-row shift), so Adam would turn
# float noise into full-size steps; the GPT run uses SGD (weight decay still tells "no grad" from "zero grad").
GPT_CONFIG = {**CONFIG, "optimizer": "sgd", "lr": 0.1}


def _gpt() -> sn.SuperModule:
    torch.manual_seed(0)
    return sn.spaces.gpt(vocab_size=12, block_size=8, embed_dims=(8, 16), num_heads=(1, 2), mlp_ratios=(1, 2),
                         depths=(1, 2), head_dim=4)


def _text():
    return sn.data.char_text("abcdefghijk " * 60)


def _train(kind: str, strategy: str) -> sn.training.Run:
    if kind == "mlp":
        return sn.train(mlp_space(0), vector_task(), strategy, CONFIG, device="cpu")
    return sn.train(_gpt(), _text(), strategy, GPT_CONFIG, device="cpu")


WORKER = """
import json, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from safetensors.torch import save_file
import torch.distributed as dist
import test_train_ddp as t
for kind, strategy in t.RUNS:
    run = t._train(kind, strategy)
    if dist.get_rank() == 0:
        name = {out!r} + f"/{{kind}}-{{strategy}}"
        save_file({{k: v.contiguous() for k, v in run.space.state_dict().items()}}, name + ".st")
        json.dump(run.losses, open(name + ".json", "w"))
# the group must really stop at exit (its threads joined): a gloo thread alive during finalization can abort the rank
import os
from supernet.training.distributed import _destroy_at_exit
_destroy_at_exit()
if os.path.isdir("/proc/self/task"):
    json.dump(len(os.listdir("/proc/self/task")), open({out!r} + f"/threads-{{os.environ['RANK']}}.json", "w"))
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_gloo_processes_equal_one_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(HERE), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in (0, 1):
        threads = tmp_path / f"threads-{rank}.json"
        if threads.is_file():  # Linux: after the group is destroyed only the main thread is left
            assert json.loads(threads.read_text()) == 1, rank
    for kind, strategy in RUNS:
        single = _train(kind, strategy)
        losses = json.loads((tmp_path / f"{kind}-{strategy}.json").read_text())
        assert losses == pytest.approx(single.losses, abs=1e-5), (kind, strategy)
        ddp = load_file(str(tmp_path / f"{kind}-{strategy}.st"))
        ref = single.space.state_dict()
        assert ddp.keys() == ref.keys()
        for k, v in ref.items():
            assert torch.allclose(ddp[k], v, atol=1e-5, rtol=1e-4), (kind, strategy, k, (ddp[k] - v).abs().max())
