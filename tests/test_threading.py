"""imgclf sets how long idle pool threads spin (imgclf/_threading.py), and leaves the user's choice alone."""

import os
import subprocess
import sys

from imgclf._threading import SPIN_DEFAULTS

CODE = "import os, imgclf; print(os.environ['GOMP_SPINCOUNT'], os.environ['OPENBLAS_THREAD_TIMEOUT'])"


def _run(env):
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_defaults_are_set_on_import():
    env = {k: v for k, v in os.environ.items() if k not in SPIN_DEFAULTS}
    assert _run(env) == [SPIN_DEFAULTS["GOMP_SPINCOUNT"], SPIN_DEFAULTS["OPENBLAS_THREAD_TIMEOUT"]]


def test_user_values_win():
    env = dict(os.environ, GOMP_SPINCOUNT="123", OPENBLAS_THREAD_TIMEOUT="25")
    assert _run(env) == ["123", "25"]
