"""Log-mel audio features: shape, band placement of a tone, alignment to frame times."""

from __future__ import annotations

import numpy as np
import pytest

from segtag.features.audio import AUDIO_DIM, LOG_OFFSET, N_MELS, AudioFeaturizer, audio_features, mel_filterbank

RATE = 16_000


def _tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_shape_and_layout_mean_then_std() -> None:
    feats = audio_features(_tone(440, 3.0), np.array([0.0, 1.0, 2.0]), start=0.0, step=1.0)
    assert feats.shape == (3, AUDIO_DIM) == (3, 128) and feats.dtype == np.float32
    assert (feats[:, N_MELS:] >= 0).all()  # second half: standard deviations


def test_tone_lands_in_the_right_band() -> None:
    fb = mel_filterbank()  # (257, 64)
    bin_hz = np.linspace(0, RATE / 2, fb.shape[0])
    for freq in (440.0, 2000.0):
        feats = audio_features(_tone(freq, 1.0), np.array([0.0]), start=0.0, step=1.0)[0]
        expected_band = int(np.argmax(fb[np.argmin(np.abs(bin_hz - freq))]))
        assert abs(int(np.argmax(feats[:N_MELS])) - expected_band) <= 1
        assert feats[N_MELS:].max() < 0.5  # a steady tone barely varies over time


def test_silence_is_the_log_floor() -> None:
    feats = audio_features(np.zeros(RATE * 2, np.float32), np.array([0.0, 1.0]), start=0.0, step=1.0)
    np.testing.assert_allclose(feats[:, :N_MELS], np.log(LOG_OFFSET), rtol=1e-5)
    np.testing.assert_allclose(feats[:, N_MELS:], 0.0, atol=1e-4)


def test_alignment_to_frame_times_and_window_start() -> None:
    # Window audio starts at 10 s: 2 s of silence then 2 s of tone.
    audio = np.concatenate([np.zeros(2 * RATE, np.float32), _tone(1000, 2.0)])
    feats = AudioFeaturizer()(audio, np.array([10.0, 11.0, 12.0, 13.0]), start=10.0, step=1.0)
    energy = feats[:, :N_MELS].max(axis=1)
    assert energy[0] == pytest.approx(np.log(LOG_OFFSET)) and energy[1] == pytest.approx(np.log(LOG_OFFSET))
    assert energy[2] > energy[1] + 3 and energy[3] > energy[1] + 3
    # A frame whose interval runs past the audio counts the rest as silence, and short clips work.
    tail = AudioFeaturizer()(_tone(1000, 0.01), np.array([0.0]), start=0.0, step=0.5)
    assert np.isfinite(tail).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="step"):
        audio_features(np.zeros(100, np.float32), np.array([0.0]), start=0.0, step=0.0)
    with pytest.raises(ValueError, match="mono"):
        AudioFeaturizer().logmel(np.zeros((2, 1000), np.float32))
