"""Typed exceptions. The library raises these; the CLI maps them to exit codes.

`UsageError` and its subclasses mean the caller's input was wrong (exit status 2);
everything else derived from `ImgclfError` is a runtime failure (exit status 1).
"""


class ImgclfError(Exception):
    """Base of every error imgclf raises on purpose."""

    exit_code = 1


class UsageError(ImgclfError, ValueError):
    """A parameter or argument is invalid.

    `param` names the parameter at fault as the library spells it (`batch_size`), so a front end can
    say it in its own words (the CLI: `--batch-size`); messages use the same name.
    """

    exit_code = 2

    def __init__(self, *args, param: str | None = None):
        super().__init__(*args)
        self.param = param


class DataError(UsageError):
    """A dataset, image or pipeline stream cannot be read or is malformed."""


class ModelFileError(UsageError):
    """A model or checkpoint file is missing, foreign, truncated or of an unknown version."""


class UnsafePickleError(DataError):
    """A pickle asked for something outside the small allow-list CIFAR batches need."""


class WriteError(ImgclfError, OSError):
    """Output could not be written (a full disk, a closed pipe's neighbour, no permission)."""


class DownloadError(ImgclfError):
    """A download failed, was truncated or did not match its checksum."""


class Diverged(ImgclfError):
    """Training produced a NaN or infinite loss."""


class Interrupted(ImgclfError):
    """Training was interrupted (SIGINT) after a checkpoint was written."""

    exit_code = 130


class Unsupported(UsageError):
    """A parameter asks for what this machine or installation lacks (a CPU feature, an optional library)."""


class NativeLibraryError(ImgclfError):
    """An optional native library (oneDNN) reported a failure at run time; `status` is its status name."""

    def __init__(self, *args, status: str | None = None):
        super().__init__(*args)
        self.status = status
