"""Shapes, masks, missing modalities, presets and helpers of the tagging network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segtag.model import (
    SegTagger,
    TaggerConfig,
    bce_loss,
    describe,
    fp32_megabytes,
    preset,
    slice_batch,
)


def small_config(**kw: object) -> TaggerConfig:
    base: dict[str, object] = dict(
        num_classes=7, rgb_dim=32, audio_dim=8, text_dim=12, rgb_reduce=16, expansion=2, groups=4,
        rgb_clusters=8, audio_clusters=4, modality_dim=24, text_hidden=16, hidden=32, gating_reduction=4,
        num_experts=2, embed_dim=10, dropout=0.0, modality_dropout=0.0,
    )  # fmt: skip
    base.update(kw)
    return TaggerConfig(**base)  # type: ignore[arg-type]


def batch(B: int, T: int, cfg: TaggerConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "rgb": torch.randn(B, T, cfg.rgb_dim, generator=g),
        "rgb_mask": torch.ones(B, T, dtype=torch.bool),
        "audio": torch.randn(B, T, cfg.audio_dim, generator=g),
        "audio_mask": torch.ones(B, T, dtype=torch.bool),
        "text": torch.randn(B, cfg.text_dim, generator=g),
        "text_mask": torch.ones(B, dtype=torch.bool),
    }


@pytest.fixture
def model() -> SegTagger:
    torch.manual_seed(0)
    return SegTagger(small_config()).eval()


def test_output_shapes_and_ranges(model: SegTagger) -> None:
    out = model(**batch(3, 6, model.config))
    assert out.probs.shape == (3, 7) and out.logits.shape == (3, 7)
    assert out.embedding.shape == (3, 10)
    assert torch.all((out.probs > 0) & (out.probs < 1))
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(torch.sigmoid(out.logits), out.probs)
    assert out.loss is None


def test_loss_is_bce_summed_over_classes_and_backpropagates() -> None:
    torch.manual_seed(0)
    m = SegTagger(small_config()).train()
    labels = torch.zeros(3, 7)
    labels[:, 2] = 1
    out = m(**batch(3, 5, m.config), labels=labels)
    assert out.loss is not None and out.loss.ndim == 0
    p = out.probs.detach()
    expected = -(labels * p.log() + (1 - labels) * (1 - p).log()).sum(1).mean()
    torch.testing.assert_close(out.loss.detach(), expected, rtol=1e-4, atol=1e-4)
    out.loss.backward()
    assert all(p.grad is not None for p in m.classifier.parameters())


def test_label_weights_remove_unrated_classes() -> None:
    probs = torch.tensor([[0.9, 0.2]])
    labels = torch.tensor([[0.0, 0.0]])
    full = bce_loss(probs, labels)
    only_second = bce_loss(probs, labels, torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(only_second, -torch.log(torch.tensor(0.8)))
    assert full > only_second


def test_padding_frames_do_not_change_the_output(model: SegTagger) -> None:
    x = batch(1, 5, model.config)
    padded = {k: v.clone() for k, v in x.items()}
    for key, mask_key in (("rgb", "rgb_mask"), ("audio", "audio_mask")):
        garbage = torch.randn(1, 4, x[key].shape[2]) * 100
        padded[key] = torch.cat([x[key], garbage], dim=1)
        padded[mask_key] = torch.cat([x[mask_key], torch.zeros(1, 4, dtype=torch.bool)], dim=1)
    a, b = model(**x), model(**padded)
    torch.testing.assert_close(a.probs, b.probs)
    torch.testing.assert_close(a.embedding, b.embedding)


def test_batch_of_different_lengths_matches_one_by_one(model: SegTagger) -> None:
    x = batch(2, 6, model.config)
    x["rgb_mask"][1, 3:] = False
    x["audio_mask"][1, 3:] = False
    together = model(**x).probs
    framewise = ("rgb", "rgb_mask", "audio", "audio_mask")
    alone = model(**{k: v[1:2, :3] if k in framewise else v[1:2] for k, v in x.items()}).probs
    torch.testing.assert_close(together[1:2], alone)


def test_missing_modalities_ignore_their_values(model: SegTagger) -> None:
    x = batch(2, 4, model.config)
    x["audio_mask"][:] = False
    x["text_mask"][:] = False
    other = {k: v.clone() for k, v in x.items()}
    other["audio"] = torch.randn_like(x["audio"]) * 50
    other["text"] = torch.randn_like(x["text"]) * 50
    a, b = model(**x), model(**other)
    assert torch.isfinite(a.probs).all()
    torch.testing.assert_close(a.probs, b.probs)
    # and a missing modality really is different from a present one
    assert not torch.allclose(a.probs, model(**batch(2, 4, model.config)).probs)


def test_all_masked_modality_aggregates_to_zero(model: SegTagger) -> None:
    assert model.audio is not None
    x = torch.randn(2, 3, 8)
    v = model.audio.vlad(x, torch.zeros(2, 3, dtype=torch.bool))
    assert torch.count_nonzero(v) == 0


def test_modality_dropout_keeps_at_least_one_modality() -> None:
    m = SegTagger(small_config(modality_dropout=1.0)).train()
    masks = [torch.ones(16, 3, dtype=torch.bool), torch.ones(16, 3, dtype=torch.bool), torch.ones(16, dtype=torch.bool)]
    dropped = m._modality_dropout(masks)
    present = torch.stack([dropped[0].any(1), dropped[1].any(1), dropped[2]], dim=1)
    assert present.any(dim=1).all()
    m.eval()
    assert all(torch.equal(a, b) for a, b in zip(m._modality_dropout(masks), masks, strict=True))


def test_tag_video_segments_match_forward_on_slices(model: SegTagger) -> None:
    rng = np.random.default_rng(0)
    T = 11
    rgb = rng.normal(size=(T, 32)).astype(np.float32)
    audio = rng.normal(size=(T, 8)).astype(np.float32)
    audio_mask = np.ones(T, bool)
    audio_mask[8:] = False
    title = rng.normal(size=12).astype(np.float32)
    windows = [(0, 5), (5, 10), (10, 11)]
    vp, sp, se, ve = model.tag_video(rgb, audio, audio_mask, title, True, windows, max_batch=2)
    assert vp.shape == (7,) and sp.shape == (3, 7) and se.shape == (3, 10) and ve.shape == (10,)
    for i, (s, e) in enumerate(windows):
        one = model(**slice_batch(rgb, audio, audio_mask, title, True, [(s, e)]))
        np.testing.assert_allclose(sp[i], one.probs[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    whole = model(**slice_batch(rgb, audio, audio_mask, title, True, [(0, T)]))
    np.testing.assert_allclose(vp, whole.probs[0].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_model_without_text_branch_accepts_empty_title() -> None:
    m = SegTagger(small_config(text_dim=0)).eval()
    x = batch(2, 3, m.config)
    x["text"] = torch.zeros(2, 0)
    assert m.text is None
    assert m(**x).probs.shape == (2, 7)


def test_yt8m_preset_is_under_80m_parameters() -> None:
    cfg = preset("yt8m")
    assert (cfg.rgb_dim, cfg.audio_dim, cfg.num_classes) == (1024, 128, 3862)
    assert (cfg.expansion, cfg.groups, cfg.rgb_clusters, cfg.hidden, cfg.gating_reduction) == (2, 8, 128, 2048, 8)
    info = describe(cfg)
    assert 50_000_000 < info["parameters"] < 80_000_000
    assert info["parameters"] == sum(info["parts"].values())


def test_demo_preset_fits_20_mb() -> None:
    m = SegTagger(preset("demo", num_classes=200))
    assert fp32_megabytes(m) <= 20.0


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="divisible by groups"):
        TaggerConfig(rgb_dim=30, groups=8, expansion=1)
    with pytest.raises(ValueError, match="unknown TaggerConfig keys: nope"):
        TaggerConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    cfg = small_config()
    assert TaggerConfig.from_dict(cfg.to_dict()) == cfg
