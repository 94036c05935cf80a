"""Audio to spikes: a fast cochlea-like filterbank with integrate-and-fire channels, WAV reading,
and the Free Spoken Digit Dataset (FSDD) turned into SHD-layout spike files.

Cochlea, per recording x sampled at fs, less its mean (a DC offset carries no sound):
    frames    X[f] = rfft(hann * x[f * hop : f * hop + window])          (hop 1 ms, window 25 ms)
    filters   E[f, c] = sum_k W[c, k] |X[f, k]|^2 / (sum hann / 2)^2,
              W[c, k] = (1 + ((k df - fc) / b_c)^2)^-4
              (the power response of a 4th-order gammatone; fc on the ERB-rate scale between
              f_min and f_max, b_c = 1.019 ERB(fc), ERB(f) = 24.7 (4.37 f / 1000 + 1) Hz, rows of
              W normalised to sum 1; in dBFS, E is at most 0 dB for a sine of amplitude 1)
    hair cell L[f, c] = clip((10 log10 E - floor) / R, 0, 1),  floor = max(max 10 log10 E - R, F)
              (R dB dynamic range below the loudest level, but never below the absolute floor
              F = floor_db, -100 dBFS by default: silence and near-silence give no spikes)
    spikes    channel c fires in frame f when floor(sum_{f'<=f} r L[f', c]) increases: an
              integrate-and-fire neuron with subtractive reset, at most one spike per frame (r <= 1)

The filters are applied in the frequency domain and f_max stays below the Nyquist frequency, so
8 kHz recordings need no resampling: no channel sits above the band the recording holds.
"""

from __future__ import annotations

import math
import os
import re
import wave
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._checks import check_memory
from .events import EventDataset

_WAV_SAMPLE_BYTES = 16  # memory per sample besides its bytes in read_wav (int32 and float copies)
_FRAME_WORDS = 2  # peak 8-byte words per frame and FFT point in Cochlea.levels (measured: 1.8)


def read_wav(path) -> tuple[np.ndarray, int]:
    """The PCM WAV file at ``path`` (8, 16, 24 or 32 bit; channels averaged) as float32 in
    [-1, 1], and its sample rate in Hz. Files whose samples would need more than
    ``saltatory.memory_limit()`` bytes raise ValueError."""
    path = os.fspath(path)
    try:
        with wave.open(path, "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            size = min(w.getnframes() * width * channels, os.path.getsize(path))  # declared, held
            check_memory(size // max(width, 1) * (width + _WAV_SAMPLE_BYTES), f"read_wav: {path}")
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"read_wav: {path} is not a readable PCM WAV file ({exc})") from exc
    if width not in (1, 2, 3, 4):
        raise ValueError(f"read_wav: {path}: unsupported sample width {width} bytes")
    usable = len(raw) - len(raw) % (width * channels)
    data = np.frombuffer(raw[:usable], np.uint8).reshape(-1, width)
    if width == 1:  # unsigned 8-bit, offset 128
        samples = (data[:, 0].astype(np.float32) - 128.0) / 128.0
    else:  # little-endian signed: placed in the top bytes of an int32, which sign-extends
        padded = np.zeros((len(data), 4), np.uint8)
        padded[:, 4 - width:] = data
        samples = (padded.view("<i4")[:, 0] / 2.0**31).astype(np.float32)
    return samples.reshape(-1, channels).mean(axis=1), rate


def erb(frequency):
    """Equivalent rectangular bandwidth in Hz (Glasberg & Moore 1990)."""
    return 24.7 * (4.37 * np.asarray(frequency) / 1000.0 + 1.0)


def erb_space(f_min: float, f_max: float, n: int) -> np.ndarray:
    """n centre frequencies equally spaced on the ERB-rate scale, ascending."""
    rate = lambda f: 21.4 * np.log10(4.37 * f / 1000.0 + 1.0)  # noqa: E731
    scale = np.linspace(rate(f_min), rate(f_max), n)
    return (10.0 ** (scale / 21.4) - 1.0) * 1000.0 / 4.37


class Cochlea:
    """Filterbank + hair cells + integrate-and-fire channels; see the module docstring.

    - n_channels: filters (and output units), centred between ``f_min`` and ``f_max`` Hz
      (default 0.9 of the Nyquist frequency of ``sample_rate``, the recordings' rate in Hz).
    - hop, window: frame step and length in seconds.
    - dynamic_range_db, floor_db: the hair cells' range R below the loudest level and their
      absolute floor F, in dBFS.
    - max_rate: spikes per frame of a channel at full level, in (0, 1].
    """

    def __init__(self, n_channels: int = 64, sample_rate: int = 8000, *, f_min: float = 80.0,
                 f_max: float | None = None, hop: float = 1e-3, window: float = 0.025,
                 dynamic_range_db: float = 40.0, max_rate: float = 0.25, floor_db: float = -100.0):
        op = "Cochlea"
        nyquist = sample_rate / 2.0
        f_max = 0.9 * nyquist if f_max is None else float(f_max)
        if n_channels <= 0 or sample_rate <= 0:
            raise ValueError(f"[{op}] n_channels and sample_rate must be positive")
        if not 0 < f_min < f_max < nyquist:
            raise ValueError(f"[{op}] need 0 < f_min < f_max < Nyquist ({nyquist} Hz), got "
                             f"f_min={f_min}, f_max={f_max}")
        if not 0 < max_rate <= 1 or not dynamic_range_db > 0:
            raise ValueError(f"[{op}] max_rate must be in (0, 1] spikes per frame and "
                             f"dynamic_range_db positive")
        if not math.isfinite(floor_db):
            raise ValueError(f"[{op}] floor_db must be a finite level in dBFS, got {floor_db}")
        self.n_channels, self.sample_rate = int(n_channels), int(sample_rate)
        self.hop_samples = max(1, round(hop * sample_rate))
        self.window_samples = max(2, round(window * sample_rate))
        self.hop = self.hop_samples / sample_rate
        self.dynamic_range_db, self.max_rate = float(dynamic_range_db), float(max_rate)
        self.floor_db = float(floor_db)
        self.n_fft = 1 << math.ceil(math.log2(self.window_samples))
        self.centres = erb_space(f_min, f_max, self.n_channels)
        bins = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)
        offset = (bins[None, :] - self.centres[:, None]) / (1.019 * erb(self.centres)[:, None])
        weights = (1.0 + offset**2) ** -4.0
        self.weights = (weights / weights.sum(axis=1, keepdims=True)).T  # [bins, channels]
        self.taper = np.hanning(self.window_samples)
        self.full_scale = (self.taper.sum() / 2.0) ** 2  # the peak |X|^2 of a sine of amplitude 1

    def levels(self, audio: np.ndarray) -> np.ndarray:
        """Hair-cell levels in [0, 1], [frames, channels], of ``audio`` (one recording, samples at
        ``sample_rate``)."""
        audio = np.asarray(audio, dtype=np.float64).ravel()
        if not np.all(np.isfinite(audio)):
            raise ValueError("[Cochlea] audio contains NaN or Inf")
        check_memory((len(audio) // self.hop_samples + 1) * _FRAME_WORDS * self.n_fft * 8,
                     f"[Cochlea] {len(audio)} samples")
        scale = np.abs(audio).max(initial=0.0) or 1.0  # computed at unit peak: no overflow
        audio = audio / scale
        half = self.window_samples // 2
        padded = np.pad(audio - audio.mean() if audio.size else audio, (half, half))
        if len(padded) < self.window_samples:
            padded = np.pad(padded, (0, self.window_samples - len(padded)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.window_samples)[::self.hop_samples]
        power = np.abs(np.fft.rfft(frames * self.taper, self.n_fft, axis=1)) ** 2
        with np.errstate(divide="ignore"):  # silence is -inf dB
            decibels = 10.0 * np.log10(power @ self.weights / self.full_scale) + 20.0 * np.log10(scale)
        floor = max(decibels.max() - self.dynamic_range_db, self.floor_db)
        return np.clip((decibels - floor) / self.dynamic_range_db, 0.0, 1.0)

    def encode(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Spike events of ``audio`` (one recording, samples at ``sample_rate``): (times in
        seconds, channel ids), in time order."""
        charge = np.floor(np.cumsum(self.max_rate * self.levels(audio), axis=0))
        fired = np.diff(charge, axis=0, prepend=0.0) > 0
        frames, channels = np.nonzero(fired)
        return frames * self.hop, channels.astype(np.int64)


def encode_audio_files(paths, cochlea: Cochlea, workers: int | None = None):
    """Encodes the WAV files ``paths`` by ``cochlea`` (whose sample rate they must have) in
    ``workers`` parallel threads (default: one per CPU): lists of times and of channel ids, one
    entry per file."""
    def one(path):
        audio, rate = read_wav(path)
        if rate != cochlea.sample_rate:
            raise ValueError(f"encode_audio_files: {path} is sampled at {rate} Hz, the cochlea at "
                             f"{cochlea.sample_rate} Hz")
        return cochlea.encode(audio)
    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        events = list(pool.map(one, paths))
    return [t for t, _ in events], [u for _, u in events]


_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def fsdd_files(root, split: str = "train") -> tuple[list[str], list[int]]:
    """FSDD recordings of a split, "train" or "test" (official: takes 0-4 are the test set), and
    their digits; ``root`` is the FSDD checkout or its ``recordings`` folder."""
    if split not in ("train", "test"):
        raise ValueError(f"fsdd_files: split must be 'train' or 'test', got {split!r}")
    folder = os.path.join(os.fspath(root), "recordings")
    folder = folder if os.path.isdir(folder) else os.fspath(root)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"fsdd_files: {root} is not a folder of FSDD recordings")
    files, labels = [], []
    for name in sorted(os.listdir(folder)):
        match = _FSDD_NAME.match(name)
        if match and (int(match.group(3)) < 5) == (split == "test"):
            files.append(os.path.join(folder, name))
            labels.append(int(match.group(1)))
    if not files:
        raise FileNotFoundError(f"fsdd_files: no <digit>_<speaker>_<take>.wav files in {folder}")
    return files, labels


def load_fsdd(root, split: str = "train", *, cochlea: Cochlea | None = None, n_steps: int = 100,
              bin_width: float = 1e-2, capacity: int | None = None) -> EventDataset:
    """An FSDD split (see ``fsdd_files`` for ``root`` and ``split``) encoded by ``cochlea``
    (default 64 channels) as an EventDataset of ``n_steps`` bins of ``bin_width`` seconds, lists
    of ``capacity`` (default: the largest, nothing dropped)."""
    cochlea = cochlea or Cochlea()
    files, labels = fsdd_files(root, split)
    times, units = encode_audio_files(files, cochlea)
    return EventDataset(times, units, labels, n_units=cochlea.n_channels, n_steps=n_steps,
                        bin_width=bin_width, capacity=capacity)


def fsdd_to_shd(root, out_dir, cochlea: Cochlea | None = None) -> dict[str, str]:
    """Encodes the FSDD checkout ``root`` by ``cochlea`` (default 64 channels) and writes
    ``fsdd_{train,test}.h5`` in the SHD layout into ``out_dir``; returns the paths by split."""
    from .shd import write_shd

    cochlea = cochlea or Cochlea()
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for split in ("train", "test"):
        files, labels = fsdd_files(root, split)
        times, units = encode_audio_files(files, cochlea)
        paths[split] = os.path.join(os.fspath(out_dir), f"fsdd_{split}.h5")
        write_shd(paths[split], times, units, labels, n_units=cochlea.n_channels,
                  sample_rate=cochlea.sample_rate, hop=cochlea.hop)
    return paths
