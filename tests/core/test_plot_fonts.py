"""Word labels in any script render (issue 21, item 10): a Korean, Japanese or Russian data set's per-word plot
draws every glyph, with no "Glyph ... missing from font" warning (DejaVu Sans alone has no Hangul or kana)."""

from __future__ import annotations

import warnings

import numpy as np

from core.plots import final_plots

WORDS = ["사과", "바나나", "りんご", "バナナ", "яблоко", "banana"]  # Hangul, hiragana, katakana, Cyrillic, Latin


def test_word_labels_in_every_script_have_their_glyphs() -> None:
    per_word = {word: {"uar": 0.5 + 0.05 * i, "ci_low": 0.4, "ci_high": 0.9, "clips": 10}
                for i, word in enumerate(WORDS)}
    report = {"classes": ["정상", "이상"], "positive_class": "이상", "confusion_matrix": [[5, 1], [2, 4]],
              "metrics": {"uar": 0.7}, "per_word": per_word}
    targets = np.array([0, 0, 1, 1])
    outputs = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots = final_plots(report, targets, outputs)
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert not missing, missing[:3]
    assert {"uar_per_word.png", "confusion_matrix.png", "roc_curve.png"} <= set(plots)
    assert all(png.startswith(b"\x89PNG") for png in plots.values())
