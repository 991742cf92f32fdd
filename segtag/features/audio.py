"""Audio features: a log-mel summary per sampled video frame.

For every sampled frame at time ``t`` the audio of ``[t, t + step)`` (``step`` =
1 / sample_fps) is turned into a log-mel spectrogram - 64 mel bands between
125 Hz and 7500 Hz, 25 ms Hann window, 10 ms hop, 16 kHz, ``log(mel + 0.01)``
as in VGGish - and summarised by the per-band mean (dims 0-63) and per-band
standard deviation (dims 64-127) over time: a fixed 128-d vector per frame
step, aligned with the visual features. Plain numpy; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000
N_MELS = 64
WIN = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms at 16 kHz
N_FFT = 512
F_MIN = 125.0
F_MAX = 7500.0
LOG_OFFSET = 0.01
AUDIO_DIM = 2 * N_MELS  # per-band mean and std


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)  # HTK mel scale


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE, f_min: float = F_MIN, f_max: float = F_MAX
) -> np.ndarray:
    """Triangular HTK mel filters, shape (n_fft // 2 + 1, n_mels), float32."""
    if not 0 <= f_min < f_max <= rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= rate/2, got f_min={f_min}, f_max={f_max}, rate={rate}")
    bins_hz = np.linspace(0.0, rate / 2, n_fft // 2 + 1)  # (F,)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(f_min)), _hz_to_mel(np.array(f_max)), n_mels + 2))  # (M+2,)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # (M,) each
    rising = (bins_hz[:, None] - lower[None, :]) / (centre - lower)[None, :]  # (F, M)
    falling = (upper[None, :] - bins_hz[:, None]) / (upper - centre)[None, :]  # (F, M)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class LogMel:
    """Log-mel spectrogram of 16 kHz mono audio; holds its filterbank and window."""

    def __init__(self) -> None:
        self.filters = mel_filterbank()  # (257, 64)
        self.window = np.hanning(WIN + 1)[:-1].astype(np.float32)  # periodic Hann, (400,)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(S,) float32 -> (F, 64) float32 log-mel frames; clips shorter than 25 ms are zero-padded."""
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"audio must be 1-D mono samples, got shape {x.shape}")
        if len(x) < WIN:
            x = np.pad(x, (0, WIN - len(x)))
        n_frames = 1 + (len(x) - WIN) // HOP
        frames = np.lib.stride_tricks.sliding_window_view(x, WIN)[::HOP][:n_frames]  # (F, 400)
        spec = np.abs(np.fft.rfft(frames * self.window, n=N_FFT, axis=-1))  # (F, 257) magnitude
        mel = spec.astype(np.float32) @ self.filters  # (F, 64)
        return np.log(mel + LOG_OFFSET)


class AudioFeaturizer:
    """Per-frame-step audio features (see the module docstring)."""

    def __init__(self) -> None:
        self.logmel = LogMel()

    def __call__(self, audio: np.ndarray, timestamps: np.ndarray, start: float, step: float) -> np.ndarray:
        """audio (S,) at 16 kHz starting at ``start`` seconds, frame times (T,) -> (T, 128) float32.

        Frame ``t`` summarises ``audio[(timestamps[t] - start) * 16000 :][: step * 16000]``;
        the part of an interval beyond the end of ``audio`` counts as silence.
        """
        if step <= 0:
            raise ValueError(f"step must be > 0 seconds, got {step}")
        ts = np.asarray(timestamps, dtype=np.float64)
        out = np.zeros((len(ts), AUDIO_DIM), dtype=np.float32)  # (T, 128)
        length = max(round(step * SAMPLE_RATE), 1)
        for i, t in enumerate(ts):
            a = max(round((t - start) * SAMPLE_RATE), 0)
            chunk = audio[a : a + length]
            if len(chunk) < length:
                chunk = np.pad(chunk, (0, length - len(chunk)))
            lm = self.logmel(chunk)  # (F, 64)
            out[i, :N_MELS] = lm.mean(axis=0)
            out[i, N_MELS:] = lm.std(axis=0)
        return out


def audio_features(audio: np.ndarray, timestamps: np.ndarray, start: float, step: float) -> np.ndarray:
    """Per-frame log-mel mean and std, (T, 128) float32; see :class:`AudioFeaturizer`.

    Builds the filterbank on every call; hold an :class:`AudioFeaturizer` to reuse it.
    """
    return AudioFeaturizer()(audio, timestamps, start, step)
