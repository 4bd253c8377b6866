"""CLAP audio and text encoders on laion-clap (pure torch: this module imports no Spark).

:class:`EncoderSpec` is the small, picklable description of an encoder (architecture names,
checkpoint path, windowing, device) that travels to Spark executors; :func:`get_encoder` turns it
into a :class:`ClapEncoder` once per Python process and caches it.

Two ways to get the weights
---------------------------
* **Pretrained** (production): ``checkpoint_path`` names a laion-clap checkpoint (e.g. the music
  checkpoint ``music_audioset_epoch_15_esc_90.14.pt`` with ``HTSAT-base`` + ``roberta``). It is read
  with ``torch.load(..., weights_only=True)`` (a state dict needs no pickle); only when that fails
  and ``trust_checkpoint`` is set is a full pickle load allowed. Key handling follows laion-clap's
  ``clap_module.factory.load_state_dict`` (``state_dict`` sub-dict, ``module.`` prefix, the
  ``position_ids`` buffer that recent transformers no longer keep).
* **Untrained** (no checkpoint can be had): the same laion-clap architecture is built with seeded
  random weights, a ``logging.warning`` says loudly that content embeddings are untrained, and the
  model version says so (``clap-HTSAT-base-roberta-untrained-seed0``).

No download, ever
-----------------
``laion_clap.CLAP_Module`` fetches ``roberta-base`` from Hugging Face, and importing the
``laion_clap`` package itself runs ``training/data.py`` which calls ``*Tokenizer.from_pretrained``
at import time. This module therefore imports laion-clap's ``clap_module`` package directly (as
laion-clap does internally) and builds the roberta text branch from a local ``RobertaConfig`` with
the roberta-base shapes (the checkpoint then fills in its weights). Tokenisation:

* ``text_model="roberta"``: the roberta-base BPE tokenizer read from ``tokenizer_path`` (a local
  folder with ``vocab.json`` and ``merges.txt``, shipped next to the checkpoint). Without it and
  without a checkpoint (untrained), laion-clap's bundled CLIP BPE vocabulary (no download) supplies
  deterministic token ids in roberta's format. A *pretrained* roberta model without its tokenizer
  files would give meaningless text embeddings, so that combination raises.
* ``text_model="transformer"``: laion-clap's own CLIP-style text transformer with its bundled
  tokenizer (fully offline).

Audio windows
-------------
A track is decoded to mono 48 kHz (:mod:`recsys_spark.embeddings.audio`), cut into up to
``max_windows`` evenly spaced windows of ``window_seconds`` (short audio is repeat-padded, as
laion-clap does), each window is embedded, and the window embeddings are averaged and
L2-normalised: the whole track is represented, not one random crop.

CPU cost
--------
Measured on the untrained HTSAT-tiny (``benchmarks/results/clap_cpu.json``): about half of a
window's time is the Swin transformer's linear layers, a tenth the DFT-as-convolution front end,
a tenth tensor copies. The shipped path cuts it three ways: ``torch.stft`` for the spectrogram
(``stft: fft``), bfloat16 autocast where the hardware has it (``audio_precision: auto``), and one
torch thread per task CPU (``threads_per_task: 0``). Dynamic int8 quantisation of the linear layers
was as fast as bf16 but moved the vectors to cosine .989 of fp32, below the .999 bar: not offered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..common import native_bf16, resolve_device, resolve_precision  # noqa: F401 (re-exported)
from .audio import window_starts, windows_of

log = logging.getLogger(__name__)

EMBED_DIM = 512

#: roberta-base shapes (what the laion-clap checkpoints were trained with).
ROBERTA_BASE = dict(
    vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
    pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu",
)
_ROBERTA_BOS, _ROBERTA_PAD, _ROBERTA_EOS = 0, 1, 2
CONTEXT_LENGTH = 77


class CheckpointError(RuntimeError):
    """The checkpoint named in the configuration cannot be used."""


@dataclass(frozen=True)
class EncoderSpec:
    """Picklable description of a CLAP encoder (what executors receive; never the model itself).

    Parameters
    ----------
    audio_model : str
        laion-clap audio architecture (``HTSAT-base``, ``HTSAT-tiny``, ``HTSAT-large``).
    text_model : str
        ``roberta`` (the released checkpoints) or ``transformer`` (laion-clap's own, offline).
    checkpoint_path : str
        laion-clap checkpoint; empty or missing -> untrained weights (logged loudly).
    tokenizer_path : str
        Folder with roberta-base ``vocab.json`` / ``merges.txt`` (``text_model="roberta"``).
    trust_checkpoint : bool
        Allow a full pickle ``torch.load`` when the weights-only load fails.
    enable_fusion : bool
        laion-clap feature-fusion variant (must match the checkpoint).
    model_version : str
        Explicit version string; empty -> :meth:`resolved_model_version`.
    window_seconds, max_windows, sample_rate
        Audio windowing (see module docstring).
    device : {"auto", "cpu", "cuda"}
    seed : int
        Seed of the random weights of an untrained model.
    audio_precision : {"auto", "fp32", "bf16"}
        Arithmetic of the audio tower. ``bf16`` runs it under ``torch.autocast`` (bfloat16 matmuls,
        the mel front end stays fp32); ``auto`` picks bf16 where the hardware has native bfloat16
        (a CUDA device that supports it, a CPU with AVX512-BF16 or AMX) and fp32 elsewhere, where
        emulated bf16 would be slower. The vectors stay within cosine .999 of fp32 (tested).
    text_precision : {"auto", "fp32", "bf16"}
        The same for the text tower (the prompt channel's texts): ``bf16`` runs it under
        ``torch.autocast`` (layer norms and softmax stay fp32 there), ``auto`` as above. Within
        cosine .999 of fp32 (tested); about 2x the texts per second on an AVX512-BF16 CPU.
    stft : {"fft", "conv"}
        Spectrogram front end: ``fft`` (``torch.stft``) or laion-clap's own ``conv`` (torchlibrosa's
        DFT-as-Conv1d, the reference); same log-mel to float rounding, the FFT does ~20x less arithmetic.
    threads_per_task : int
        torch intra-op threads in each Spark task: 0 = the task's CPUs (``spark.task.cpus``), so
        concurrent tasks of an executor do not oversubscribe its cores; n > 0 = n; -1 = torch's own
        default (every core of the machine, in every task).
    """

    audio_model: str = "HTSAT-base"
    text_model: str = "roberta"
    checkpoint_path: str = ""
    tokenizer_path: str = ""
    trust_checkpoint: bool = False
    enable_fusion: bool = False
    model_version: str = ""
    window_seconds: float = 10.0
    max_windows: int = 6
    sample_rate: int = 48000
    device: str = "auto"
    seed: int = 0
    audio_precision: str = "auto"
    text_precision: str = "auto"
    stft: str = "fft"
    threads_per_task: int = 0

    @classmethod
    def from_conf(cls, conf) -> "EncoderSpec":
        """Build from an ``EmbeddingConf``-like object (any object with these attribute names)."""
        return spec_from_conf(cls, conf)

    @property
    def has_checkpoint(self) -> bool:
        return bool(self.checkpoint_path) and os.path.isfile(self.checkpoint_path)

    def resolved_model_version(self) -> str:
        """``model_version`` if set; else ``clap-<audio>-<text>-<checkpoint stem>`` or
        ``clap-<audio>-<text>-untrained-seed<seed>`` when no checkpoint file exists."""
        return model_version_of(f"clap-{self.audio_model}-{self.text_model}", self.model_version,
                                self.checkpoint_path, self.has_checkpoint, self.seed)


def spec_from_conf(cls, conf):
    """A spec dataclass ``cls`` from a config section (the attributes of ``conf`` it has fields for)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{n: getattr(conf, n) for n in names if hasattr(conf, n)})


def model_version_of(prefix: str, explicit: str, checkpoint_path: str, has_checkpoint: bool, seed: int) -> str:
    """A model's version string: ``explicit`` if set (``-untrained-seed<n>`` appended when there is no
    checkpoint), else ``<prefix>-<checkpoint file or folder name>``, or ``<prefix>-untrained-seed<n>``."""
    if explicit:
        if not has_checkpoint and "untrained" not in explicit:
            return f"{explicit}-untrained-seed{seed}"
        return explicit
    if has_checkpoint:
        return f"{prefix}-{os.path.splitext(os.path.basename(os.path.normpath(checkpoint_path)))[0]}"
    return f"{prefix}-untrained-seed{seed}"


# -- laion-clap import without its download-at-import package __init__ ---------------------------

_IMPORT_LOCK = threading.Lock()


def _clap_module():
    """laion-clap's ``clap_module`` package, imported without running ``laion_clap/__init__``."""
    with _IMPORT_LOCK:
        if "clap_module" in sys.modules:
            return sys.modules["clap_module"]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        spec = importlib.util.find_spec("laion_clap")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("laion-clap is not installed (pip install laion-clap)")
        pkg_dir = list(spec.submodule_search_locations)[0]
        if pkg_dir not in sys.path:
            sys.path.append(pkg_dir)  # what laion_clap/__init__.py itself does
        import clap_module  # noqa: E402  (laion-clap's model package)

        return clap_module


@contextlib.contextmanager
def _offline_roberta():
    """Make laion-clap's ``RobertaModel.from_pretrained('roberta-base')`` build locally instead."""
    import clap_module.model as cm
    from transformers import RobertaConfig, RobertaModel

    class _LocalRoberta:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            log.info("building %s text branch locally from RobertaConfig (no download)", name)
            return RobertaModel(RobertaConfig(**ROBERTA_BASE))

    original = cm.RobertaModel
    cm.RobertaModel = _LocalRoberta
    try:
        yield
    finally:
        cm.RobertaModel = original


def load_checkpoint_state(path: str, trust: bool = False) -> Dict[str, torch.Tensor]:
    """Read a laion-clap checkpoint as a state dict, safely.

    ``torch.load(weights_only=True)`` first; a full pickle load only when ``trust`` is set.
    Then laion-clap's key handling: take ``state_dict`` when present, strip ``module.``, drop the
    ``text_branch.embeddings.position_ids`` buffer.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle objects other than tensors / containers
        if not trust:
            raise CheckpointError(
                f"checkpoint {path} cannot be loaded with weights_only=True ({exc}); set "
                "embeddings.trust_checkpoint=true only if you trust the file") from exc
        log.warning("checkpoint %s needs a full pickle load (trust_checkpoint=true)", path)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt["state_dict"] if isinstance(ckpt, dict) and "state_dict" in ckpt else ckpt
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"checkpoint {path} holds no state dict")
    if next(iter(state)).startswith("module."):
        state = {k[len("module."):]: v for k, v in state.items()}
    state.pop("text_branch.embeddings.position_ids", None)
    return state


# -- the CPU path: FFT front end, precision ---------------------------------------------------------


class FFTSpectrogram(torch.nn.Module):
    """torchlibrosa's ``Spectrogram`` (power, centred, reflect padding) computed with ``torch.stft``.

    laion-clap's HTSAT computes the STFT as two ``Conv1d`` with DFT kernels of ``n_fft`` taps per
    frequency bin (``n_fft * (n_fft/2+1)`` multiply-adds per frame); the FFT gives the same
    ``(batch, 1, frames, n_fft/2+1)`` power spectrogram with ``O(n_fft log n_fft)`` work. It always
    runs in fp32 (also under autocast).
    """

    def __init__(self, n_fft: int, hop_length: int, window: torch.Tensor, center: bool = True,
                 pad_mode: str = "reflect", power: float = 2.0):
        super().__init__()
        self.n_fft, self.hop_length, self.center, self.pad_mode, self.power = n_fft, hop_length, center, pad_mode, power
        self.register_buffer("window", window.float(), persistent=False)

    @classmethod
    def like(cls, spectrogram: torch.nn.Module) -> "FFTSpectrogram":
        """The FFT equivalent of a torchlibrosa ``Spectrogram``: its n_fft, hop, (hann) window, centring
        and padding mode, the window rebuilt as torchlibrosa builds it (periodic hann, centred in n_fft)."""
        stft = spectrogram.stft
        n_fft = stft.n_fft
        win = stft.win_length or n_fft
        window = torch.hann_window(win, periodic=True, dtype=torch.float64)
        if stft.window != "hann":
            raise ValueError(f"FFT front end supports the hann window laion-clap uses, not {stft.window!r}")
        left = (n_fft - win) // 2
        window = torch.nn.functional.pad(window, (left, n_fft - win - left))
        return cls(n_fft, stft.hop_length, window, stft.center, stft.pad_mode, spectrogram.power)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if self.center:
                x = torch.nn.functional.pad(x[:, None, :], (self.n_fft // 2, self.n_fft // 2),
                                            mode=self.pad_mode)[:, 0, :]
            spec = torch.stft(x, self.n_fft, hop_length=self.hop_length, window=self.window.to(x.device),
                              center=False, return_complex=True)
            power = spec.real ** 2 + spec.imag ** 2  # (batch, freq, frames)
            if self.power != 2.0:
                power = power ** (self.power / 2.0)
            return power.transpose(1, 2)[:, None, :, :]


def _fp32(forward):
    """``forward`` run in fp32 also under autocast (the log-mel filter bank and its log)."""

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return forward(x.float())

    return run


# -- tokenisers ------------------------------------------------------------------------------------


class _RobertaFilesTokenizer:
    """roberta-base BPE from local files (no hub access)."""

    def __init__(self, path: str):
        from transformers import RobertaTokenizer

        self.tok = RobertaTokenizer(vocab_file=os.path.join(path, "vocab.json"),
                                    merges_file=os.path.join(path, "merges.txt"))

    def __call__(self, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        r = self.tok(list(texts), padding="max_length", truncation=True, max_length=CONTEXT_LENGTH,
                     return_tensors="pt")
        return {"input_ids": r["input_ids"], "attention_mask": r["attention_mask"]}


class _ClipBpeAsRoberta:
    """Deterministic offline ids in roberta's format from laion-clap's bundled CLIP BPE.

    Only for an *untrained* roberta branch: the ids are valid (< 50265) and stable, the meaning is
    whatever the random weights make of them.
    """

    def __init__(self):
        from clap_module.tokenizer import SimpleTokenizer

        self.tok = SimpleTokenizer()

    def __call__(self, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        ids = torch.full((len(texts), CONTEXT_LENGTH), _ROBERTA_PAD, dtype=torch.long)
        mask = torch.zeros((len(texts), CONTEXT_LENGTH), dtype=torch.long)
        for i, t in enumerate(texts):
            body = [min(x + 3, ROBERTA_BASE["vocab_size"] - 1) for x in self.tok.encode(t or "")]
            seq = [_ROBERTA_BOS] + body[: CONTEXT_LENGTH - 2] + [_ROBERTA_EOS]
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask}


class _ClipTokenizer:
    """laion-clap's own tokenizer for ``text_model="transformer"``."""

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        from clap_module.tokenizer import tokenize

        return tokenize([t or "" for t in texts], context_length=CONTEXT_LENGTH)


# -- the encoder -----------------------------------------------------------------------------------


class ClapEncoder:
    """A laion-clap CLAP model ready for inference (audio windows and text -> 512-d, L2-normalised).

    Parameters
    ----------
    spec : EncoderSpec

    Attributes
    ----------
    model_version : str
    trained : bool
        False when built with random weights (no checkpoint).
    device : torch.device
    precision : str
        ``fp32`` or ``bf16``: the resolved ``spec.audio_precision`` of the audio tower.
    text_precision : str
        ``fp32`` or ``bf16``: the resolved ``spec.text_precision`` of the text tower.
    """

    def __init__(self, spec: EncoderSpec):
        self.spec = spec
        self.model_version = spec.resolved_model_version()
        self.device = resolve_device(spec.device)
        self.trained = spec.has_checkpoint
        t0 = time.perf_counter()
        cm = _clap_module()
        if spec.text_model not in ("roberta", "transformer"):
            raise ValueError(f"text_model must be 'roberta' or 'transformer' (offline), got {spec.text_model!r}")
        if spec.checkpoint_path and not self.trained:
            log.warning("CLAP checkpoint %s does not exist", spec.checkpoint_path)
        torch.manual_seed(spec.seed)  # untrained weights are a function of the seed
        with _offline_roberta():
            model, cfg = cm.create_model(spec.audio_model, spec.text_model, precision="fp32",
                                         device=torch.device("cpu"), enable_fusion=spec.enable_fusion,
                                         fusion_type="aff_2d" if spec.enable_fusion else "None")
        if self.trained:
            state = load_checkpoint_state(spec.checkpoint_path, spec.trust_checkpoint)
            missing, unexpected = model.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.endswith("position_ids")]
            if missing:
                raise CheckpointError(f"checkpoint {spec.checkpoint_path} does not fit {spec.audio_model}/"
                                      f"{spec.text_model}: {len(missing)} missing keys, e.g. {missing[:3]}")
            if unexpected:
                log.warning("checkpoint has %d unused keys, e.g. %s", len(unexpected), unexpected[:3])
        else:
            log.warning(
                "!!! CONTENT EMBEDDINGS ARE UNTRAINED !!! no CLAP checkpoint (embeddings.checkpoint_path=%r): "
                "built %s/%s with random weights (seed %d), model_version=%s. Audio vectors only reflect "
                "raw acoustics and text vectors are NOT aligned with audio; set embeddings.checkpoint_path "
                "to a laion-clap checkpoint for real content/prompt recall.",
                spec.checkpoint_path, spec.audio_model, spec.text_model, spec.seed, self.model_version)
        if spec.stft not in ("fft", "conv"):
            raise ValueError(f"stft must be 'fft' or 'conv', got {spec.stft!r}")
        # the front end's forward is replaced, not its module: the state dict keeps laion-clap's keys
        branch = model.audio_branch
        if spec.stft == "fft" and hasattr(branch, "spectrogram_extractor"):
            branch.spectrogram_extractor.forward = FFTSpectrogram.like(branch.spectrogram_extractor).forward
        if hasattr(branch, "logmel_extractor"):
            branch.logmel_extractor.forward = _fp32(branch.logmel_extractor.forward)
        self.precision = resolve_precision(spec.audio_precision, self.device)
        self.text_precision = resolve_precision(spec.text_precision, self.device, "text_precision")
        self.model = model.to(self.device).eval()
        self.audio_cfg = cfg["audio_cfg"]
        self.clip_samples = int(self.audio_cfg["clip_samples"])
        if int(self.audio_cfg["sample_rate"]) != spec.sample_rate:
            raise ValueError(f"{spec.audio_model} expects {self.audio_cfg['sample_rate']} Hz, "
                             f"spec says {spec.sample_rate}")
        self._tokenizer = self._make_tokenizer()
        log.info("CLAP encoder %s ready on %s in %.1fs (audio tower %s, %s spectrogram; text tower %s)",
                 self.model_version, self.device, time.perf_counter() - t0, self.precision, spec.stft,
                 self.text_precision)

    def _make_tokenizer(self):
        s = self.spec
        if s.text_model == "transformer":
            return _ClipTokenizer()
        if s.tokenizer_path and os.path.isfile(os.path.join(s.tokenizer_path, "vocab.json")):
            return _RobertaFilesTokenizer(s.tokenizer_path)
        if self.trained:
            return None  # refused at embed_text time: pretrained roberta needs its own vocabulary
        log.warning("no roberta tokenizer files (embeddings.tokenizer_path=%r): untrained text branch "
                    "uses laion-clap's bundled CLIP BPE ids", s.tokenizer_path)
        return _ClipBpeAsRoberta()

    # -- audio -------------------------------------------------------------------------------------
    def window_length(self) -> int:
        """Samples per window: ``window_seconds`` at the model rate, at most the model's clip."""
        return min(int(round(self.spec.window_seconds * self.spec.sample_rate)), self.clip_samples)

    def windows(self, wave: np.ndarray) -> np.ndarray:
        """``(k, clip_samples)`` float32 windows of one mono waveform (k <= max_windows)."""
        return windows_of(wave, self.window_length(), self.spec.max_windows, self.clip_samples)

    def _autocast(self, precision: Optional[str] = None):
        if (precision or self.precision) == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Embed ``(n, clip_samples)`` windows -> ``(n, 512)`` float32, each L2-normalised
        (in :attr:`precision`; the vectors are returned in fp32 either way)."""
        out = []
        for i in range(0, len(windows), max(1, batch_size)):
            chunk = windows[i:i + max(1, batch_size)]
            # laion-clap quantises waveforms to int16 and back before embedding
            q = (np.clip(chunk, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float32) / 32767.0
            wav = torch.from_numpy(q)
            batch = [{"waveform": wav[j], "longer": torch.tensor([False])} for j in range(len(wav))]
            if self.spec.enable_fusion:
                raise NotImplementedError("fusion models need mel_fusion inputs; use enable_fusion=false")
            with self._autocast():
                emb = self.model.get_audio_embedding(batch)
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)  # re-normalised in fp32
            out.append(emb.cpu().numpy())
        if not out:
            return np.zeros((0, EMBED_DIM), np.float32)
        return np.concatenate(out).astype(np.float32)

    def embed_waveforms(self, waves: Sequence[np.ndarray], batch_size: int = 16) -> Tuple[np.ndarray, List[int]]:
        """Track embeddings: windows of each waveform embedded in shared batches, averaged, normalised.

        Returns
        -------
        (np.ndarray (n, 512) float32, list of int)
            Embeddings and the number of windows used per track.
        """
        wins = [self.windows(w) for w in waves]
        counts = [len(w) for w in wins]
        if not wins:
            return np.zeros((0, EMBED_DIM), np.float32), []
        flat = self.embed_windows(np.concatenate(wins), batch_size)
        out = np.zeros((len(wins), flat.shape[1]), np.float32)
        pos = 0
        for i, c in enumerate(counts):
            out[i] = flat[pos:pos + c].mean(axis=0)
            pos += c
        return l2_normalize(out), counts

    # -- text --------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]):
        """Token ids padded to the full context (77): a ``LongTensor`` (transformer) or a dict with
        ``input_ids`` / ``attention_mask`` (roberta). This is the reference input of the text tower."""
        if self._tokenizer is None:
            raise CheckpointError("pretrained roberta text branch without tokenizer files: set "
                                  "embeddings.tokenizer_path to a folder with roberta-base vocab.json/merges.txt")
        return self._tokenizer(list(texts))

    def _encode_transformer(self, ids: torch.Tensor) -> torch.Tensor:
        """laion-clap's ``encode_text`` for the CLIP-style tower on ``ids`` cut to ``(n, L)``, L <= 77.

        The tower is causal and its output is read at the EOT (argmax) position, so the tokens after
        each row's EOT cannot change that row's output: the positional embedding and the causal mask
        are sliced to ``L`` instead of padding to the full context (same vectors, ~77/L less work).
        """
        m = self.model
        n_ctx = ids.shape[1]
        x = m.token_embedding(ids) + m.positional_embedding[:n_ctx]
        x = x.permute(1, 0, 2)  # NLD -> LND
        x = m.text_branch(x, attn_mask=m.attn_mask[:n_ctx, :n_ctx])
        x = x.permute(1, 0, 2)
        eot = ids.argmax(dim=-1)
        x = m.ln_final(x[torch.arange(x.shape[0], device=x.device), eot])  # row-wise: only EOT rows needed
        return m.text_projection(x)

    def _embed_token_batch(self, tok, idx: torch.Tensor, length: Optional[int]) -> torch.Tensor:
        """Normalised embeddings of rows ``idx`` of the padded ``tok``, cut to ``length`` tokens
        (``None``: the full padded context through laion-clap's own ``encode_text``, the reference)."""
        if isinstance(tok, torch.Tensor):  # transformer branch
            if length is None:
                emb = self.model.encode_text(tok[idx].to(self.device), device=self.device)
            else:
                emb = self._encode_transformer(tok[idx, :length].to(self.device))
            return torch.nn.functional.normalize(emb, dim=-1)
        if length is None:
            return self.model.get_text_embedding({k: v[idx] for k, v in tok.items()})
        batch = {k: v[idx, :length] for k, v in tok.items()}  # roberta: attention mask hides padding
        return self.model.get_text_embedding(batch)

    @staticmethod
    def _needed_lengths(tok) -> torch.Tensor:
        """Per row, the number of leading tokens that determine its embedding.

        transformer: up to and including the EOT (argmax) token (causal tower);
        roberta: up to the last position of the attention mask (padding is masked out).
        """
        if isinstance(tok, torch.Tensor):
            return tok.argmax(dim=-1) + 1
        mask = tok["attention_mask"]
        pos = torch.arange(1, mask.shape[1] + 1).expand_as(mask)
        return (pos * (mask > 0)).max(dim=-1).values.clamp(min=1)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], batch_size: int = 64, dynamic: bool = True) -> np.ndarray:
        """Embed texts -> ``(n, 512)`` float32, L2-normalised.

        Identical texts are embedded once. With ``dynamic`` (the default) texts are sorted by token
        length and each batch is cut to its own longest text instead of the full context of 77
        tokens (prompts are ~20 tokens); the vectors equal the padded path (``dynamic=False``, the
        reference: laion-clap's ``encode_text`` / ``get_text_embedding`` on 77 tokens) to float
        rounding (~1e-6), because the cut tokens are causally after the EOT read-out (transformer)
        or masked out (roberta). The tower runs in :attr:`text_precision` (vectors returned in fp32,
        re-normalised).
        """
        texts = [t if isinstance(t, str) else ("" if t is None else str(t)) for t in texts]
        if not texts:
            if self._tokenizer is None:
                self.tokenize([])
            return np.zeros((0, EMBED_DIM), np.float32)
        first: Dict[str, int] = {}
        inverse = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64, count=len(texts))
        uniq = list(first)
        tok = self.tokenize(uniq)
        bs = max(1, int(batch_size))
        n = len(uniq)
        if dynamic:
            lengths = self._needed_lengths(tok)
            order = torch.argsort(lengths, stable=True)
        else:
            lengths, order = None, torch.arange(n)
        out = np.empty((n, EMBED_DIM), np.float32)
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            with self._autocast(self.text_precision):
                emb = self._embed_token_batch(tok, idx, None if lengths is None else int(lengths[idx].max()))
            out[idx.numpy()] = torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy()
        return out[inverse]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, eps)).astype(np.float32)


_CACHE: Dict[EncoderSpec, ClapEncoder] = {}
_CACHE_LOCK = threading.Lock()


def get_encoder(spec: EncoderSpec) -> ClapEncoder:
    """The process-wide :class:`ClapEncoder` for ``spec`` (built on first use, then reused).

    Spark python workers are reused across tasks, so an executor builds the model once (again only
    when a task runs on another GPU than the cached model: :func:`~recsys_spark.common.resolve_device`).
    """
    with _CACHE_LOCK:
        enc = _CACHE.get(spec)
        if enc is not None and enc.device != resolve_device(spec.device):
            enc = None  # a reused worker now running a task assigned another GPU
        if enc is None:
            enc = ClapEncoder(spec)
            _CACHE[spec] = enc
        return enc


__all__ = ["EncoderSpec", "ClapEncoder", "get_encoder", "FFTSpectrogram", "resolve_precision", "native_bf16", "text_tower_usable", "load_checkpoint_state",
           "l2_normalize", "CheckpointError", "EMBED_DIM", "window_starts"]


def text_tower_usable(spec: EncoderSpec) -> Tuple[bool, str]:
    """Whether ``spec`` can embed text, decided on the driver without building the model."""
    if spec.text_model == "transformer":
        return True, ""
    has_tok = bool(spec.tokenizer_path) and os.path.isfile(os.path.join(spec.tokenizer_path, "vocab.json"))
    if spec.has_checkpoint and not has_tok:
        return False, ("pretrained roberta text branch but no tokenizer files "
                       f"(embeddings.tokenizer_path={spec.tokenizer_path!r})")
    return True, ""
