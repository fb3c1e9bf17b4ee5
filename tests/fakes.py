"""Small stand-ins for trainer tests (and the kill/resume workers): a keyframe store for
busch2026's task and a generic task with an EMA teacher and a feature queue."""
import copy
import time

import numpy as np
import torch
from torch import nn

from bevlib import geometry as geo
from bevlib.bev import BEVGrid
from bevlib.data.dataset import KeyframeStore
from bevlib.train import Task

GRID = BEVGrid(H=24, W=12)
HW = (48, 88)
MODEL = {"backbone": "tiny", "embed_dim": 16, "num_layers": 1, "query_hw": [12, 6], "out_hw": [24, 12]}
TRAIN = ["s0k0", "s0k1", "s0k2", "s1k0", "s1k1", "s1k2"]
VAL = ["s2k0", "s2k1"]


class FakeStore(KeyframeStore):
    """Keyframes of three 'scenes' with a fixed 6-camera rig, random images, striped BEV labels.
    ``poison`` names tokens whose images are corrupt (NaN pixels, as from a broken decoder)."""

    def __init__(self, poison=()):
        rng = np.random.default_rng(0)
        K = geo.scale_intrinsics(np.array([[1266.0, 0, 816], [0, 1266, 491], [0, 0, 1]]), (1600, 900), HW[::-1])
        yaws = [np.pi / 3, 0, -np.pi / 3, 2 * np.pi / 3, np.pi, -2 * np.pi / 3]
        T = np.stack([geo.se2(0, 0, a) @ geo.transform_from([1.5, 0, 1.5], [0.5, -0.5, 0.5, -0.5]) for a in yaws])
        self._items = {}
        for s in range(3):
            for k in range(3):
                tok = f"s{s}k{k}"
                gt = np.zeros((GRID.H, GRID.W), np.uint8)
                gt[:, 5 + k % 2] = 2
                gt[:, [1, 10]] = 1
                images = rng.integers(0, 255, (6, *HW, 3), dtype=np.uint8)
                if tok in poison:
                    images = images.astype(np.float32)
                    images[:, :4, :4] = np.nan
                self._items[tok] = {
                    "images": images,
                    "K": np.repeat(K[None], 6, 0).astype(np.float32), "ego_T_cam": T.astype(np.float32),
                    "bev_gt": gt, "has_bev_gt": True, "prev_token": f"s{s}k{k-1}" if k else "",
                    "curr_T_prev": geo.invert(geo.se2(5.0, 0, 0)).astype(np.float32),
                    "pseudo": rng.integers(0, 14, (6, *HW), dtype=np.uint8),
                }

    def get(self, token):
        return self._items[token]


def busch_task(store=None, tokens=TRAIN, **kw):
    """busch2026's task on the fake keyframes (tests of that paper's modes)."""
    from bevlib.experiments.busch2026 import Busch2026Task
    return Busch2026Task(MODEL, store or FakeStore(), tokens, VAL, GRID, {"fake": True}, **kw)


class ToyData(torch.utils.data.Dataset):
    """``n`` samples of 8 features in 3 linearly separable classes; each fetch adds augmentation
    noise from torch's global RNG (the trainer seeds it per item). ``poison``: indices whose
    features are NaN. ``delay``: seconds per fetch (gives a killer time to strike mid-epoch)."""

    def __init__(self, n=24, seed=0, poison=(), delay=0.0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 3
        self.x = torch.randn(n, 8, generator=g) * 0.5 + nn.functional.one_hot(self.y, 8).float() * 2.0
        self.poison, self.delay = set(poison), delay

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        x = self.x[i] + 0.1 * torch.randn(8)
        if i in self.poison:
            x = torch.full_like(x, float("nan"))
        return {"x": x, "y": self.y[i], "index": torch.tensor(i)}


class ToyTask(Task):
    """A generic task with what self-supervised papers keep beside the model: an EMA teacher
    (updated in ``after_step``) and a feature queue (updated in ``loss``), both task state that
    must survive a restart. Loss terms: cross-entropy plus a distillation term to the teacher and
    a small queue term (so the queue changes the result)."""

    def __init__(self, n=24, val_n=9, poison=(), delay=0.0, momentum=0.9, queue=8, queue_weight=0.01,
                 corrupt_at=None):
        self.train_data = ToyData(n, 0, poison, delay)
        self.val_data = ToyData(val_n, 1)
        self.momentum, self.queue_len, self.queue_weight = momentum, queue, queue_weight
        # a one-shot fault (not task state: a rollback does not bring it back), e.g. a learning-rate
        # blow-up that throws the weights off for the steps after ``corrupt_at``
        self.corrupt_at, self._corrupted = corrupt_at, False
        self.teacher = None
        self.queue = torch.zeros(queue, 3)
        self.queue_ptr = 0

    def config(self):
        return {"toy": True, "n": len(self.train_data), "poison": sorted(self.train_data.poison), "corrupt_at": self.corrupt_at,
                "momentum": self.momentum, "queue": self.queue_len, "queue_weight": self.queue_weight}

    def build_model(self):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.teacher = copy.deepcopy(model).requires_grad_(False)
        return model

    def train_dataset(self):
        return self.train_data

    def val_dataset(self):
        return self.val_data

    def loss(self, model, batch):
        logits = model(batch["x"])
        with torch.no_grad():
            self.teacher.to(logits.device)
            t = self.teacher(batch["x"]).softmax(1)
            q = self.queue.to(logits.device).mean(0)
            n = min(len(t), self.queue_len)
            idx = (self.queue_ptr + torch.arange(n)) % self.queue_len
            self.queue[idx] = t[:n].float().cpu()
            self.queue_ptr = int((self.queue_ptr + n) % self.queue_len)
        ce = nn.functional.cross_entropy(logits, batch["y"])
        distill = -(t * logits.log_softmax(1)).sum(1).mean() * 0.1
        return {"ce": ce, "distill": distill, "queue": self.queue_weight * (logits.softmax(1).mean(0) - q).square().sum()}

    @torch.no_grad()
    def after_step(self, model, step, total_steps):
        if self.corrupt_at is not None and step == self.corrupt_at and not self._corrupted:
            self._corrupted = True
            g = torch.Generator().manual_seed(1)
            for q in model.parameters():
                q.add_(torch.randn(q.shape, generator=g) * 2.0)
        for pt, ps in zip(self.teacher.parameters(), model.parameters()):
            pt.mul_(self.momentum).add_(ps.detach().to(pt.device), alpha=1 - self.momentum)

    @torch.no_grad()
    def evaluate(self, model, batches, reduce):
        counts = np.zeros((3, 3), np.int64)
        for b in batches:
            pred = model(b["x"]).argmax(1)
            np.add.at(counts, (b["y"].cpu().numpy(), pred.cpu().numpy()), 1)
        counts = reduce(counts)
        return {"accuracy": float(np.trace(counts) / counts.sum() * 100), "n_eval": float(counts.sum())}

    def state_dict(self):
        return {"teacher": self.teacher.state_dict(), "queue": self.queue.clone(), "queue_ptr": self.queue_ptr}

    def load_state_dict(self, state):
        if state:
            self.teacher.load_state_dict(state["teacher"])
            self.queue = state["queue"].clone()
            self.queue_ptr = int(state["queue_ptr"])
