"""What the fastest known CIFAR-10 recipe reaches on this machine and this data, in PyTorch: the ceiling
imgclf's accuracy-per-CPU-minute targets (issue 18) are measured against.

    pip install -e '.[bench]'     # PyTorch, a benchmark-only extra (never used by imgclf or its tests)
    IMGCLF_DATA=../shared/datasets python benchmarks/torch_airbench.py [--widths 64,128,128] [--epochs 11]
        [--batch-size 1024] [--bf16] [--tta 2] [--seed 0] [--threads 2]

The recipe is airbench's (Keller Jordan, 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
github.com/KellerJordan/cifar10-airbench, MIT), written again here for the CPU from the paper and its
hyperparameters: a frozen 2x2 patch-whitening convolution (24 filters, its bias trained for 3 epochs),
three conv-pool-bn-gelu-conv-bn-gelu blocks (--widths; 64,128,128 is airbench93, 64,256,256 airbench94)
with identity-initialised convolutions and scale-free batch norm (momentum 0.6, eps 1e-12), a global max
pool, a bias-free classifier scaled by 1/9; Nesterov SGD (momentum 0.85, lr 11.5 and weight decay 0.0153
per 1024 examples, batch-norm biases at 64x the rate), label smoothing 0.2, a triangular schedule
(0.2 -> 1 at 23% -> 0.07), Lookahead-style averaging every 5 steps from epoch 3 with a cubic ramp,
alternating flips and 2-pixel reflect-padded translations, and test-time augmentation (--tta 2: mirror
and 1-pixel translations). --bf16 runs the products in bfloat16 (torch.autocast; AMX or AVX512-BF16
where the CPU has them), everything else float32.

Trains on the first 49000 training images (imgclf's split), scores the 10000 test images after every
epoch (untimed) and once more with test-time augmentation at the end. Prints per-epoch lines and a
FINAL line with the accuracy and the training seconds (wall, data augmentation included).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from imgclf.datasets.cifar import load_cifar_python  # noqa: E402

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def data_folder() -> Path:
    base = Path(os.environ.get("IMGCLF_DATA", ROOT.parent / "shared" / "datasets"))
    folder = base / "cifar-10-batches-py"
    if not folder.is_dir():
        sys.exit(f"no CIFAR-10 at {folder}: set IMGCLF_DATA to the folder holding cifar-10-batches-py")
    return folder


def to_tensor(X):
    x = torch.tensor(X).float().div(255).permute(0, 3, 1, 2)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return x.contiguous(memory_format=torch.channels_last)


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, c):
        super().__init__(c, eps=1e-12, momentum=0.4)  # PyTorch's momentum is airbench's 1 - 0.6
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    def __init__(self, c_in, c_out):
        super().__init__(c_in, c_out, 3, padding="same", bias=False)
        w = self.weight.data
        torch.nn.init.dirac_(w[:w.size(1)])  # identity on the first c_in filters: an implicit residual


class Scale(nn.Module):
    def forward(self, x):
        return x / 9


def block(c_in, c_out):
    return nn.Sequential(Conv(c_in, c_out), nn.MaxPool2d(2), BatchNorm(c_out), nn.GELU(),
                         Conv(c_out, c_out), BatchNorm(c_out), nn.GELU())


def make_net(widths, train_images):
    w1, w2, w3 = widths
    net = nn.Sequential(nn.Conv2d(3, 24, 2, padding=0, bias=True), nn.GELU(), block(24, w1), block(w1, w2),
                        block(w2, w3), nn.MaxPool2d(3), nn.Flatten(), nn.Linear(w3, 10, bias=False), Scale())
    net = net.to(memory_format=torch.channels_last)
    whiten = net[0]
    whiten.weight.requires_grad = False
    patches = train_images[:5000].unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 12)
    eigval, eigvec = torch.linalg.eigh(patches.T @ patches / len(patches))
    eigval, eigvec = eigval.flip(0).view(-1, 1, 1, 1), eigvec.T.reshape(12, 3, 2, 2).flip(0)
    scaled = eigvec / torch.sqrt(eigval + 5e-4)
    whiten.weight.data[:] = torch.cat((scaled, -scaled))
    return net


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", default="64,128,128")
    p.add_argument("--epochs", type=float, default=11.0)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--tta", type=int, choices=(0, 1, 2), default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    Xtr, ytr, Xte, yte, _ = load_cifar_python(data_folder())
    xtr, xte = to_tensor(Xtr[:49000]), to_tensor(Xte)
    ytr, yte = torch.tensor(ytr[:49000]).long(), torch.tensor(yte).long()
    widths = [int(v) for v in a.widths.split(",")]
    net = make_net(widths, xtr)

    momentum = 0.85
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    lr, wd = 11.5 / kilostep, 0.0153 * a.batch_size / kilostep
    lr_bias = 64 * lr
    trained = [(k, q) for k, q in net.named_parameters() if q.requires_grad]
    biases = [q for k, q in trained if q.ndim == 1 and not k.startswith("0.")]
    others = [q for k, q in trained if not (q.ndim == 1 and not k.startswith("0."))]
    opt = torch.optim.SGD([dict(params=biases, lr=lr_bias, weight_decay=wd / lr_bias),
                           dict(params=others, lr=lr, weight_decay=wd / lr)], momentum=momentum, nesterov=True)
    n = len(xtr)
    per_epoch = n // a.batch_size
    total = math.ceil(per_epoch * a.epochs)
    peak = int(0.23 * total)

    def triangle(i):
        return 0.2 + 0.8 * i / peak if i < peak else 1 - 0.93 * (i - peak) / (total - peak)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, triangle)
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16)  # noqa: E731

    flipped = torch.where((torch.rand(n, generator=g) < 0.5).view(-1, 1, 1, 1), xtr.flip(-1), xtr)
    padded = F.pad(flipped, (2,) * 4, "reflect")

    def translate():
        shifts = torch.randint(-2, 3, (n, 2), generator=g)
        out = torch.empty_like(xtr)
        for sy in range(-2, 3):
            for sx in range(-2, 3):
                m = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
                out[m] = padded[m, :, 2 + sy:34 + sy, 2 + sx:34 + sx]
        return out.contiguous(memory_format=torch.channels_last)

    def scores(x, level):
        net.eval()
        out = []
        with torch.no_grad(), autocast():
            for xb in x.split(1000):
                def mirror(z):
                    return 0.5 * net(z).float() + 0.5 * net(z.flip(-1)).float()
                o = net(xb).float() if level == 0 else mirror(xb)
                if level == 2:
                    pz = F.pad(xb, (1,) * 4, "reflect")
                    o = 0.5 * o + 0.25 * (mirror(pz[:, :, 0:32, 0:32]) + mirror(pz[:, :, 2:34, 2:34]))
                out.append(o)
        net.train()
        return torch.cat(out)

    def accuracy(level):
        return (scores(xte, level).argmax(1) == yte).float().mean().item()

    slow, step, seconds = None, 0, 0.0
    for epoch in range(math.ceil(a.epochs)):
        net[0].bias.requires_grad = epoch < 3
        t0 = time.perf_counter()
        images = translate()
        if epoch % 2 == 1:
            images = images.flip(-1)
        order = torch.randperm(n, generator=g)
        for i in range(per_epoch):
            idx = order[i * a.batch_size:(i + 1) * a.batch_size]
            with autocast():
                loss = F.cross_entropy(net(images[idx]).float(), ytr[idx], label_smoothing=0.2, reduction="none").sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if epoch >= 3 and step % 5 == 0:
                if slow is None:
                    slow = {k: v.clone() for k, v in net.state_dict().items()}
                else:
                    rho = 0.95 ** 5 * (step / total) ** 3
                    for e, v in zip(slow.values(), net.state_dict().values()):
                        if v.dtype == torch.float:
                            e.lerp_(v, 1 - rho)
                            v.copy_(e)
            if step >= total:
                break
        if slow is not None:
            for e, v in zip(slow.values(), net.state_dict().values()):
                if v.dtype == torch.float:
                    v.copy_(e)
        seconds += time.perf_counter() - t0
        print(f"epoch {epoch + 1} train {seconds:.1f}s test {accuracy(0):.4f}", flush=True)
    t0 = time.perf_counter()
    acc = accuracy(a.tta)
    print(f"FINAL widths {a.widths} epochs {a.epochs} batch {a.batch_size} {'bf16' if a.bf16 else 'float32'} "
          f"threads {a.threads} tta {a.tta}: test {acc:.4f}, training {seconds:.1f} s, tta scoring "
          f"{time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
