"""Small convolutional nets: [conv - [bn] - relu] x k - pool stages, then the fully-connected head.

`ConvNet(filters=(32, 64))` is conv32-relu-pool-conv64-relu-pool-fc256-relu-fc10 on 32x32 colour images.
An entry "FxK" in `filters` stacks K convolutions of F filters before the stage's pool, so
`filters=("32x2", "64x2")` is the conv32-conv32-pool-conv64-conv64-pool layout; with
`pool_position="first"` the pool follows each stage's first convolution instead (airbench's
conv-pool-conv block: conv32-pool-conv32-conv64-pool-conv64), so the stage's other convolutions run at
the pooled resolution, a quarter of the multiply-adds for 2x2 pools. Convolutions are
`filter_size` square, stride 1, zero-padded to keep the size ("same"); pooling is `pool` x `pool`
max pooling with stride `pool` (1: none). With `batchnorm` every convolution and hidden layer is
followed by batch normalisation (spatial for the convolutions) before its activation.

The estimator is the NeuralNet with a different `_forward`: same training parameters, the one Solver,
the same model-file plumbing. Images arrive (N, H, W, C) (channels from the dataset: 3 for colour,
1 for grey); (N, D) rows are folded by `input_shape`, or else read as 1x1 images with D channels (the
convolutions then see each row whole, like a fully-connected layer, which keeps the estimator usable
on flat features, e.g. inside scikit-learn's tools). The net standardises
its input per channel with the training set's mean and standard deviation, so raw uint8 images can be
given directly.

Training methods of fast CIFAR-10 recipes (airbench), each a parameter: `label_smoothing`, `ema`
(weight averaging, evaluated and kept; imgclf/nn/solver.py), `lookahead` (slow weights synchronised every
k steps) and `augment="flip:alt,crop:4"` (alternating flips; imgclf/nn/augment.py) as for every net; `bn_momentum` (the
running statistics' decay); `patch_whiten`, which initialises the first layer's filters as patch
whitening: the leading F/2 principal directions of the training images' KxK patches (the Whitening
transform of imgclf/preprocessing.py fitted on im2col rows), scaled by 1/sqrt(eigenvalue + eps), and their
negatives, so after the ReLU the layer passes both signs of each whitened component; `tta="flip"`,
which scores each image as the mean of its own and its mirror image's class scores; and
`tta="flip+shift"` (airbench's level 2): 0.5 flip(x) + 0.25 flip(x shifted by (-1, -1)) + 0.25 flip(x shifted
by (+1, +1)), the shifts cropped from the image reflect-padded by one pixel ([0:H, 0:W] and [2:H+2, 2:W+2]).

airbench's network (Keller Jordan's airbench94) is these parameters together: `stem="whiten:2"` (a frozen
2x2 'valid' convolution with 2*2*2*C filters, +/- the whitened eigenvectors of the training images' 2x2
patches, whose bias alone trains, for the first `stem_bias_epochs` epochs), `activation="gelu"`,
`pool_position="first"`, `batchnorm=True` with `bn_scale=False` (gamma fixed at 1) and `bn_momentum=0.6`,
`dirac=True` (each convolution starts as the identity on its first input channels: an implicit
residual), `hidden=0`, `head="maxpool"` (the global max over the last map), `logit_scale=1/9` and
`classifier_bias=False`. One difference stays: airbench pools before its batch norm and GELU, imgclf
after them (the fused batch norm + activation + pool layer), so its batch statistics come from the
full-size map; the same recipe measured 0.8593 here against 0.8617 in PyTorch (docs/recipes.md).
Frozen parameters are not held back by the model but by the Solver, which never updates the names
`frozen_params(epoch)` returns (the stem's weights are no parameter at all: `stem_w_`, stored in model
files as `stem_w`, recomputed from the data by fit and so by a resumed run).

Parameter names: W{i}, b{i} for every layer in order (convolution filters are (KH, KW, C, F)),
gamma{i}, beta{i} and buffers running_mean{i}, running_var{i} for batch norm after layer i; stem_b for
the stem's bias.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, UsageError
from ..validation import check_flag, check_int, check_number, is_integer, rescale_u8
from . import conv, dense, layers
from .net import NeuralNet

# Images per forward pass at prediction time: bounds the im2col buffers (KH*KW times a layer's input).
PREDICT_CHUNK = 250
# Images whose patches estimate the patch covariance of `patch_whiten` (500 give 450,000 3x3 patches).
WHITEN_SAMPLE = 500
# Added to the patch covariance's eigenvalues (the channels are standardised, so the total is KxKxC).
WHITEN_EPS = 1e-2
TTA = (None, "flip", "flip+shift")
# The pool entry of a layer's cache when batch norm, ReLU and pooling ran as one fused layer.
FUSED_POOL = "bn+relu+pool"
# The activation entry of a layer's cache when batch norm and GELU ran as one layer.
BN_GELU = "bn+gelu"
FUSED_GELU_POOL = "bn+gelu+pool"
POOL_POSITIONS = ("last", "first")
HEADS = ("flatten", "maxpool")
# `stem="whiten:K"`: the first images (as airbench) whose KxK patches give the whitening filters, and the
# eps added to the patch covariance's eigenvalues (airbench's 5e-4).
STEM_SAMPLE = 5000
STEM_EPS = 5e-4
STEM_MAX_SIZE = 8
# The batch caches' last entry when the stem or the max head ran (what loss_and_grads pops first).
EXTRA = "convnet-extra"


def parse_stem(stem) -> int | None:
    """None -> None; "whiten:K" -> K (the stem's square size); UsageError naming `stem` otherwise."""
    if stem is None:
        return None
    name, _, arg = stem.partition(":") if isinstance(stem, str) else ("", "", "")
    if name == "whiten" and arg.isascii() and arg.isdigit() and 1 <= int(arg) <= STEM_MAX_SIZE:
        return int(arg)
    raise UsageError(f"stem must be None or 'whiten:K' with K in 1..{STEM_MAX_SIZE} (e.g. 'whiten:2'), got {stem!r}",
                     param="stem")


def parse_filters(filters) -> list[tuple[int, int]]:
    """(32, 64) or "32x2,64x2" or ["32x2", 64] -> [(filters, convolutions), ...] per stage."""
    if isinstance(filters, str):
        filters = [f for f in filters.split(",") if f.strip()]
    elif isinstance(filters, (int, np.integer)):
        filters = [filters]
    stages = []
    try:
        for entry in filters:
            f, _, k = str(entry).strip().lower().partition("x")
            stages.append((int(f), int(k) if k else 1))
    except (TypeError, ValueError):
        raise UsageError(f"filters must be filter counts such as 32,64 or 32x2,64x2 (FxK: K convolutions of F "
                         f"filters), got {filters!r}") from None
    if not stages or any(f < 1 or k < 1 for f, k in stages):
        raise UsageError(f"filters needs at least one stage with counts >= 1, got {filters!r}")
    return stages


class ConvNet(NeuralNet):
    """A small convolutional net: stages of [conv -> [batch norm] -> activation] x K -> max pool (or, with
    pool_position="first", the pool after the stage's first convolution), then a fully-connected head as
    in NeuralNet. Images (N, H, W, C) are standardised per channel with the
    training set's statistics, so raw uint8 images can be given.

    Parameters
    ----------
    filters : sequence of int or str, default=(32, 64)
        The filters of each stage's convolutions; an entry "FxK" stacks K convolutions of F filters before
        the stage's pool, e.g. ("32x2", "64x2"). A string "32x2,64x2" works too.
    filter_size : int, default=3
        The convolutions' square size (stride 1, zero-padded to keep the size).
    hidden : int or sequence of int, default=256
        The head's hidden layers; 0, None or () for none.
    pool : int, default=2
        Max pooling pool x pool with stride pool after each stage; 1 for none.
    pool_position : {"last", "first"}, default="last"
        Where each stage's pool goes: "last" after its K convolutions; "first" after its first one, so the
        other K-1 run at the pooled resolution (airbench's conv-pool-conv block). The same for K = 1.
    batchnorm : bool, default=False
        Batch normalisation after every convolution (spatial) and hidden layer.
    dropout : float, default=0.0
        Inverted dropout in the head's hidden layers, in [0, 1).
    activation : str, default="relu"
        "relu", "leaky_relu[:SLOPE]", "tanh", "sigmoid", "elu[:ALPHA]" or "gelu" (exact, x * Phi(x)).
    init : str, default="he"
        Weight initialisation: "he", "xavier" or "normal:STD".
    batch_size : int, default=64
        Rows per step.
    loss, reg, optim, lr, optim_options, patience, train_acc_sample, dtype, class_weight
        As in NeuralNet, with the same defaults.
    lr_schedule : str, default=None
        As in NeuralNet (constant by default).
    epochs : int or "auto", default="auto"
        As in NeuralNet; "auto" is 10 on large data.
    augment : str, default="auto"
        As in NeuralNet; "auto" is flips and random crops of up to an eighth of the image size (crop:4 on
        32x32) for colour images, none for grey ones.
    label_smoothing, ema, lookahead, bias_lr_scale, precision
        As in NeuralNet, with the same defaults; precision="bf16" runs the convolutions' three products
        per step (forward, filter gradient, input gradient) in bfloat16 with float32 accumulation.
    conv_backend : {"auto", "im2col", "dnnl"}, default="auto"
        How the convolutions run (a speed choice: the numbers agree to float32 rounding, docs/dnnl.md):
        "im2col" (im2col + one matrix product), "dnnl" (oneDNN's direct convolutions, the optional
        `dnnl` extra; Unsupported where it is not installed; float32 dtype only), or "auto": oneDNN where
        it is installed, except for maps of at most 4x4 pixels where im2col is faster, else im2col.
        Scoring uses oneDNN where it can (float32 data, installed) whatever was asked; model files do
        not record it, so a model trained with either backend loads and predicts anywhere.
    input_shape : tuple of int, default=None
        (H, W, C) to fold (N, D) rows into images; None: rows are read as 1x1 images with D channels.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds initialisation, shuffling, augmentation and dropout; the same seed gives the same model.
    tta : {None, "flip", "flip+shift"}, default=None
        Test-time augmentation: "flip" scores each image as the mean of its and its mirror image's scores;
        "flip+shift" (airbench's) as 0.5 flip(x) + 0.25 flip(x shifted one pixel up-left) + 0.25 flip(x
        shifted down-right), the shifts from the image reflect-padded by one pixel (six forward passes).
    bn_momentum : float, default=0.9
        Batch norm's running statistics: running = m * running + (1 - m) * batch.
    patch_whiten : bool, default=False
        Initialise the first layer's filters as +/- the whitened leading principal directions of the
        training images' patches (the filters beyond twice their number stay random).
    stem : None or "whiten:K", default=None
        A first KxK 'valid' convolution (no padding: 32x32 -> 31x31 for K=2) with 2*K*K*C filters, +/- the
        eigenvectors of the standardised training images' KxK patch covariance (the first 5000 images)
        divided by sqrt(eigenvalue + 5e-4); its filters are never trained, its bias only for the first
        `stem_bias_epochs` epochs; then the activation. airbench's whitening layer is "whiten:2".
    stem_bias_epochs : int, default=3
        Epochs the stem's bias trains for (0: never); afterwards the optimiser leaves it alone.
    bn_scale : bool, default=True
        Batch norm's learnable scale gamma; False keeps every gamma at 1 (never trained), as airbench.
    dirac : bool, default=False
        Initialise every convolution after the stem (every one but a `patch_whiten` first layer) with its
        first min(C_in, F) filters the identity (centre tap 1 on the filter's own channel): an implicit
        residual; the other filters from `init`. Needs an odd filter_size.
    head : {"flatten", "maxpool"}, default="flatten"
        What the fully-connected head sees: the last map flattened, or its maximum over the positions
        (global max pooling: one value per channel).
    logit_scale : float, default=1.0
        The class scores are the last layer's output times this (airbench: 1/9).
    classifier_bias : bool, default=True
        Whether the last (classifier) layer has a bias; airbench's has none.

    Attributes
    ----------
    params_, buffers_ : dict of ndarray
        The trained parameters (W{i}, b{i}, gamma{i}, beta{i}, layer by layer) and batch-norm statistics.
    classes_, history_, stopped_
        As in NeuralNet.
    """

    kind = "convnet"
    _AUTO_EPOCHS = 10
    _LEGACY_LAYOUT = dense.BN_BEFORE_ACTIVATION  # the convnet's head always normalised before the activation

    def __init__(self, filters=(32, 64), filter_size=3, hidden=256, pool=2, batchnorm=False, dropout=0.0,
                 activation="relu", init="he", loss="softmax", reg=1e-4, optim="adam", lr=1e-3, optim_options=None,
                 lr_schedule=None, epochs="auto", batch_size=64, augment="auto", patience=None, train_acc_sample=1000,
                 dtype="float32", input_shape=None, class_weight=None, random_state=None, label_smoothing=0.0,
                 ema=None, tta=None, bn_momentum=0.9, patch_whiten=False, lookahead=None, pool_position="last",
                 stem=None, stem_bias_epochs=3, bn_scale=True, dirac=False, head="flatten", logit_scale=1.0,
                 classifier_bias=True, precision="float32",
                 bias_lr_scale=1.0, conv_backend="auto"):
        self.filters = filters
        self.filter_size = filter_size
        self.pool = pool
        self.pool_position = pool_position
        self.input_shape = input_shape
        self.tta = tta
        self.bn_momentum = bn_momentum
        self.patch_whiten = patch_whiten
        self.stem = stem
        self.stem_bias_epochs = stem_bias_epochs
        self.bn_scale = bn_scale
        self.dirac = dirac
        self.head = head
        self.logit_scale = logit_scale
        self.classifier_bias = classifier_bias
        self.conv_backend = conv_backend
        super().__init__(hidden=hidden, activation=activation, batchnorm=batchnorm, dropout=dropout, init=init,
                         loss=loss, reg=reg, optim=optim, lr=lr, optim_options=optim_options,
                         lr_schedule=lr_schedule, epochs=epochs, batch_size=batch_size, augment=augment,
                         patience=patience, train_acc_sample=train_acc_sample, dtype=dtype,
                         class_weight=class_weight, random_state=random_state, label_smoothing=label_smoothing,
                         ema=ema, lookahead=lookahead, precision=precision,
                         bias_lr_scale=bias_lr_scale)

    # -- validation ------------------------------------------------------------------------------
    def hidden_sizes(self) -> tuple[int, ...]:
        h = self.hidden
        if h is None or (isinstance(h, (list, tuple)) and not h) or (is_integer(h) and h == 0):
            return ()
        return super().hidden_sizes()

    def _check_params(self) -> None:
        super()._check_params()
        parse_filters(self.filters)
        for name in ("filter_size", "pool"):
            check_int(getattr(self, name), name)
        if not isinstance(self.pool_position, str) or self.pool_position not in POOL_POSITIONS:
            raise UsageError(f"pool_position must be 'last' or 'first', got {self.pool_position!r}")
        if self.tta not in TTA:
            raise UsageError(f"tta must be None, 'flip' or 'flip+shift', got {self.tta!r}", param="tta")
        check_number(self.bn_momentum, "bn_momentum", "in [0, 1)", low=0, high=1, high_open=True)
        check_flag(self.patch_whiten, "patch_whiten")
        if parse_stem(self.stem) is not None and self.patch_whiten:
            raise UsageError("patch_whiten initialises the first convolution from image patches; with a stem that "
                             "convolution sees the stem's output: use one of them", param="patch_whiten")
        check_int(self.stem_bias_epochs, "stem_bias_epochs", low=0)
        check_flag(self.bn_scale, "bn_scale")
        if check_flag(self.dirac, "dirac") and int(self.filter_size) % 2 == 0:
            raise UsageError(f"dirac needs an odd filter_size (a centre tap), got {self.filter_size}", param="dirac")
        if not isinstance(self.head, str) or self.head not in HEADS:
            raise UsageError(f"head must be 'flatten' or 'maxpool', got {self.head!r}", param="head")
        check_number(self.logit_scale, "logit_scale", "a finite number > 0", low=0, low_open=True)
        check_flag(self.classifier_bias, "classifier_bias")
        backend = self._conv_backend()
        if backend == "dnnl" and self.dtype != "float32":
            raise UsageError(f"conv_backend='dnnl' runs float32 convolutions; it needs dtype='float32', got "
                             f"{self.dtype!r}", param="conv_backend")

    def _conv_backend(self, mode: str = "train") -> str:
        """The backend asked for ("auto", "im2col" or "dnnl"; estimators pickled before the parameter:
        "auto"); outside training an explicit "dnnl" is "auto" (scoring runs wherever the model loads)."""
        backend = getattr(self, "conv_backend", "auto")
        if not isinstance(backend, str) or backend not in ("auto",) + conv.BACKENDS:
            raise UsageError(f"conv_backend must be 'auto', 'im2col' or 'dnnl', got {backend!r}",
                             param="conv_backend")
        return "auto" if backend == "dnnl" and mode != "train" else backend

    def _file_params(self) -> dict:
        # conv_backend is how this machine runs the convolutions, not part of the model: not recorded, so
        # the file loads with older readers and on machines without oneDNN
        params = super()._file_params()
        params.pop("conv_backend", None)
        return params

    def check_input_shape(self, shape) -> list[tuple[int, int, int]]:
        """Check the parameters and that the layers fit images of `shape` (H, W, C), before any data is
        converted; returns the (H, W, C) after every convolution layer. UsageError names what breaks."""
        self._check_params()
        return self._geometry(tuple(shape))

    def _image_shape(self, n_features: int | None = None) -> tuple[int, int, int]:
        shape = getattr(self, "input_shape_", None) or self.input_shape
        if shape is None:
            if n_features is None:
                raise UsageError("ConvNet needs images (N, H, W, C), or input_shape=(H, W, C) to fold (N, D) rows")
            return (1, 1, int(n_features))
        try:
            shape = tuple(shape)
        except TypeError:
            shape = ()
        if len(shape) != 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                      for v in shape):
            raise UsageError(f"input_shape must be (H, W, C) with positive sizes, got {self.input_shape!r}")
        shape = tuple(int(v) for v in shape)
        if n_features is not None and int(np.prod(shape)) != n_features:
            raise UsageError(f"rows of {n_features} features cannot be {'x'.join(map(str, shape))} images")
        return shape

    def _images(self, X, name="X", min_samples=0) -> np.ndarray:
        X = self._features(X, name, min_samples)
        if X.ndim == 4:
            return X
        if X.ndim == 2:
            return X.reshape((len(X),) + self._image_shape(X.shape[1]))
        raise UsageError(f"{name} must be (N, H, W, C) images or (N, D) rows, got shape {X.shape}")

    # -- architecture ----------------------------------------------------------------------------
    def _conv_layers(self, shape=None) -> list[tuple[int, bool]]:
        """(filters, pool after it) for every convolution, in order: each stage pools after its last
        convolution, or after its first with pool_position="first". Feature rows read as 1x1 images
        have no spatial layout: nothing to pool there, so `pool` applies to real images only."""
        shape = shape if shape is not None else getattr(self, "input_shape_", None)
        pooled = self.pool > 1 and (shape is None or tuple(shape[:2]) != (1, 1))
        first = self.pool_position == "first"
        out = []
        for f, k in parse_filters(self.filters):
            if first:
                out += [(f, pooled)] + [(f, False)] * (k - 1)
            else:
                out += [(f, False)] * (k - 1) + [(f, pooled)]
        return out

    def _geometry(self, shape) -> list[tuple[int, int, int]]:
        """The (H, W, C) after every convolution layer (after its pool); clear errors when it breaks."""
        H, W, C = shape
        k = parse_stem(self.stem)
        if k is not None:
            if k > H or k > W:
                raise UsageError(f"stem {self.stem!r}: a {k}x{k} convolution without padding does not fit "
                                 f"{H}x{W} images", param="stem")
            H, W, C = H - k + 1, W - k + 1, 2 * k * k * C
        fs, pad = int(self.filter_size), (int(self.filter_size) - 1) // 2
        floor = k is not None
        if fs > max(3, H, W):  # a bigger filter sees only zero padding, at a quadratic cost
            raise UsageError(f"filter_size {fs} is larger than the {H}x{W} images")
        out = []
        from ..kernels.im2col import output_size
        from ..kernels.pool import pool_geometry

        for i, (f, pooled) in enumerate(self._conv_layers(shape), 1):
            try:
                H = output_size(H, fs, 1, pad, 1, "convolution height")
                W = output_size(W, fs, 1, pad, 1, "convolution width")
                if pooled:
                    H, W = pool_geometry((1, H, W, f), int(self.pool), int(self.pool), floor)
            except UsageError as exc:
                fold = " or give input_shape=(H, W, C) to fold (N, D) rows into images" if shape[:2] == (1, 1) else ""
                raise UsageError(f"pool: convolution layer {i} of filters={self.filters!r} on "
                                 f"{'x'.join(map(str, shape))} "
                                 f"images: {exc} (use fewer pooling stages or pool 1{fold})", param="pool") from None
            C = f
            out.append((H, W, C))
        return out

    def initialize(self, n_features: int, n_classes: int, rng: np.random.Generator):
        """Fresh parameters for images of `input_shape_` and n_classes outputs; returns the estimator."""
        from . import init

        self._check_params()
        self.input_shape_ = self._image_shape(n_features)
        dt = np.dtype(self.dtype)
        fs = int(self.filter_size)
        self.params_, self.buffers_ = {}, {}
        self._workspaces = {}
        self._stem_frozen = False
        C, i = self.input_shape_[2], 0
        k = parse_stem(self.stem)
        if k is not None:
            # Zeros until fit computes the whitening filters from the data (or a model file gives them).
            self.stem_w_ = np.zeros((k, k, C, 2 * k * k * C), dt)
            C = 2 * k * k * C
        else:
            self.__dict__.pop("stem_w_", None)
        for i, (f, _) in enumerate(self._conv_layers(), 1):
            self.params_[f"W{i}"] = init.weight(self.init, fs * fs * C, f, rng, dt).reshape(fs, fs, C, f)
            if self.dirac:
                self._dirac(self.params_[f"W{i}"])
            self._add_bias_or_batchnorm(i, f, dt)
            C = f
        H, W, C = self._geometry(self.input_shape_)[-1]
        sizes = ((C,) if self.head == "maxpool" else (H * W * C,)) + self.hidden_sizes() + (n_classes,)
        for j in range(1, len(sizes) - 1):
            dense.add_params(self.params_, self.buffers_, i + j, sizes[j - 1], sizes[j], self.init, self.batchnorm,
                             rng, dt)
        self._add_output(i + len(sizes) - 1, sizes[-2], n_classes, rng, dt)
        if not self.classifier_bias:
            del self.params_[f"b{i + len(sizes) - 1}"]
        if k is not None:
            self.params_["stem_b"] = np.zeros(self.stem_w_.shape[3], dt)
        self.n_features_in_ = int(np.prod(self.input_shape_))
        if getattr(self, "input_mean_", None) is None or len(self.input_mean_) != self._stats_size():
            self.input_mean_, self.input_scale_ = None, None
        self.classes_ = getattr(self, "classes_", np.arange(n_classes))
        return self

    def _stats_size(self) -> int:
        return int(self.input_shape_[2])

    @staticmethod
    def _dirac(W) -> None:
        """Filters 0..min(C, F)-1 of W (KH, KW, C, F) become the identity: centre tap 1 on their own channel."""
        KH, KW, C, F = W.shape
        n = min(C, F)
        W[:, :, :, :n] = 0
        W[KH // 2, KW // 2, np.arange(n), np.arange(n)] = 1

    def frozen_params(self, epoch: int) -> frozenset:
        """The parameters the Solver leaves alone in (0-based) `epoch`: every batch-norm gamma with
        bn_scale=False, the stem's bias from epoch `stem_bias_epochs` on."""
        names = set()
        if not self.bn_scale:
            names.update(k for k in self.params_ if k.startswith("gamma"))
        if "stem_b" in self.params_ and epoch >= int(self.stem_bias_epochs):
            names.add("stem_b")
        # Once the Solver has frozen the stem's bias, later steps skip its gradient (the first convolution's
        # input gradient and the stem's activation backward: about a twelfth of a step on airbench's net).
        self._stem_frozen = "stem_b" in names
        return frozenset(names)

    def _stem_filters(self, images, k: int) -> np.ndarray:
        """(k, k, C, 2*k*k*C): +/- the eigenvectors of the images' kxk patch covariance (uncentred, over
        every 'valid' position), largest eigenvalue first, each divided by sqrt(eigenvalue + STEM_EPS)."""
        from ..kernels.im2col import im2col

        C = images.shape[3]
        D = k * k * C
        cov, rows = np.zeros((D, D)), 0
        for lo in range(0, len(images), 500):  # 500 images of 32x32 patches: 46 MB of float64 columns
            chunk = np.ascontiguousarray(images[lo:lo + 500], dtype=np.float64)
            cols = im2col(chunk, k, k)
            cov += cols.T @ cols
            rows += len(cols)
        values, vectors = np.linalg.eigh(cov / max(rows, 1))
        V = vectors[:, ::-1] / np.sqrt(np.maximum(values[::-1], 0.0) + STEM_EPS)
        return np.concatenate([V, -V], axis=1).reshape(k, k, C, 2 * D)

    def _auto_augment(self, size) -> str:
        # flips and random crops shifting by up to an eighth of the image: CIFAR-10's measured 4 pixels
        crop = min(size) // 8
        return f"flip,crop:{crop}" if crop else "flip"

    def _whitening_filters(self, images, W) -> np.ndarray:
        """(K*K*C, F) filters: +/- the top F/2 whitened principal directions of the images' KxK patches;
        the columns beyond 2 * min(F/2, K*K*C) keep their random initialisation."""
        from ..kernels.im2col import im2col
        from ..preprocessing import Whitening

        fs = int(self.filter_size)
        cols = im2col(np.ascontiguousarray(images, dtype=np.float64), fs, fs)
        k = min(W.shape[1] // 2, cols.shape[1])
        if k == 0:
            return W
        white = Whitening(dims=k, eps=WHITEN_EPS).fit(cols)
        V = white.components_.astype(np.float64) / np.sqrt(white.explained_variance_ + WHITEN_EPS)[:, None]
        out = W.copy()
        out[:, :k] = V.T
        out[:, k:2 * k] = -V.T
        return out

    def _add_bias_or_batchnorm(self, i, size, dt):
        # A bias right before batch norm is cancelled by its mean subtraction (its gradient is exactly
        # 0), so layers followed by batch norm have beta instead of b.
        if not self.batchnorm:
            self.params_[f"b{i}"] = np.zeros(size, dt)
        else:
            dense.add_batchnorm(self.params_, self.buffers_, i, size, dt)

    @property
    def n_layers(self) -> int:
        return sum(1 for k in self.params_ if k.startswith("W"))

    def __getstate__(self):
        # The im2col workspaces are scratch memory (tens of MB): copies of the estimator start without them
        # (and a pickle loaded from a memory map would hold them read-only).
        state = dict(self.__dict__)
        state.pop("_workspaces", None)
        state.pop("_stem_frozen", None)
        return state

    def _workspace(self, i) -> conv.Workspace:
        ws = self.__dict__.setdefault("_workspaces", {})
        return ws.setdefault(i, conv.Workspace())

    # -- the model the Solver trains ---------------------------------------------------------------
    def prepare(self, X, dtype=None) -> np.ndarray:
        """Raw batch to contiguous standardised (N, H, W, C) images in the weights' dtype (or `dtype`)."""
        X = self._images(X)
        if tuple(X.shape[1:]) != tuple(self.input_shape_):
            raise UsageError(f"images of shape {X.shape[1:]}, the net expects {tuple(self.input_shape_)}")
        return self.prepare_batch(X, dtype)

    def prepare_batch(self, X, dtype=None) -> np.ndarray:
        """`prepare` without the checks, for batches of data `fit` has validated as a whole."""
        dt = np.dtype(dtype or self.params_["W1"].dtype)
        out = np.array(X.reshape((len(X),) + tuple(self.input_shape_)), dtype=dt, order="C", copy=True)
        return self._standardise(out)

    def _bn(self, i, h, mode, fn, P, B, **kwargs):
        return fn(h, P[f"gamma{i}"], P[f"beta{i}"], B[f"running_mean{i}"], B[f"running_var{i}"], mode,
                  momentum=float(self.bn_momentum), **kwargs)

    def _forward(self, X, mode, rng, state=None):
        act, alpha = getattr(self, "_act", None) or layers.parse_activation(self.activation)
        P, B = state or (self.params_, self.buffers_)
        prec = self._train_precision(mode)
        backend = self._conv_backend(mode)
        pad = (int(self.filter_size) - 1) // 2
        h, caches = X, []
        extra = {}
        if "stem_b" in P:
            # the frozen whitening convolution ('valid'), its bias and the activation fused
            Ws = self.stem_w_.astype(h.dtype, copy=False)
            h, extra["stem"] = conv.conv_act_forward(h, Ws, P["stem_b"], act, alpha, 1, 0, 1, self._workspace(0),
                                                     backend=backend)
        convs = self._conv_layers()
        for i, (_, pooled) in enumerate(convs, 1):
            W, ws = P[f"W{i}"], self._workspace(i)
            c_act, c_pool = None, None
            if self.batchnorm:
                h, c_conv = conv.conv_forward(h, W, None, 1, pad, 1, ws, prec, backend)
                if act == "relu" and pooled and conv.fuses_bn_relu_pool(h.shape, int(self.pool)):
                    # bn, relu and 2x2 pool as one layer: the full-size normalised map is never written
                    h, c_bn = self._bn(i, h, mode, conv.bn_relu_pool_forward, P, B)
                    caches.append((c_conv, c_bn, None, FUSED_POOL))
                    continue
                if act == "gelu" and pooled and int(self.pool) == 2:
                    # bn, gelu and 2x2 pool as one layer (odd maps, after a stem, in floor mode)
                    h, c_bn = self._bn(i, h, mode, conv.bn_gelu_pool_forward, P, B)
                    caches.append((c_conv, c_bn, None, FUSED_GELU_POOL))
                    continue
                if act == "gelu":
                    # bn and gelu in one pass; the cache marks it for the backward pass
                    h, c_bn = self._bn(i, h, mode, conv.bn_gelu_forward, P, B)
                    c_act = BN_GELU
                else:
                    # conv - bn - relu, the bn and the relu fused; other activations follow separately
                    h, c_bn = self._bn(i, h, mode, conv.spatial_batchnorm_forward, P, B, relu=act == "relu")
                    if act != "relu":
                        h, c_act = layers.activation_forward(h, act, alpha)
            else:
                h, c_conv = conv.conv_act_forward(h, W, P[f"b{i}"], act, alpha, 1, pad, 1, ws, prec, backend)
                c_bn = None
            if pooled:
                # with a stem the maps are odd (31x31): pools leave out the last row and column, as PyTorch's
                h, c_pool = conv.max_pool_forward(h, int(self.pool), floor="stem" in extra)
            caches.append((c_conv, c_bn, c_act, c_pool))
        # h stays (N, H, W, C): the affine layers flatten it and hand back gradients in this shape.
        if self.head == "maxpool":
            h, extra["head"] = global_max_forward(h)
        L = self.n_layers
        for i in range(len(convs) + 1, L):
            h, c = dense.forward(h, i, P, B, act, alpha, float(self.dropout), mode, rng, precision=prec)
            caches.append(c)
        WL = P[f"W{L}"]
        scores, c = layers.affine_forward(h, WL, P[f"b{L}"] if f"b{L}" in P else WL.dtype.type(0), prec)
        caches.append(c)
        if float(self.logit_scale) != 1.0:
            scores = scores * scores.dtype.type(self.logit_scale)
        if extra:
            caches.append((EXTRA, extra))
        return scores, caches

    def loss_and_grads(self, X, y, mode="train", rng=None, l2=True):
        """(mean data loss + reg * sum W^2, grads keyed like params_) on a prepared batch; with
        l2=False the data term alone (the Solver then folds the penalty into the update)."""
        scores, caches = self._forward(X, mode, rng)
        data_loss, dh = self._data_loss(scores, y)
        extra = caches.pop()[1] if isinstance(caches[-1], tuple) and caches[-1][0] is EXTRA else {}
        if float(self.logit_scale) != 1.0:
            dh = dh * dh.dtype.type(self.logit_scale)
        L, n_conv = self.n_layers, len(self._conv_layers())
        stem = "stem" in extra and not getattr(self, "_stem_frozen", False)
        dh, g = layers.affine_backward(dh, caches[-1])
        grads = {f"W{L}": g["w"]}
        if f"b{L}" in self.params_:
            grads[f"b{L}"] = g["b"]
        for i in range(L - 1, n_conv, -1):
            dh, g = dense.backward(dh, caches[i - 1])
            grads.update(g)
        if "head" in extra:
            dh = global_max_backward(dh, extra["head"])
        for i in range(n_conv, 0, -1):
            c_conv, c_bn, c_act, c_pool = caches[i - 1]
            need_dx = i > 1 or stem  # the stem's bias needs the gradient of its output
            if c_pool is FUSED_POOL or c_pool is FUSED_GELU_POOL:
                fused = conv.bn_relu_pool_backward if c_pool is FUSED_POOL else conv.bn_gelu_pool_backward
                dh, g = fused(dh, c_bn, overwrite_input=True)  # the conv output is needed no more
                grads[f"gamma{i}"], grads[f"beta{i}"] = g["gamma"], g["beta"]
                dh, g = conv.conv_backward(dh, c_conv, need_dx=need_dx)
                grads[f"W{i}"] = g["w"]
                continue
            if c_pool is not None:
                dh, _ = conv.max_pool_backward(dh, c_pool)
            if c_bn is None:
                dh, g = conv.conv_act_backward(dh, c_conv, need_dx=need_dx)
                grads[f"b{i}"] = g["b"]
            else:
                if c_act is BN_GELU:
                    dh, g = conv.bn_gelu_backward(dh, c_bn)
                else:
                    if c_act is not None:
                        dh, _ = layers.activation_backward(dh, c_act)
                    dh, g = conv.spatial_batchnorm_backward(dh, c_bn)
                grads[f"gamma{i}"], grads[f"beta{i}"] = g["gamma"], g["beta"]
                dh, g = conv.conv_backward(dh, c_conv, need_dx=need_dx)
            grads[f"W{i}"] = g["w"]
        if "stem" in extra and not stem:
            grads["stem_b"] = np.zeros_like(self.params_["stem_b"])  # frozen: never applied
        elif stem:
            # the stem's filters are frozen: only its bias's gradient, without the filters' GEMM
            _, a, activation, alpha = extra["stem"]
            dz = layers._ew().act_backward(np.ascontiguousarray(dh, dtype=a.dtype).reshape(a.shape), a, activation,
                                           alpha)
            grads["stem_b"] = dz.sum(axis=0)
        return data_loss + (self._add_l2(grads) if l2 else 0.0), grads

    def _scores(self, Xp, state=None) -> np.ndarray:
        if self.tta == "flip":
            return self._mirror_scores(Xp, state)
        if self.tta == "flip+shift":
            # airbench's level 2: the flip TTA of the image and of its two diagonal one-pixel shifts, from the
            # reflect-padded image (the standardisation is per channel, so padding Xp pads the raw image).
            H, W = Xp.shape[1:3]
            padded = np.pad(Xp, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
            shifted = self._mirror_scores(np.ascontiguousarray(padded[:, :H, :W]), state)
            shifted += self._mirror_scores(np.ascontiguousarray(padded[:, 2:, 2:]), state)
            out = self._mirror_scores(Xp, state)
            out *= out.dtype.type(0.5)
            shifted *= shifted.dtype.type(0.25)
            out += shifted
            return out
        return self._plain_scores(Xp, state)

    def _mirror_scores(self, Xp, state=None) -> np.ndarray:
        """The mean of the images' and their mirror images' scores."""
        out = self._plain_scores(Xp, state)
        out += self._plain_scores(np.ascontiguousarray(Xp[:, :, ::-1]), state)
        out *= out.dtype.type(0.5)
        return out

    def _plain_scores(self, Xp, state=None) -> np.ndarray:
        if len(Xp) <= PREDICT_CHUNK:
            return self._forward(Xp, "test", None, state)[0]
        return np.concatenate([self._forward(Xp[i:i + PREDICT_CHUNK], "test", None, state)[0]
                               for i in range(0, len(Xp), PREDICT_CHUNK)])

    # -- public API ------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None, *, callback=None, checkpoint_dir=None, keep_checkpoints=3,
            resume=None, log=None, stop_signal=False, checkpoint_extra=None):
        """As NeuralNet.fit, on images ((N, D) rows are folded by `input_shape`, else 1x1 images)."""
        from .solver import Solver

        self._check_params()
        if self._conv_backend() == "dnnl":
            from .. import dnnl

            dnnl.require("conv_backend")
        self.input_shape_ = None
        X, y_enc, Xv, yv = self._fit_data(X, y, X_val, y_val, self._fit_images)
        self._geometry(self.input_shape_)
        try:
            return self._fit_prepared(X, y_enc, Xv, yv, callback=callback, checkpoint_dir=checkpoint_dir,
                                      keep_checkpoints=keep_checkpoints, resume=resume, log=log,
                                      stop_signal=stop_signal, checkpoint_extra=checkpoint_extra, solver_cls=Solver)
        finally:
            # the Solver's freezing ends with the fit: later gradients (gradient checks) are whole again
            self._stem_frozen = False

    def _learn_input_stats(self, X):
        super()._learn_input_stats(X)
        k = parse_stem(self.stem)
        if k is not None:
            # The stem's filters from the first STEM_SAMPLE standardised training images (deterministic, so
            # a resumed run recomputes the same filters).
            images = (X[:STEM_SAMPLE].astype(np.float64) - self.input_mean_) * self.input_scale_
            self.stem_w_ = self._stem_filters(images, k).astype(self.stem_w_.dtype)
        if self.patch_whiten:
            # The first layer's filters from the standardised training images' patches.
            rng = np.random.default_rng(0)
            pick = X if len(X) <= WHITEN_SAMPLE else X[np.sort(rng.choice(len(X), WHITEN_SAMPLE, replace=False))]
            images = (pick.astype(np.float64) - self.input_mean_) * self.input_scale_
            W1 = self.params_["W1"]
            W1[...] = self._whitening_filters(images, W1.reshape(-1, W1.shape[3])).reshape(W1.shape)

    def _fit_images(self, X, name, min_samples):
        """Training images fix input_shape_ before the validation rows are folded by it."""
        X = self._images(X, name, min_samples)
        if name == "X":
            self.input_shape_ = tuple(int(v) for v in X.shape[1:])
        return X

    def weight_images(self, input_shape=None) -> tuple[np.ndarray, list]:
        """First-layer filters (the stem's, if any) as small images (F, KH, KW, C), each rescaled to 0..255,
        labelled by index."""
        self._check_fitted()
        first = self.stem_w_ if getattr(self, "stem_w_", None) is not None else self.params_["W1"]
        W = np.moveaxis(first.astype(np.float64), 3, 0)
        if input_shape is not None and int(input_shape[-1]) != W.shape[3]:
            raise UsageError(f"the first layer's filters have {W.shape[3]} channels, the images {input_shape[-1]}")
        return rescale_u8(W).reshape(W.shape), [str(i) for i in range(len(W))]

    # -- model files -----------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        params, arrays = super().to_arrays()
        # The file records the image shape as the hyperparameter, so loading rebuilds the same layers.
        params["input_shape"] = list(self.input_shape_)
        params["filters"] = [f"{f}x{k}" if k > 1 else f for f, k in parse_filters(self.filters)]
        if getattr(self, "stem_w_", None) is not None:
            arrays["stem_w"] = np.asarray(self.stem_w_)
        return params, arrays

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]):
        params = dict(params)
        if isinstance(params.get("filters"), list):
            params["filters"] = tuple(params["filters"])
        if isinstance(params.get("input_shape"), list):
            params["input_shape"] = tuple(params["input_shape"])
        model = super().from_arrays(params, arrays)
        if model.input_mean_ is None:
            raise UsageError("convnet model file: input_mean is missing or of the wrong shape")
        if parse_stem(model.stem) is not None:
            ref, arr = model.stem_w_, arrays.get("stem_w")
            if arr is None or arr.shape != ref.shape:
                got = "missing" if arr is None else f"shape {arr.shape}"
                raise ModelFileError(f"convnet model file: stem_w is {got}, expected shape {ref.shape}")
            if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
                raise ModelFileError("convnet model file: stem_w must hold finite floating-point values")
            model.stem_w_ = np.ascontiguousarray(arr, dtype=ref.dtype)
        elif "stem_w" in arrays:
            raise ModelFileError("convnet model file: stem_w is given but the model has no stem")
        if not model.bn_scale:
            for name, gamma in model.params_.items():
                if name.startswith("gamma") and np.any(gamma != 1):
                    raise ModelFileError(f"convnet model file: {name} must be all 1 with bn_scale=False")
        return model


def global_max_forward(x):
    """(N, H, W, C) -> (N, C): the maximum over the positions (the first on ties); cache for the backward."""
    N, H, W, C = x.shape
    flat = x.reshape(N, H * W, C)
    arg = flat.argmax(axis=1)
    return np.take_along_axis(flat, arg[:, None, :], axis=1)[:, 0, :], (x.shape, arg)


def global_max_backward(dout, cache):
    """The gradient of `global_max_forward`: dout at each channel's winning position, 0 elsewhere."""
    shape, arg = cache
    N, H, W, C = shape
    dx = np.zeros((N, H * W, C), dout.dtype)
    np.put_along_axis(dx, arg[:, None, :], np.asarray(dout).reshape(N, 1, C), axis=1)
    return dx.reshape(shape)
