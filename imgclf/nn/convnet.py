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

Parameter names: W{i}, b{i} for every layer in order (convolution filters are (KH, KW, C, F)),
gamma{i}, beta{i} and buffers running_mean{i}, running_var{i} for batch norm after layer i.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
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
POOL_POSITIONS = ("last", "first")


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
        "relu", "leaky_relu[:SLOPE]", "tanh", "sigmoid" or "elu[:ALPHA]".
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
    label_smoothing, ema, lookahead, bias_lr_scale
        As in NeuralNet, with the same defaults.
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
                 bias_lr_scale=1.0):
        self.filters = filters
        self.filter_size = filter_size
        self.pool = pool
        self.pool_position = pool_position
        self.input_shape = input_shape
        self.tta = tta
        self.bn_momentum = bn_momentum
        self.patch_whiten = patch_whiten
        super().__init__(hidden=hidden, activation=activation, batchnorm=batchnorm, dropout=dropout, init=init,
                         loss=loss, reg=reg, optim=optim, lr=lr, optim_options=optim_options,
                         lr_schedule=lr_schedule, epochs=epochs, batch_size=batch_size, augment=augment,
                         patience=patience, train_acc_sample=train_acc_sample, dtype=dtype,
                         class_weight=class_weight, random_state=random_state, label_smoothing=label_smoothing,
                         ema=ema, lookahead=lookahead, bias_lr_scale=bias_lr_scale)

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
        fs, pad = int(self.filter_size), (int(self.filter_size) - 1) // 2
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
                    H, W = pool_geometry((1, H, W, f), int(self.pool), int(self.pool))
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
        C, i = self.input_shape_[2], 0
        for i, (f, _) in enumerate(self._conv_layers(), 1):
            self.params_[f"W{i}"] = init.weight(self.init, fs * fs * C, f, rng, dt).reshape(fs, fs, C, f)
            self._add_bias_or_batchnorm(i, f, dt)
            C = f
        H, W, C = self._geometry(self.input_shape_)[-1]
        sizes = (H * W * C,) + self.hidden_sizes() + (n_classes,)
        for j in range(1, len(sizes) - 1):
            dense.add_params(self.params_, self.buffers_, i + j, sizes[j - 1], sizes[j], self.init, self.batchnorm,
                             rng, dt)
        self._add_output(i + len(sizes) - 1, sizes[-2], n_classes, rng, dt)
        self.n_features_in_ = int(np.prod(self.input_shape_))
        if getattr(self, "input_mean_", None) is None or len(self.input_mean_) != self._stats_size():
            self.input_mean_, self.input_scale_ = None, None
        self.classes_ = getattr(self, "classes_", np.arange(n_classes))
        return self

    def _stats_size(self) -> int:
        return int(self.input_shape_[2])

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
        pad = (int(self.filter_size) - 1) // 2
        h, caches = X, []
        convs = self._conv_layers()
        for i, (_, pooled) in enumerate(convs, 1):
            W, ws = P[f"W{i}"], self._workspace(i)
            c_act, c_pool = None, None
            if self.batchnorm:
                h, c_conv = conv.conv_forward(h, W, None, 1, pad, 1, ws)
                if act == "relu" and pooled and conv.fuses_bn_relu_pool(h.shape, int(self.pool)):
                    # bn, relu and 2x2 pool as one layer: the full-size normalised map is never written
                    h, c_bn = self._bn(i, h, mode, conv.bn_relu_pool_forward, P, B)
                    caches.append((c_conv, c_bn, None, FUSED_POOL))
                    continue
                # conv - bn - relu, the bn and the relu fused; other activations follow separately
                h, c_bn = self._bn(i, h, mode, conv.spatial_batchnorm_forward, P, B, relu=act == "relu")
                if act != "relu":
                    h, c_act = layers.activation_forward(h, act, alpha)
            else:
                h, c_conv = conv.conv_act_forward(h, W, P[f"b{i}"], act, alpha, 1, pad, 1, ws)
                c_bn = None
            if pooled:
                h, c_pool = conv.max_pool_forward(h, int(self.pool))
            caches.append((c_conv, c_bn, c_act, c_pool))
        # h stays (N, H, W, C): the affine layers flatten it and hand back gradients in this shape.
        L = self.n_layers
        for i in range(len(convs) + 1, L):
            h, c = dense.forward(h, i, P, B, act, alpha, float(self.dropout), mode, rng)
            caches.append(c)
        scores, c = layers.affine_forward(h, P[f"W{L}"], P[f"b{L}"])
        caches.append(c)
        return scores, caches

    def loss_and_grads(self, X, y, mode="train", rng=None, l2=True):
        """(mean data loss + reg * sum W^2, grads keyed like params_) on a prepared batch; with
        l2=False the data term alone (the Solver then folds the penalty into the update)."""
        scores, caches = self._forward(X, mode, rng)
        data_loss, dh = self._data_loss(scores, y)
        L, n_conv = self.n_layers, len(self._conv_layers())
        dh, g = layers.affine_backward(dh, caches[-1])
        grads = {f"W{L}": g["w"], f"b{L}": g["b"]}
        for i in range(L - 1, n_conv, -1):
            dh, g = dense.backward(dh, caches[i - 1])
            grads.update(g)
        for i in range(n_conv, 0, -1):
            c_conv, c_bn, c_act, c_pool = caches[i - 1]
            if c_pool is FUSED_POOL:
                dh, g = conv.bn_relu_pool_backward(dh, c_bn)
                grads[f"gamma{i}"], grads[f"beta{i}"] = g["gamma"], g["beta"]
                dh, g = conv.conv_backward(dh, c_conv, need_dx=i > 1)
                grads[f"W{i}"] = g["w"]
                continue
            if c_pool is not None:
                dh, _ = conv.max_pool_backward(dh, c_pool)
            if c_bn is None:
                dh, g = conv.conv_act_backward(dh, c_conv, need_dx=i > 1)
                grads[f"b{i}"] = g["b"]
            else:
                if c_act is not None:
                    dh, _ = layers.activation_backward(dh, c_act)
                dh, g = conv.spatial_batchnorm_backward(dh, c_bn)
                grads[f"gamma{i}"], grads[f"beta{i}"] = g["gamma"], g["beta"]
                dh, g = conv.conv_backward(dh, c_conv, need_dx=i > 1)
            grads[f"W{i}"] = g["w"]
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
        self.input_shape_ = None
        X, y_enc, Xv, yv = self._fit_data(X, y, X_val, y_val, self._fit_images)
        self._geometry(self.input_shape_)
        return self._fit_prepared(X, y_enc, Xv, yv, callback=callback, checkpoint_dir=checkpoint_dir,
                                  keep_checkpoints=keep_checkpoints, resume=resume, log=log,
                                  stop_signal=stop_signal, checkpoint_extra=checkpoint_extra, solver_cls=Solver)

    def _learn_input_stats(self, X):
        super()._learn_input_stats(X)
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
        """First-layer filters as small images (F, KH, KW, C), each rescaled to 0..255, labelled by index."""
        self._check_fitted()
        W = np.moveaxis(self.params_["W1"].astype(np.float64), 3, 0)
        if input_shape is not None and int(input_shape[-1]) != W.shape[3]:
            raise UsageError(f"the first layer's filters have {W.shape[3]} channels, the images {input_shape[-1]}")
        return rescale_u8(W).reshape(W.shape), [str(i) for i in range(len(W))]

    # -- model files -----------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        params, arrays = super().to_arrays()
        # The file records the image shape as the hyperparameter, so loading rebuilds the same layers.
        params["input_shape"] = list(self.input_shape_)
        params["filters"] = [f"{f}x{k}" if k > 1 else f for f, k in parse_filters(self.filters)]
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
        return model
