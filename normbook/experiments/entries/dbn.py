"""Entries of the DBN part's measurement chapters (``book/dbn/``): stochastic axis swapping
(``from-bn-to-whitening``, DBN-F1), the cost of each step of the eigendecomposition backward
(``eigendecomposition-backward``, DBN-EQ5) and the layer's cost against BatchNorm
(``what-whitening-costs``, DBN-TB)."""

from __future__ import annotations

import normbook.experiments.tasks_dbn  # noqa: F401  (registers the tasks)
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, Reported, ScaleSpec, deep_merge
from normbook.experiments.tasks_dbn import APPENDIX_B, AXIS_SWAP, BACKWARD_STEPS, LAYER_COST

# -- DBN-F1: stochastic axis swapping ---------------------------------------------------------------
_AXIS_SWAP = {
    "task": AXIS_SWAP,
    "model": {"name": "mlp", "in_features": 64, "hidden": [64, 64], "norm": "bn", "act": "relu"},
    "data": {"name": "digits", "variant": "flat"},
    "train": {
        "epochs": 5,
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "augment": False,
    },
    "layer": 1,
    "group_size": 16,
    "batch_size": 128,
    "pairs": 100,
    "eps": 1e-5,
}

register(
    Experiment(
        id="dbn.f1.axis-swap",
        artifact="DBN-F1",
        title="Stochastic axis swapping: PCA vs ZCA whitening between consecutive mini-batches",
        description=(
            "A digits MLP with BatchNorm (two hidden layers of 64) is trained for a few epochs;"
            " the pre-normalization activations of the first 16 units of its first hidden layer"
            " (one DBN group) are split into consecutive shuffled mini-batches of each size. Per"
            " pair of consecutive batches: the share of PCA axes reassigned to another eigenvalue"
            " rank, sign flips, and the RMS change of the whitened coordinates of the whole"
            " training set under PCA, under PCA with the reassignment undone, and under ZCA"
            " (whitened standard deviations). The weights are fixed: only the batch changes"
            " (the paper's second source of axis swapping). `full`: the 4×100 MNIST MLP of"
            " DBN Fig. 2, all 100 units of its first layer."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(
                    _AXIS_SWAP,
                    {
                        "model": {"hidden": [32]},
                        "train": {"epochs": 2},
                        "group_size": 8,
                        "pairs": 20,
                    },
                ),
                grid={"batch_size": (32, 128)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_AXIS_SWAP, grid={"batch_size": (32, 64, 128, 256, 512)}, seeds=3
            ),
            "full": ScaleSpec(
                config=deep_merge(
                    _AXIS_SWAP,
                    {
                        "model": {"in_features": 784, "hidden": [100, 100, 100, 100]},
                        "data": {"name": "mnist", "variant": "flat"},
                        "train": {"batch_size": 128},
                        "group_size": None,
                        "pairs": 200,
                    },
                ),
                grid={"batch_size": (128, 256, 512, 1024, 2048, 4096)},
                seeds=5,
            ),
        },
    )
)

# -- DBN-EQ5: cost of each step of the forward and of the simplified backward ------------------------
_BACKWARD_STEPS = {
    "task": BACKWARD_STEPS,
    "batch_size": 1024,
    "num_features": 256,
    "group_size": 16,
    "method": "zca",
    "repeats": 10,
    "warmup": 2,
    "threads": 1,
}

register(
    Experiment(
        id="dbn.eq5.backward-steps",
        artifact="DBN-EQ5",
        title="Where the time of group whitening goes: forward and backward steps on the CPU",
        description=(
            "Median CPU time of each step of DBN's forward (Algorithm 1: centring, covariance,"
            " eigendecomposition, whitening matrix, whitening) and simplified backward"
            " (Algorithm 2 / Eq. A.14: F_c, S − M, input gradient) for an m×d batch (m = 1024,"
            " d = 256) and each group size, beside the whole DecorrelatedBatchNorm and BatchNorm1d"
            " forward+backward, timed in turn on one thread. Times depend on the machine (the"
            " record names it); shares and ratios are what the chapter compares. `full` uses a"
            " larger batch and every CPU thread."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(
                    _BACKWARD_STEPS,
                    {"batch_size": 128, "num_features": 32, "repeats": 2, "warmup": 1},
                ),
                grid={"group_size": (4, 32)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_BACKWARD_STEPS, grid={"group_size": (4, 16, 64, 256)}, seeds=3
            ),
            "full": ScaleSpec(
                config=deep_merge(
                    _BACKWARD_STEPS,
                    {
                        "batch_size": 4096,
                        "num_features": 512,
                        "repeats": 30,
                        "warmup": 5,
                        "threads": None,
                    },
                ),
                grid={"group_size": (4, 8, 16, 32, 64, 128, 256, 512)},
                seeds=3,
            ),
        },
    )
)

# -- DBN-TB: the layer against BatchNorm, by method and group size ------------------------------------
TABLE_B1_SOURCE = "DBN Table B.1 (VGG-A, CIFAR-10, training time per epoch; GPU, Torch7)"
# The paper's Table B.1 training times (s/epoch): BatchNorm, then DBN by group size.
TABLE_B1_BN_SECONDS = 163.68
TABLE_B1_DBN_SECONDS = {8: 707.47, 16: 466.92, 64: 297.25, 256: 440.88, 512: 1004.0}
GROUP_SIZES = (1, 8, 16, 64, 256, 512)
METHODS = ("zca", "pca", "newton")

_LAYER_COST = {
    "task": LAYER_COST,
    "shape": [16, 512, 8, 8],
    "method": "zca",
    "group_size": 16,
    "repeats": 10,
    "warmup": 2,
    "threads": 1,
}

register(
    Experiment(
        id="dbn.tb.layer-cost",
        artifact="DBN-TB",
        title="DecorrelatedBatchNorm time over BatchNorm by whitening method and group size",
        description=(
            "Median forward+backward time of DecorrelatedBatchNorm (ZCA and PCA with the analytic"
            " backward, Newton–Schulz (IterNorm, 5 iterations) by autograd) over BatchNorm2d's on"
            " the same 16×512×8×8 input, the two timed alternately on one CPU thread, for each"
            " group size up to whitening all 512 channels. Seeds repeat the timing on a fresh"
            " input. The paper's Table B.1 gives training times per epoch of a whole VGG-A on a"
            " GPU for the same group sizes; the chapter compares their ratios to BN, not the"
            " times. Times depend on the machine (the record names it). `full`: VGG-A's 512-channel"
            " layers at the paper's batch 256, on a GPU."
        ),
        paper=(
            Reported(
                metric="bn_train_epoch_s",
                value=TABLE_B1_BN_SECONDS,
                unit="s/epoch",
                meaning="BatchNorm VGG-A, training time per epoch",
                source=TABLE_B1_SOURCE,
            ),
            *(
                Reported(
                    metric="dbn_train_epoch_s",
                    value=seconds,
                    unit="s/epoch",
                    meaning=f"DBN-G{group} VGG-A, training time per epoch",
                    source=TABLE_B1_SOURCE,
                    point={"method": "zca", "group_size": group},
                )
                for group, seconds in TABLE_B1_DBN_SECONDS.items()
            ),
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_LAYER_COST, {"shape": [8, 64, 4, 4], "repeats": 2, "warmup": 1}),
                grid={"method": ("zca", "newton"), "group_size": (1, 16)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_LAYER_COST, grid={"method": METHODS, "group_size": GROUP_SIZES}, seeds=3
            ),
            "full": ScaleSpec(
                config=deep_merge(
                    _LAYER_COST,
                    {"shape": [256, 512, 4, 4], "repeats": 50, "warmup": 10, "threads": None},
                ),
                grid={"method": METHODS, "group_size": GROUP_SIZES},
                seeds=3,
            ),
        },
    )
)

# -- DBN-TB: the paper's Appendix B case ------------------------------------------------------------
APPENDIX_B_SOURCE = "DBN Appendix B (forward+backward, mean of 10 runs; GPU, Torch7, cuDNN)"
_APPENDIX_B = {
    "task": APPENDIX_B,
    "shape": [64, 64, 32, 32],
    "repeats": 5,
    "warmup": 1,
    "threads": 1,
}

register(
    Experiment(
        id="dbn.tb.appendix-b",
        artifact="DBN-TB",
        title="Full whitening of 64 channels of 32×32 maps at batch 64, and a 3×3 convolution",
        description=(
            "The case of the paper's Appendix B: DecorrelatedBatchNorm whitening all 64 channels"
            " (ZCA, analytic backward) of a 64×64×32×32 input, and a 64→64 3×3 convolution on the"
            " same input, forward+backward, each timed alternately with BatchNorm2d. The paper"
            " reports 71 ms and 32 ms on its GPU; ours are on the machine the record names, so"
            " the chapter compares ratios (to BN, and DBN over the convolution)."
        ),
        paper=(
            Reported(
                metric="dbn_ms",
                value=71.0,
                unit="ms",
                meaning="full whitening, forward+backward",
                source=APPENDIX_B_SOURCE,
            ),
            Reported(
                metric="conv_ms",
                value=32.0,
                unit="ms",
                meaning="cuDNN 3×3 convolution, forward+backward",
                source=APPENDIX_B_SOURCE,
            ),
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_APPENDIX_B, {"shape": [8, 16, 8, 8], "repeats": 2}), seeds=1
            ),
            "small": ScaleSpec(config=_APPENDIX_B, seeds=3),
            "full": ScaleSpec(
                config=deep_merge(_APPENDIX_B, {"repeats": 10, "warmup": 3, "threads": None}),
                seeds=3,
            ),
        },
    )
)
