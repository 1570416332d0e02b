import subprocess
import sys

from imgclf_cli.main import cli


def test_help_lists_commands(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "data" in result.output


def test_help_does_not_import_numpy_or_numba():
    code = ("import sys; from imgclf_cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('numba' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_cli_package_is_not_a_bare_top_level_module():
    import importlib.util

    assert importlib.util.find_spec("imgclf_cli") is not None


def test_atomic_write_respects_umask(tmp_path):
    import os

    from imgclf.io.atomic import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_every_command_help_stays_light():
    """`imgclf <cmd> --help` must not load numpy or numba (start-up stays instant)."""
    code = (
        "import sys\nfrom imgclf_cli.main import main\n"
        "cmds = [[], ['data'], ['data', 'get'], ['knn'], ['train'], ['train', 'svm'], ['train', 'softmax'],\n"
        "        ['train', 'twolayer'], ['train', 'convnet'], ['preprocess'], ['preprocess', 'pca'], ['predict'],\n"
        "        ['evaluate'], ['check'], ['viz'], ['tune'], ['ensemble']]\n"
        "for c in cmds:\n"
        "    try:\n        main(c + ['--help'])\n    except SystemExit as e:\n        assert e.code == 0, c\n"
        "print('numba' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"
