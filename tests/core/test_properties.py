"""Property-based: generated `--set` values and generated manifests go through the same checks the CLIs run, and
each ends as a valid config / data set or as one clean `UserError` (the CLIs' `error:` line, exit 2), never as
another exception. Derandomized, so CI sees the same examples every run."""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.checks import check_config
from core.config import Config, all_keys, parse_assignment
from core.data.manifest import DuplicateAudioWarning, load_manifest
from core.data.splits import make_splits
from core.errors import UserError

PROFILE = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# --- (a) --set KEY=VALUE -----------------------------------------------------------------------------------------
KEYS = st.sampled_from(all_keys() + ["optim.lrr", "nonsense", "optim", "data.", ".lr", "optim.lr.x", ""])
NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=300),  # near the domains' edges
    st.floats(min_value=-1, max_value=2),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**32, 2**32 - 1, 10**400, 1e308, -1e-300]),
)
VALUES = st.one_of(
    NUMBERS.map(str),
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e6", "1e999", "true", "no", "none", "cuda:1",
                     "cuda:x", "a,b", ",", "ce", "whisper", "resnet50", "wav2vec2", "sam", "one_cycle", "4;6",
                     "0x10", "1_000", "١٢", "é", "\x00"]),
    st.text(max_size=12),
)
ASSIGNMENT = st.one_of(st.tuples(KEYS, VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"), st.text(max_size=10))


def settings_path(assignments: list[str]) -> Config:
    """What tune.run's settings_from_args does with --set: parse, override the defaults, check."""
    overrides = dict(parse_assignment(text) for text in assignments)
    return check_config(Config().with_overrides(overrides))


@PROFILE
@given(st.lists(ASSIGNMENT, max_size=4))
def test_set_values_give_a_valid_config_or_a_user_error(assignments: list[str]) -> None:
    try:
        config = settings_path(assignments)
    except UserError as error:
        assert str(error) and "\n" not in str(error)
        event("user error")
        return
    event("valid config")
    # A config that passed: every float finite, seeds in numpy's range, and it survives a JSON round trip.
    flat = config.to_dict()
    for section in flat.values():
        for value in section.values():
            if isinstance(value, float):
                assert math.isfinite(value)
    assert 0 <= config.data.seed < 2**32 and 0 <= config.train.seed < 2**32
    assert Config.from_dict(flat) == config


# --- (b) manifests -------------------------------------------------------------------------------------------------
COLUMNS = ["path", "label", "age", "word", "speaker"]
CELLS = st.one_of(
    st.sampled_from(["", " ", "NA", "None", "null", "nan", "NaN", "inf", "-1", "0", "4;6", "5;13", "4.5", "3",
                     "normal", "abnormal", "Normal", "normal ", "spk1", "spk2", "spk3", "sun", "cat", "ü", "名前",
                     "a;b", "\t"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=6),
)


CLIPS = 30
GOOD = {"label": ["normal", "abnormal"], "value": ["0", "1.5", "3", "-2", "1e3"],
        "age": ["4", "4;6", "5.5", "7", "3;11"], "word": ["sun", "cat", "dog"], "extra": ["x", ""]}
JUNK_PATHS = ["./c0.wav", "c0.wav", "missing.wav", "silent.wav", "junk.wav", "", " ", "NA"]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real, small WAVs written once; manifests point at them, at missing files, an empty one and junk."""
    folder = tmp_path_factory.mktemp("property-clips")
    rng = np.random.default_rng(0)
    for i in range(CLIPS):
        soundfile.write(folder / f"c{i}.wav", (0.1 * rng.standard_normal(800)).astype(np.float32), 16000)
    soundfile.write(folder / "silent.wav", np.zeros(0, dtype=np.float32), 16000)  # 0 samples
    (folder / "junk.wav").write_bytes(b"not audio")
    return folder


@st.composite
def manifests(draw: st.DrawFn) -> tuple[str, bool]:
    """(CSV text, regression?). Half the manifests are clean (so that many reach the split); in the others each
    cell is junk one time in ten (empty, NA, None, whitespace, unicode, numbers, `4;6`...), a path may be missing,
    empty, junk or repeated, the header may have junk or repeated columns, and rows may be ragged."""
    regression = draw(st.booleans())
    junk = 10 if draw(st.booleans()) else 0  # one cell in `junk` is junk; 0: none
    if not junk or draw(st.integers(0, 4)):
        header = ["path", "label", *draw(st.lists(st.sampled_from(["age", "word", "speaker", "extra"]), unique=True))]
        header = draw(st.permutations(header))
    else:
        header = draw(st.lists(st.sampled_from(COLUMNS + ["extra", "", "Path", "label "]), min_size=1, max_size=6))
    ragged = junk and draw(st.integers(0, 9)) == 0
    speakers = draw(st.integers(1, 12))
    rows = []
    for row in range(draw(st.integers(min_value=1, max_value=CLIPS))):
        width = draw(st.integers(0, len(header) + 1)) if ragged else len(header)
        cells = []
        for name in (header + ["extra"] * width)[:width]:
            good = not junk or draw(st.integers(0, junk - 1)) > 0
            if name == "path":
                cells.append(f"c{row}.wav" if good else draw(st.sampled_from(JUNK_PATHS)))
            elif name == "speaker" and good:
                cells.append(f"spk{row % speakers}")
            else:
                column = "value" if name == "label" and regression else name
                cells.append(draw(st.sampled_from(GOOD.get(column, ["x"]))) if good else draw(CELLS))
        rows.append(cells)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue(), regression


def load_and_split(manifest: Path, k_fold: int, test_size: float, regression: bool) -> None:
    loaded = load_manifest(manifest, "label", regression=regression)
    table = loaded.table
    assert len(table) >= 1 and all(Path(p).is_absolute() for p in table["path"])
    labels = table["label"].to_numpy()
    speakers = table["speaker"].astype(str).to_numpy() if "speaker" in table.columns else None
    splits = make_splits(labels, speakers, k_fold=k_fold, test_size=test_size, valid_size=0.3, seed=0,
                         stratify=not regression)
    # A split that was made is usable: every row once in test or a fold's validation, every part non-empty and,
    # for a classifier, holding every class.
    every = np.concatenate([splits.test] + [fold.valid for fold in splits.folds])
    if k_fold > 1:
        assert sorted(every.tolist()) == list(range(len(labels)))
    for part in [splits.test] + [p for fold in splits.folds for p in (fold.train, fold.valid)]:
        assert len(part)
        if not regression:
            assert set(labels[part]) == set(labels)


@PROFILE
@given(manifests(), st.integers(min_value=1, max_value=4), st.sampled_from([0.01, 0.2, 0.5, 0.9]))
def test_manifests_give_a_valid_split_or_a_user_error(clip_folder: Path, generated: tuple[str, bool], k_fold: int,
                                                      test_size: float) -> None:
    text, regression = generated
    manifest = clip_folder / "manifest.csv"
    manifest.write_text(text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning (sklearn's "least populated class") is a failure, but
        warnings.simplefilter("ignore", DuplicateAudioWarning)  # the same bytes under two names is a warning only
        try:
            load_and_split(manifest, k_fold, test_size, regression)
            event("split made")
        except UserError as error:
            assert str(error) and "\n" not in str(error)
            event(f"user error: {str(error).split(': ', 1)[-1][:25]}")


def test_found_two_clips_without_speakers(clip_folder: Path) -> None:
    """Found by the property above on the old splitter: sklearn's ValueError ("n_splits=2 cannot be greater than the
    number of members in each class" / "Found array with 0 sample(s)")."""
    manifest = clip_folder / "two.csv"
    manifest.write_text("path,label,age\nc0.wav,normal,4\nc1.wav,abnormal,4\n", encoding="utf-8")
    for test_size in (0.01, 0.9):
        with pytest.raises(UserError, match=r"class 'abnormal' has only 1 clip\(s\); a test split plus "
                                            r"data\.k_fold=2 needs at least 3"):
            load_and_split(manifest, 2, test_size, regression=False)
