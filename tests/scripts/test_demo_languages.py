"""The demo data generator speaks more than English: `--language` picks the word table, voice and babble."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_demo_data.py"
sys.path.insert(0, str(SCRIPT.parent))
import make_demo_data  # noqa: E402  (a script, not a package: imported from its folder)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_every_language_has_a_full_word_table() -> None:
    """Every registered language has its own ~25 words, with an error that differs from the normal form."""
    assert "en" in make_demo_data.LANGUAGES and len(make_demo_data.LANGUAGES) >= 2
    for code, language in make_demo_data.LANGUAGES.items():
        words = [w.word for w in language.words]
        assert len(words) >= 20 and len(set(words)) == len(words), code
        assert len({make_demo_data.slug(w) for w in words}) == len(words), f"{code}: two words share a file name"
        for w in language.words:
            assert w.abnormal != w.normal and w.compound != w.normal, (code, w.word)
            assert bool(w.compound) == bool(w.compound_extra), (code, w.word)
        assert len(language.babble_text) >= 4, code
    english = {w.word for w in make_demo_data.LANGUAGES["en"].words}
    assert not english & {w.word for w in make_demo_data.LANGUAGES["de"].words}


@needs_espeak
def test_german_set_from_two_speakers(tmp_path: Path) -> None:
    """`--language de` writes a manifest of the German words only, one row per speaker and word."""
    out = tmp_path / "demo_de"
    assert make_demo_data.main(["--out", str(out), "--language", "de", "--speakers", "2", "--seed", "1"]) == 0
    german = make_demo_data.LANGUAGES["de"].words
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 2 * len(german)
    assert sorted(manifest["speaker"].unique()) == ["s01", "s02"]
    assert set(manifest["label"]) <= {"normal", "abnormal"}
    assert manifest.groupby("speaker")["word"].apply(list).tolist() == [[w.word for w in german]] * 2
    assert "Schnecke" in set(manifest["word"]) and "rabbit" not in set(manifest["word"])
    # What was synthesised is the German table's form for the error made (flips change only the label).
    forms = {w.word: {w.normal, w.abnormal, w.compound} for w in german}
    assert all(p in forms[w] for w, p in zip(manifest["word"], manifest["phonemes"], strict=True))
    said_wrong = manifest["error_type"] != "none"
    assert ((manifest["label"] == "abnormal") != said_wrong).astype(int).tolist() == manifest["label_flipped"].tolist()
    for path in manifest["path"].head(3):
        x, sr = sf.read(out / path)
        assert sr in (16_000, 44_100) and len(x) >= 0.5 * sr and abs(x).max() > 0


@needs_espeak
@pytest.mark.parametrize("code", sorted(make_demo_data.LANGUAGES))
def test_every_error_is_heard(code: str, tmp_path: Path) -> None:
    """Each phoneme string renders, and each error changes the speech that remains after trimming the silence.

    espeak-ng renders some consonants so quietly that trim() drops them: German "Pferd" said [f'e:rt] for
    [pF'e:rt] came out sample-identical in this speaker's voice (`f1`, `-p 80 -s 150`), an error no model could hear.
    """
    language = make_demo_data.LANGUAGES[code]
    for w in language.words:
        forms = [w.normal, w.abnormal] + ([w.compound] if w.compound else [])
        renders = []
        for phonemes in forms:
            x, _ = make_demo_data.espeak(f"[[{phonemes}]]", f"{language.voice}+f1", 80, 150, tmp_path)
            renders.append(make_demo_data.trim(x))
            assert renders[-1].size > 0.1 * 22_050 and abs(renders[-1]).max() > 0.01, (w.word, phonemes)
        for other, phonemes in zip(renders[1:], forms[1:], strict=True):
            same = other.size == renders[0].size and (other == renders[0]).all()
            assert not same, f"{code} {w.word}: {phonemes} sounds the same as {w.normal}"


def test_unknown_language_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert make_demo_data.main(["--out", str(tmp_path / "x"), "--language", "xx"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --language 'xx'"), err
    assert "de" in lines[0] and "en" in lines[0]
    assert not (tmp_path / "x").exists()
