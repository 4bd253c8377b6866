"""Audiobox Aesthetics scores of tracks: four quality axes per track from the audio.

Meta's Audiobox Aesthetics model (``audiobox-aesthetics`` on PyPI: a WavLM encoder with one
projection head per axis) predicts, on a 1-10 scale,

- ``CE`` content enjoyment, ``CU`` content usefulness,
- ``PC`` production complexity, ``PQ`` production quality.

This module runs the package's model class (:class:`audiobox_aesthetics.model.aes.AesMultiOutput`)
the way its own predictor does (mono 16 kHz, 10 s windows, a shorter track zero-padded with a mask;
scores on the checkpoint's 1-10 scale through its per-axis target normalisation), with three
differences that matter in a Spark job: the checkpoint is read without executing code (a ``.safetensors`` file or folder
with ``config.json``, the Hugging Face release layout, or a torch checkpoint read with
``weights_only=True``), nothing is ever downloaded, and a track is scored on at most
``max_windows`` evenly spaced full windows (the ones :func:`~recsys_spark.embeddings.audio.window_starts`
picks for CLAP) rather than on back-to-back windows with a padded last one.

Without a checkpoint the same architecture is built with random weights (seeded) and the scores
mean nothing: that is logged as loudly as untrained CLAP, the model version says ``untrained``, and
the quality filter does not use them unless asked to (``quality.aesthetics_weight`` is 0 by default).

Public API::

    AestheticsSpec(checkpoint_path="", model_version="", max_windows=6, device="auto", ...)
    load_aesthetics_checkpoint(path) -> (state_dict, model_kwargs)
    AestheticsScorer(spec).score_waveforms(waves_16k, batch_size=8) -> ((n, 4) float32, n_windows)
    get_scorer(spec)  # the process-wide scorer (Spark python workers build it once)
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..common import resolve_device
from .audio import window_starts
from .clap import CheckpointError, model_version_of, resolve_precision, spec_from_conf

log = logging.getLogger(__name__)

# the package's WavLM passes a bool padding mask beside a float attention bias, and builds its
# positional convolution with the old weight_norm: torch warns on every worker, nothing is wrong
warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask", category=UserWarning)
warnings.filterwarnings("ignore", message=r"`torch.nn.utils.weight_norm` is deprecated", category=FutureWarning)

#: the model's four axes, in its own order (columns of :meth:`AestheticsScorer.score_waveforms`)
AXES: Tuple[str, ...] = ("CE", "CU", "PC", "PQ")
AXIS_NAMES = {"CE": "content enjoyment", "CU": "content usefulness",
              "PC": "production complexity", "PQ": "production quality"}
#: the model's input: 10 s windows of mono 16 kHz audio (fixed by the released checkpoint)
SAMPLE_RATE = 16000
WINDOW_SECONDS = 10
#: the constructor arguments a checkpoint's config may set (the package's own list, plus the
#: per-axis target normalisation)
_MODEL_KEYS = ("proj_num_layer", "proj_ln", "proj_act_fn", "proj_dropout", "nth_layer", "use_weighted_layer_sum",
               "precision", "normalize_embed", "output_dim", "target_transform")


@dataclass(frozen=True)
class AestheticsSpec:
    """Picklable description of the aesthetics model (what executors receive; never the model).

    Parameters
    ----------
    checkpoint_path : str
        The released model: a folder holding ``model.safetensors`` and ``config.json`` (the
        Hugging Face layout), a ``.safetensors`` file with ``config.json`` beside it, or the
        ``checkpoint.pt`` torch checkpoint (``state_dict``, ``model_cfg``, ``target_transform``;
        read with ``weights_only=True``). Empty or missing -> untrained weights, logged loudly.
    model_version : str
        Explicit version string; empty -> :meth:`resolved_model_version`.
    max_windows : int
        10 s windows scored per track at most (evenly spaced over longer tracks).
    device : {"auto", "cpu", "cuda"}
    seed : int
        Seed of the random weights of an untrained model.
    precision : {"auto", "fp32", "bf16"}
        ``bf16`` runs the model under ``torch.autocast`` (bfloat16); ``auto`` only where bfloat16
        is native (see :func:`~recsys_spark.embeddings.clap.native_bf16`).
    threads_per_task : int
        torch threads in each Spark task (as ``embeddings.threads_per_task``).
    """

    checkpoint_path: str = ""
    model_version: str = ""
    max_windows: int = 6
    device: str = "auto"
    seed: int = 0
    precision: str = "auto"
    threads_per_task: int = 0

    @classmethod
    def from_conf(cls, conf) -> "AestheticsSpec":
        """Build from an ``AestheticsConf``-like object (any object with these attribute names)."""
        return spec_from_conf(cls, conf)

    @property
    def has_checkpoint(self) -> bool:
        return bool(self.checkpoint_path) and os.path.exists(self.checkpoint_path)

    def resolved_model_version(self) -> str:
        """``model_version`` if set (``-untrained-seed<n>`` appended when there is no checkpoint);
        else ``audiobox-aes-<checkpoint stem>`` or ``audiobox-aes-untrained-seed<seed>``."""
        return model_version_of("audiobox-aes", self.model_version, self.checkpoint_path, self.has_checkpoint,
                                self.seed)


def _aes_class():
    try:
        from audiobox_aesthetics.model.aes import AesMultiOutput
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ImportError("aesthetics scoring needs the audiobox-aesthetics package "
                          "(pip install 'audiobox-aesthetics>=0.0.4,<0.1')") from exc
    return AesMultiOutput


def _safetensors_files(path: str) -> Tuple[str, str]:
    """(weights, config.json) of a safetensors release (a folder, or a file with its config beside it)."""
    if os.path.isdir(path):
        weights, config = os.path.join(path, "model.safetensors"), os.path.join(path, "config.json")
    else:
        weights, config = path, os.path.join(os.path.dirname(path), "config.json")
    for f in (weights, config):
        if not os.path.isfile(f):
            raise CheckpointError(f"aesthetics checkpoint {path}: {f} is missing")
    return weights, config


def load_aesthetics_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """Read a released Audiobox Aesthetics model without executing code.

    Returns
    -------
    (dict, dict)
        The state dict (keys as :class:`AesMultiOutput` names them) and its constructor arguments
        (only the keys the package's own loader reads, including ``target_transform``).

    Raises
    ------
    CheckpointError
        The file is missing, is not a weights-only checkpoint, or lacks the model's configuration.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"aesthetics checkpoint {path} does not exist")
    if os.path.isdir(path) or path.endswith(".safetensors"):
        from safetensors.torch import load_file

        weights, config = _safetensors_files(path)
        state = load_file(weights, device="cpu")
        with open(config) as fh:
            cfg = json.load(fh)
    else:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a pickle of objects other than tensors and containers
            raise CheckpointError(f"aesthetics checkpoint {path} cannot be read with weights_only=True ({exc}); "
                                  "use the safetensors release (model.safetensors + config.json)") from exc
        if not isinstance(ckpt, dict) or not {"state_dict", "model_cfg", "target_transform"} <= set(ckpt):
            raise CheckpointError(f"aesthetics checkpoint {path} lacks state_dict / model_cfg / target_transform")
        state = {re.sub(r"^model\.", "", k): v for k, v in ckpt["state_dict"].items()}
        cfg = dict(ckpt["model_cfg"], target_transform=ckpt["target_transform"])
    if not isinstance(cfg.get("target_transform"), dict) or set(AXES) - set(cfg["target_transform"]):
        raise CheckpointError(f"aesthetics checkpoint {path}: config has no target_transform for axes {AXES}")
    return state, {k: cfg[k] for k in _MODEL_KEYS if k in cfg}


class AestheticsScorer:
    """The Audiobox Aesthetics model ready for inference (mono 16 kHz waveforms -> 4 axes).

    Attributes
    ----------
    model_version : str
    trained : bool
        False when built with random weights (no checkpoint).
    device : torch.device
    precision : str
        ``fp32`` or ``bf16``.
    """

    def __init__(self, spec: AestheticsSpec):
        self.spec = spec
        self.model_version = spec.resolved_model_version()
        self.device = resolve_device(spec.device)
        self.trained = spec.has_checkpoint
        t0 = time.perf_counter()
        aes = _aes_class()
        if spec.checkpoint_path and not self.trained:
            log.warning("aesthetics checkpoint %s does not exist", spec.checkpoint_path)
        torch.manual_seed(spec.seed)  # untrained weights are a function of the seed
        if self.trained:
            state, kwargs = load_aesthetics_checkpoint(spec.checkpoint_path)
            kwargs["precision"] = "32"  # the arithmetic is ours to choose (spec.precision)
            model = aes(**kwargs)
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise CheckpointError(f"aesthetics checkpoint {spec.checkpoint_path} does not fit the model: "
                                      f"{len(missing)} missing keys (e.g. {missing[:3]}), "
                                      f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        else:
            log.warning(
                "!!! AESTHETICS SCORES ARE UNTRAINED !!! no Audiobox Aesthetics checkpoint "
                "(aesthetics.checkpoint_path=%r): built the model with random weights (seed %d), "
                "model_version=%s. Its CE/CU/PC/PQ scores mean nothing; keep quality.aesthetics_weight at 0 "
                "and set aesthetics.checkpoint_path to the released model for real scores.",
                spec.checkpoint_path, spec.seed, self.model_version)
            model = aes(precision="32", target_transform={a: {"mean": 0.0, "std": 1.0} for a in AXES})
        self.precision = resolve_precision(spec.precision, self.device)
        # the model autocasts itself (an inner autocast(enabled=False) would undo an outer one), but its
        # constructor tests the dtype it has just converted against strings and never enables it
        model.precision = torch.bfloat16 if self.precision == "bf16" else torch.float32
        model.enable_autocast = self.precision == "bf16"
        self.model = model.to(self.device).eval()
        self._mean = torch.tensor([float(model.target_transform[a]["mean"]) for a in AXES])
        self._std = torch.tensor([float(model.target_transform[a]["std"]) for a in AXES])
        log.info("aesthetics model %s ready on %s in %.1fs (%s)", self.model_version, self.device,
                 time.perf_counter() - t0, self.precision)

    @property
    def window_samples(self) -> int:
        return WINDOW_SECONDS * SAMPLE_RATE

    def windows(self, wave: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(k, 160000)`` zero-padded float32 windows of one 16 kHz waveform and each window's
        number of audio samples (k <= ``max_windows``)."""
        w = self.window_samples
        starts = window_starts(len(wave), w, self.spec.max_windows)
        out = np.zeros((len(starts), w), dtype=np.float32)
        lengths = np.zeros(len(starts), dtype=np.int64)
        for i, s in enumerate(starts):
            seg = wave[s:s + w]
            out[i, :len(seg)] = seg
            lengths[i] = len(seg)
        return out, lengths

    @torch.inference_mode()
    def score_windows(self, windows: np.ndarray, lengths: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """``(n, 4)`` float32 scores (axes :data:`AXES`, on the checkpoint's scale) of ``(n, 160000)``
        windows, each holding ``lengths[i]`` samples of audio followed by zeros (masked out)."""
        out = []
        pos = torch.arange(windows.shape[1])
        for i in range(0, len(windows), max(1, batch_size)):
            wav = torch.from_numpy(np.ascontiguousarray(windows[i:i + batch_size]))
            mask = pos[None, :] < torch.from_numpy(lengths[i:i + batch_size])[:, None]
            preds = self.model({"wav": wav[:, None, :].to(self.device), "mask": mask[:, None, :].to(self.device)})
            out.append(torch.stack([preds[a].float().cpu() for a in AXES], dim=1))
        scores = torch.cat(out) * self._std + self._mean
        return scores.numpy().astype(np.float32)

    def score_waveforms(self, waves: Sequence[np.ndarray], batch_size: int = 8) -> Tuple[np.ndarray, List[int]]:
        """``(len(waves), 4)`` scores of mono 16 kHz waveforms and the windows each was scored on.

        All windows of all waveforms go through the model together, ``batch_size`` at a time; a
        track's score is the mean of its windows' scores. (The package's predictor weights each
        window by its share of audio because it zero-pads the last of back-to-back windows; here
        every window of a track longer than 10 s is full, and a shorter track has one window.)
        """
        wins, lens, owner = [], [], []
        for j, wave in enumerate(waves):
            w, n = self.windows(np.asarray(wave, dtype=np.float32))
            wins.append(w)
            lens.append(n)
            owner.extend([j] * len(w))
        if not wins:
            return np.zeros((0, len(AXES)), dtype=np.float32), []
        per_window = self.score_windows(np.concatenate(wins), np.concatenate(lens), batch_size)
        owner_arr = np.asarray(owner)
        counts = np.bincount(owner_arr, minlength=len(waves))
        out = np.zeros((len(waves), len(AXES)), dtype=np.float64)
        np.add.at(out, owner_arr, per_window)
        return (out / counts[:, None]).astype(np.float32), [int(c) for c in counts]


_CACHE: Dict[AestheticsSpec, AestheticsScorer] = {}
_CACHE_LOCK = threading.Lock()


def get_scorer(spec: AestheticsSpec) -> AestheticsScorer:
    """The process-wide :class:`AestheticsScorer` for ``spec`` (built on first use, then reused;
    rebuilt when a reused worker's task runs on another GPU)."""
    with _CACHE_LOCK:
        sc = _CACHE.get(spec)
        if sc is not None and sc.device != resolve_device(spec.device):
            sc = None
        if sc is None:
            sc = AestheticsScorer(spec)
            _CACHE[spec] = sc
        return sc


__all__ = ["AXES", "AXIS_NAMES", "SAMPLE_RATE", "WINDOW_SECONDS", "AestheticsSpec", "AestheticsScorer", "get_scorer",
           "load_aesthetics_checkpoint"]
