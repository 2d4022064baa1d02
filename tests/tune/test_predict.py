"""`tune.final` writes a self-contained model folder and `python -m tune.predict` runs it on new clips, with the
training data moved away: one row per clip, probabilities summing to 1, and on the labelled test rows the very
metrics of report.json. Bad input: one line, exit 2, nothing written."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.toy_audio import make_toy_config

from core.cli import main as core_train
from core.command_line import write_json
from core.data.batches import make_batch
from core.data.dataset import AudioData, prepare_data
from core.errors import UserError
from core.model_folder import WEIGHTS, load_model_folder, read_model_folder, save_model_folder
from core.models import MODELS, forward_batch
from core.statistics import FoldStatistics
from tune.final import main as tune_final
from tune.predict import main as tune_predict

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
ROWS = {"features.conditioning": "rows", "features.n_mels": 78}


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def trained(toy_dataset: Path, toy_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tune.final (a real subprocess) on a copy of the toy set; then the test rows' clips and a labelled manifest
    of them are copied out, and the training copy is moved away."""
    root = tmp_path_factory.mktemp("predict")
    shutil.copytree(toy_dataset.parent, root / "train-data")
    config = make_toy_config(root / "train-data" / "manifest.csv", toy_cache_dir, **{"train.epochs": 1})
    config.to_json(root / "config.json")
    done = run_module("tune.final", "--config", str(root / "config.json"), "--out", str(root / "model"))
    assert done.returncode == 0, done.stderr[-3000:]
    data = prepare_data(config)
    table = pd.read_csv(root / "train-data" / "manifest.csv", dtype=str).iloc[data.splits.test]
    clips = root / "clips"
    clips.mkdir()
    for path in table["path"]:
        shutil.copy(root / "train-data" / path, clips / Path(path).name)
    table.assign(path=[Path(path).name for path in table["path"]]).to_csv(clips / "test.csv", index=False)
    (root / "train-data").rename(root / "moved-away")
    return {"root": root, "model": root / "model", "clips": clips, "manifest": clips / "test.csv"}


def test_final_writes_a_self_contained_model_folder(trained: dict[str, Path]) -> None:
    model = trained["model"]
    assert sorted(p.name for p in model.iterdir()) == ["MODEL_CARD.md", "config.json", "model.json",
                                                      "model.safetensors", "plots", "report.html", "report.json"]
    metadata = json.loads((model / "model.json").read_text())
    report = json.loads((model / "report.json").read_text())
    assert metadata["classes"] == ["abnormal", "normal"] and metadata["words"] == ["cat", "rabbit", "sun"]
    assert metadata["decoding"]["sample_rate"] == 16000 and metadata["decoding"]["max_seconds"] == 1.0
    assert metadata["card"]["test"] == report["metrics"]
    assert sum(metadata["statistics"]["class_counts"]) == report["train_clips"]
    card = (model / "MODEL_CARD.md").read_text()
    assert f"clips: {report['train_clips']}" in card and f"uar {report['metrics']['uar']:.4f}" in card


def test_predict_on_a_folder_of_clips(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "predictions.csv"
    done = run_module("tune.predict", "--model", str(trained["model"]), "--data", str(trained["clips"]),
                      "--out", str(out))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    audio = sorted(p.name for p in trained["clips"].iterdir() if p.suffix in (".wav", ".flac"))
    assert table["path"].tolist() == audio  # one row per clip, sorted; the CSV in the folder is not a clip
    assert list(table.columns) == ["path", "predicted", "p_abnormal", "p_normal", "logit"]
    np.testing.assert_allclose(table[["p_abnormal", "p_normal"]].sum(axis=1), 1.0, atol=1e-6)
    assert (table["predicted"] == np.where(table["p_abnormal"] > table["p_normal"], "abnormal", "normal")).all()
    assert not (tmp_path / "predictions_report.json").exists()  # no labels, no metrics


def test_predict_on_the_labelled_test_rows_reproduces_the_report(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "test.csv"
    done = run_module("tune.predict", "--model", str(trained["model"]), "--data", str(trained["manifest"]),
                      "--out", str(out))
    assert done.returncode == 0, done.stderr
    expected = json.loads((trained["model"] / "report.json").read_text())
    got = json.loads((tmp_path / "test_report.json").read_text())
    assert got["metrics"] == pytest.approx(expected["metrics"], abs=1e-6)
    assert got["confusion_matrix"] == expected["confusion_matrix"]
    assert got["per_word"] == expected["per_word"] and got["uar_ci"] == expected["uar_ci"]
    assert f"uar {expected['metrics']['uar']:.4f}" in done.stdout
    table = pd.read_csv(out)
    assert list(table.columns[:5]) == ["path", "predicted", "p_abnormal", "p_normal", "logit"]
    assert set(table.columns[5:]) == {"label", "age", "word", "speaker"} and len(table) == expected["test_clips"]


def test_core_train_eval_only_reads_the_same_folder(trained: dict[str, Path], tmp_path: Path) -> None:
    """core.train --eval-only loads tune.final's folder through the same loader (data from the moved copy)."""
    root = trained["root"]
    (root / "moved-away").rename(root / "train-data")
    try:
        assert core_train(["--config", str(root / "config.json"), "--eval-only", "--checkpoint",
                           str(trained["model"]), "--out", str(tmp_path)]) == 0
    finally:
        (root / "train-data").rename(root / "moved-away")
    expected = json.loads((trained["model"] / "report.json").read_text())["metrics"]
    got = json.loads((tmp_path / "eval_test.json").read_text())["metrics"]
    shared = sorted(set(got) & set(expected))  # eval-only adds the fold metrics' bias counts (core/bias.py)
    assert {"uar", "f1", "accuracy", "auroc"} <= set(shared)
    assert {k: got[k] for k in shared} == pytest.approx({k: expected[k] for k in shared}, abs=1e-6)


# --- bad input: one line, exit 2, nothing written ---------------------------------------------------------------
@pytest.fixture(scope="module")
def conditioned(toy_dataset: Path, toy_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model conditioned on age and word (features.conditioning=rows), trained in this process."""
    root = tmp_path_factory.mktemp("conditioned")
    make_toy_config(toy_dataset, toy_cache_dir, **ROWS, **{"train.epochs": 1}).to_json(root / "config.json")
    assert tune_final(["--config", str(root / "config.json"), "--out", str(root / "model")]) == 0
    return root / "model"


def refused(capsys: pytest.CaptureFixture[str], out: Path, *args: str) -> str:
    capsys.readouterr()
    assert tune_predict([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_bad_input_is_refused_before_any_work(trained: dict[str, Path], conditioned: Path, toy_dataset: Path,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "p.csv"
    model = ["--model", str(conditioned)]
    # unreadable audio
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(next(trained["clips"].glob("*.flac")), broken / "good.flac")
    (broken / "bad.wav").write_bytes(b"RIFF not really a wave file")
    err = refused(capsys, out, "--model", str(trained["model"]), "--data", str(broken))
    assert f"audio file {broken / 'bad.wav'} is unreadable" in err
    # a conditioned model, given clips without their words (a folder has none) or ages
    table = pd.read_csv(toy_dataset, dtype=str)
    table.drop(columns=["word"]).to_csv(tmp_path / "no-word.csv", index=False)
    err = refused(capsys, out, *model, "--data", str(tmp_path / "no-word.csv"), "--audio-root", str(toy_dataset.parent))
    assert "no 'word' column" in err and "conditioned on the target word" in err
    table.drop(columns=["age"]).to_csv(tmp_path / "no-age.csv", index=False)
    err = refused(capsys, out, *model, "--data", str(tmp_path / "no-age.csv"), "--audio-root", str(toy_dataset.parent))
    assert "no 'age' column" in err
    # a word the model never saw
    table.assign(word=["cat"] * 4 + ["giraffe"] + ["sun"] * (len(table) - 5)).to_csv(tmp_path / "new-word.csv",
                                                                                   index=False)
    err = refused(capsys, out, *model, "--data", str(tmp_path / "new-word.csv"), "--audio-root",
                  str(toy_dataset.parent))
    assert "row 5 (line 6): word 'giraffe' is not one the model was trained on" in err
    assert "known words: cat, rabbit, sun" in err
    # not a model folder
    err = refused(capsys, out, "--model", str(trained["clips"]), "--data", str(trained["clips"]))
    assert f"--model {trained['clips']}: not a model folder" in err
    assert not out.parent.exists()  # nothing written by any of them
    # an existing --out without --overwrite is kept as it was
    out.parent.mkdir()
    out.write_text("mine")
    err = refused(capsys, out, "--model", str(trained["model"]), "--data", str(trained["clips"]))
    assert f"--out {out}: already exists; pass --overwrite" in err and out.read_text() == "mine"
    assert sorted(p.name for p in out.parent.iterdir()) == ["p.csv"]


def test_an_unseen_word_is_kept_when_the_model_does_not_read_words(trained: dict[str, Path], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Without conditioning the word is only a report group: a new word is scored and reported as itself."""
    table = pd.read_csv(trained["manifest"], dtype=str)
    table["word"] = ["giraffe"] + table["word"].tolist()[1:]
    table.to_csv(trained["clips"].parent / "new-word.csv", index=False)
    assert tune_predict(["--model", str(trained["model"]), "--data", str(trained["clips"].parent / "new-word.csv"),
                         "--audio-root", str(trained["clips"]), "--out", str(tmp_path / "p.csv")]) == 0
    report = json.loads((tmp_path / "p_report.json").read_text())
    assert report["per_word"]["giraffe"]["clips"] == 1


def test_conditioned_model_predicts_with_its_word_table(conditioned: Path, toy_data: AudioData,
                                                        tmp_path: Path) -> None:
    """A manifest with only some of the words: ids follow the MODEL's word table, not the manifest's."""
    table = pd.read_csv(toy_data.manifest.source, dtype=str)
    table = table[table["word"] == "sun"]  # alone, "sun" would be word 0 of the manifest; it is 2 in the model
    table.to_csv(tmp_path / "sun.csv", index=False)
    assert tune_predict(["--model", str(conditioned), "--data", str(tmp_path / "sun.csv"), "--audio-root",
                         str(toy_data.manifest.source.parent), "--out", str(tmp_path / "p.csv")]) == 0
    got = pd.read_csv(tmp_path / "p.csv")["p_abnormal"].to_numpy()
    loaded = load_model_folder(conditioned, device="cpu")
    rows = np.flatnonzero(np.asarray(toy_data.words)[toy_data.word_ids] == "sun")
    batch = make_batch(toy_data, rows, CPU)
    with torch.no_grad():
        expected = forward_batch(loaded.model, loaded.featurizer, batch)["logits"].softmax(-1)[:, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


# --- the folder itself ------------------------------------------------------------------------------------------
def test_loader_errors_name_the_folder_and_the_fault(trained: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained["model"], copy)
    config = json.loads((copy / "config.json").read_text())
    config["model"]["projection_dim"] = 48
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=rf"^--model {copy}: the model weights in model.safetensors do not fit"):
        load_model_folder(copy)
    (copy / WEIGHTS).unlink()
    with pytest.raises(UserError, match=rf"^--model {copy}: model.safetensors missing"):
        read_model_folder(copy)
    with pytest.raises(UserError, match=r"a file, not a model folder"):
        read_model_folder(copy / "report.json")
    assert read_model_folder(trained["model"] / WEIGHTS).folder == trained["model"]  # the weights file names it


def test_statistics_round_trip_through_json(toy_data: AudioData, tmp_path: Path) -> None:
    stats = FoldStatistics.from_data(toy_data, toy_data.splits.development)
    write_json(tmp_path / "s.json", stats.to_dict())  # NaN target mean/std written as null
    back = FoldStatistics.from_dict(json.loads((tmp_path / "s.json").read_text()))
    np.testing.assert_array_equal(back.word_label_counts, stats.word_label_counts)
    np.testing.assert_array_equal(back.class_counts, stats.class_counts)
    assert (back.words, back.classes, back.age_min, back.age_max) == (stats.words, stats.classes, stats.age_min,
                                                                      stats.age_max)
    assert math.isnan(back.target_mean) and math.isnan(back.target_std)
    regression = FoldStatistics.from_rows(toy_data.ages, toy_data.word_ids, 0, 3, np.arange(6), toy_data.ages)
    again = FoldStatistics.from_dict(json.loads(json.dumps(regression.to_dict())))
    assert again.word_label_counts.shape == (3, 0) and again.target_mean == pytest.approx(regression.target_mean)


def test_a_pretrained_model_loads_without_its_checkpoint(tiny_whisper: Path, toy_data: AudioData,
                                                         toy_cache_dir: Path, tmp_path: Path) -> None:
    """The saved folder rebuilds a pretrained Whisper from its own architecture: the hub/folder it came from is
    gone, and the outputs are the same."""
    source = tmp_path / "pretrained"
    shutil.copytree(tiny_whisper, source)
    config = make_toy_config(toy_data.manifest.source, toy_cache_dir, **{"model.pretrained": str(source)})
    stats = FoldStatistics.from_data(toy_data, toy_data.splits.development)
    spec = MODELS.get("whisper")
    torch.manual_seed(0)
    model, featurizer = spec.build(config, 2, stats).eval(), spec.featurizer(config, stats).eval()
    save_model_folder(tmp_path / "model", model, featurizer, config, stats, {"trained_on": {}})
    shutil.rmtree(source)
    loaded = load_model_folder(tmp_path / "model", device="cpu")
    assert loaded.config.model.pretrained == str(source)  # the recipe is kept as it was
    batch = make_batch(toy_data, toy_data.splits.test, CPU)
    with torch.no_grad():
        torch.testing.assert_close(forward_batch(loaded.model, loaded.featurizer, batch)["logits"],
                                   forward_batch(model, featurizer, batch)["logits"])


def test_predict_reads_the_hugging_face_layouts_as_training_does(conditioned: Path, toy_dataset: Path,
                                                                 tmp_path: Path) -> None:
    """An audiofolder's metadata.csv (its ages and words) and a save_to_disk folder (clips as bytes) go through the
    training loader: the conditioned model scores them as it scores the CSV manifest of the same clips."""
    from support.hf_layouts import write_audiofolder, write_saved_dataset

    def predicted(data: Path) -> pd.DataFrame:
        out = tmp_path / f"{data.name}.csv"
        assert tune_predict(["--model", str(conditioned), "--data", str(data), "--out", str(out)]) == 0
        return pd.read_csv(out).sort_values("p_abnormal").reset_index(drop=True)

    expected = predicted(toy_dataset)
    for layout in (write_audiofolder(toy_dataset, tmp_path / "audiofolder"),
                   write_saved_dataset(toy_dataset, tmp_path / "saved")):
        got = predicted(layout)
        np.testing.assert_allclose(got["p_abnormal"], expected["p_abnormal"], atol=1e-6)
        assert got["age"].tolist() == expected["age"].tolist()  # the ages came from the layout's own table
