"""A tiny sklearn-style estimator for the tuning, executor and Dask tests (imported by worker processes).

Its validation score is a known function of its parameters: best at lr=1e-3, reg small, so a search has
a right answer. `mode` makes a trial fail, diverge or kill its own worker process.
"""

from __future__ import annotations

import math
import os
import signal
import time

import numpy as np

from imgclf.errors import Diverged


class Dummy:
    kind = "dummy"

    def __init__(self, lr=1e-3, reg=0.0, hidden=100, mode="ok", marker=None, sleep=0.0, random_state=None):
        self.lr = lr
        self.reg = reg
        self.hidden = hidden
        self.mode = mode
        self.marker = marker
        self.sleep = sleep
        self.random_state = random_state

    def get_params(self, deep=True):
        return {k: getattr(self, k) for k in ("lr", "reg", "hidden", "mode", "marker", "sleep", "random_state")}

    def set_params(self, **params):
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def fit(self, X, y, X_val=None, y_val=None):
        if self.sleep:
            time.sleep(self.sleep)
        if self.mode == "fail":
            raise ValueError("this configuration always fails")
        if self.mode == "diverge":
            raise Diverged("the loss became nan at iteration 3")
        if self.mode == "kill" or (self.mode == "kill-once" and not os.path.exists(self.marker)):
            if self.marker:
                open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        self.w_ = np.full(3, float(self.lr))
        self.n_seen_ = len(X)
        return self

    def score(self, X, y):
        return max(0.0, 1.0 - abs(math.log10(self.lr) + 3) / 5 - self.reg)

    def predict(self, X):
        return np.zeros(len(X), np.int64)

    def to_arrays(self):
        return self.get_params(), {"w": self.w_}

    @classmethod
    def from_arrays(cls, params, arrays):
        obj = cls(**params)
        obj.w_ = arrays["w"]
        return obj


SPEC = "dummy_estimator:Dummy"
