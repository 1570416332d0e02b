import json
import math

import pytest

from imgclf_cli.main import cli


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_check_grad_passes(runner, kind):
    res = runner.invoke(cli, ["check", "grad", kind])
    assert res.exit_code == 0, res.output
    assert "good" in res.stdout
    out = json.loads(runner.invoke(cli, ["check", "grad", kind, "--json", "--n-checks", "20"]).stdout)
    assert out["ok"] and out["max_rel_error"] < 1e-6 and out["params"][0]["checked"] == 20


def test_check_grad_fails_with_exit_1_on_a_wrong_gradient(runner, monkeypatch):
    from imgclf.linear import LinearSVM

    real = LinearSVM.loss_and_grads

    def wrong(self, X, y, mode="train", rng=None):
        loss, grads = real(self, X, y, mode, rng)
        grads["W"] = -grads["W"]
        return loss, grads

    monkeypatch.setattr(LinearSVM, "loss_and_grads", wrong)
    res = runner.invoke(cli, ["check", "grad", "svm"])
    assert res.exit_code == 1
    assert "wrong" in res.stdout and "FAILED" in res.stderr


def test_unknown_kind_exit_2(runner):
    res = runner.invoke(cli, ["check", "grad", "perceptron"])
    assert res.exit_code == 2 and "choose from" in res.output


@pytest.mark.parametrize("kind,expected", [("softmax", math.log(3)), ("svm", 2.0)])
def test_check_loss_on_small_data(runner, small_stream, kind, expected):
    res = runner.invoke(cli, ["check", "loss", kind, "--data", str(small_stream), "--n", "100", "--json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["expected"] == pytest.approx(expected) and out["n_classes"] == 3 and out["n"] == 100
    assert out["measured"] == pytest.approx(expected, rel=0.15)


def test_check_loss_softmax_on_cifar(runner, cifar_dir):
    res = runner.invoke(cli, ["check", "loss", "softmax", "--data", str(cifar_dir), "--n", "500", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["measured"] == pytest.approx(math.log(10), rel=0.05)


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_check_overfit_reaches_100_percent(runner, small_stream, kind):
    res = runner.invoke(cli, ["check", "overfit", kind, "--data", str(small_stream), "--json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n"] == 20 and out["train_accuracy"] == 1.0 and out["reached_100_at_epoch"] is not None


def test_check_overfit_reports_failure(runner, small_stream):
    res = runner.invoke(cli, ["check", "overfit", "softmax", "--data", str(small_stream), "--epochs", "1",
                              "--n", "100"])
    assert res.exit_code == 1
    assert "FAILED" in res.stderr
