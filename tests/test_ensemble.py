"""Ensemble: probability averaging, voting, one-file save/load, predict/evaluate through the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_images

from imgclf import storage
from imgclf.ensemble import Ensemble, ensemble_bundle
from imgclf.errors import UsageError
from imgclf.io.modelfile import ModelBundle
from imgclf.linear import LinearSVM, SoftmaxClassifier
from imgclf.preprocessing import MeanSubtraction


def train_member(cls, seed, chain=True, **params):
    X, y = make_images(90, seed=seed)
    steps = [MeanSubtraction().fit(X)] if chain else []
    Xf = steps[0].transform(X) if chain else X
    model = cls(lr=1e-5, reg=1e-3, epochs=3, random_state=seed, **params).fit(Xf, y)
    return ModelBundle(model, ["a", "b", "c"], (8, 8, 3), steps, [], seed, {"n_train": 90})


@pytest.fixture(scope="module")
def members():
    return [train_member(SoftmaxClassifier, 1), train_member(SoftmaxClassifier, 2, chain=False),
            train_member(LinearSVM, 3)]


def test_soft_voting_averages_member_probabilities(members):
    X, _ = make_images(30, seed=9)
    soft = members[:2]
    ens = Ensemble(soft)
    expected = np.mean([m.model.predict_proba(m.features(X)) for m in soft], axis=0)
    assert ens.soft
    np.testing.assert_allclose(ens.predict_proba(X), expected, rtol=1e-6)
    np.testing.assert_array_equal(ens.predict(X), np.argmax(expected, axis=1))


def test_hard_voting_when_a_member_has_no_probabilities(members):
    X, y = make_images(30, seed=9)
    ens = Ensemble(members)
    assert not ens.soft
    preds = np.array([m.model.predict(m.features(X)) for m in members])
    majority = [np.bincount(col, minlength=3).argmax() for col in preds.T]
    np.testing.assert_array_equal(ens.predict(X), majority)
    assert ens.score(X, y) == pytest.approx(np.mean(ens.predict(X) == y))
    with pytest.raises(UsageError, match="votes: not every member"):
        ens.predict_proba(X)
    with pytest.raises(UsageError, match="soft voting needs class probabilities, which svm"):
        Ensemble(members, voting="soft").fit()


def test_vote_ties_go_to_the_smallest_label():
    votes = [np.array([2, 1, 0]), np.array([1, 2, 2]), np.array([0, 0, 1])]
    np.testing.assert_array_equal(Ensemble._vote(votes, 3), [0, 0, 0])
    np.testing.assert_array_equal(Ensemble._vote([np.array([2]), np.array([2]), np.array([1])], 3), [2])


def test_members_must_agree(members):
    other = ModelBundle(members[0].model, ["x", "y", "z"], (8, 8, 3))
    with pytest.raises(UsageError, match="member 2 has classes"):
        Ensemble([members[0], other]).fit()
    with pytest.raises(UsageError, match="inputs of shape"):
        Ensemble([members[0], ModelBundle(members[1].model, ["a", "b", "c"], (4, 4, 3))]).fit()
    with pytest.raises(UsageError, match="at least one member"):
        Ensemble([]).fit()


@pytest.mark.parametrize("take", [slice(0, 2), slice(0, 3)])
def test_one_file_round_trip(members, tmp_path, take):
    X, _ = make_images(30, seed=9)
    bundle = ensemble_bundle(members[take], extra={"n_train": 90})
    path = tmp_path / "ens.npz"
    storage.save_model(bundle, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens.npz"]
    back = storage.load_model(path)
    assert back.kind == "ensemble" and back.classes == ["a", "b", "c"] and back.input_shape == (8, 8, 3)
    assert [m.kind for m in back.model.members] == [m.kind for m in members[take]]
    assert [len(m.chain) for m in back.model.members] == [len(m.chain) for m in members[take]]
    np.testing.assert_array_equal(back.model.predict(X), bundle.model.predict(X))
    if bundle.model.soft:
        np.testing.assert_allclose(back.model.predict_proba(X), bundle.model.predict_proba(X))


def test_predict_and_evaluate_accept_an_ensemble_file(members, tmp_path, runner, small_stream):
    import json

    from imgclf_cli.main import cli

    path = tmp_path / "ens.npz"
    storage.save_model(ensemble_bundle(members[:2]), path)
    res = runner.invoke(cli, ["evaluate", "-m", str(path), "--data", str(small_stream), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["model"] == "ensemble" and out["split"] == "test" and 0 <= out["accuracy"] <= 1
    res = runner.invoke(cli, ["predict", "-m", str(path), str(small_stream)])
    assert res.exit_code == 0, res.output
    assert len(res.stdout.strip().splitlines()) >= 30


def test_ensemble_command_scores_members_and_saves(members, tmp_path, runner, small_stream):
    import json

    from imgclf_cli.main import cli

    paths = []
    for i, m in enumerate(members):
        paths += ["-m", str(tmp_path / f"m{i}.npz")]
        storage.save_model(m, paths[-1])
    out = tmp_path / "ens.npz"
    res = runner.invoke(cli, ["ensemble", *paths, "--data", str(small_stream), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["voting"] == "hard" and len(d["members"]) == 3 and d["n_train"] == 90 and d["n_eval"] == 30
    assert storage.load_model(out).kind == "ensemble"
    # the saved file scores the same through evaluate
    ev = json.loads(runner.invoke(cli, ["evaluate", "-m", str(out), "--data", str(small_stream), "--json"]).stdout)
    assert ev["accuracy"] == pytest.approx(d["accuracy"])
    res = runner.invoke(cli, ["ensemble", *paths[:4], "--data", str(small_stream)])
    assert res.exit_code == 0 and "ensemble (soft voting)" in res.stdout and "vs best member" in res.stdout


def test_ensemble_command_errors(members, tmp_path, runner, small_stream):
    from imgclf_cli.main import cli

    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    storage.save_model(members[0], a)
    storage.save_model(ModelBundle(members[1].model, ["x", "y", "z"], (8, 8, 3)), b)
    res = runner.invoke(cli, ["ensemble", "-m", str(a), "-m", str(b), "--data", str(small_stream)])
    assert res.exit_code == 2 and "member 2 has classes" in res.output
    res = runner.invoke(cli, ["ensemble", "-m", str(a), "-m", str(tmp_path / "none.npz")])
    assert res.exit_code == 2 and "no such file" in res.output
