#!/usr/bin/env python3
"""Generate audiotune's bundled demo dataset: synthetic child-like speech.

There is no public corpus of children's speech-sound errors we may ship, so we
synthesise one with the espeak-ng command line.  Every "speaker" is an espeak-ng
voice variant at a high pitch, shifted by a vocal-tract factor (the signal is
resampled to play faster, raising pitch and formants together).  Every speaker
says every target word once, either as written (``normal``) or with a typical
child error (``abnormal``), both driven by phoneme input so that the only
difference between the classes is the error itself.  Recordings are then
degraded (noise, reverb, telephone-band microphone, babble, gain, clipping,
odd sample rates and stereo) so that the task is learnable but not trivial;
bench/calibrate_demo.py measures how learnable.

The output is fully determined by ``--seed`` (espeak-ng is deterministic).
The result is synthetic speech, not clinical data; see ``data/demo/README.md``.

``--language`` picks the word table, espeak-ng voice and babble sentences
(``LANGUAGES``); the bundled set is English (``en``, the default).

Usage::

    python scripts/make_demo_data.py --out data/demo --seed 0
    python scripts/make_demo_data.py --out /tmp/demo_de --language de --seed 1
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, lfilter, resample_poly, sosfilt

SR = 16_000  # working and default output sample rate
HI_SR = 44_100  # alternative output rate for a share of the files
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "demo"


@dataclass(frozen=True)
class Word:
    """A target word with its correct and erroneous espeak-ng phonemes."""

    word: str
    normal: str
    abnormal: str
    error_type: str
    mastery_age: float  # rough age (years) by which most children say it right
    compound: str = ""  # the error plus a second process, said by children with a disorder
    compound_extra: str = ""  # the name of that second process


# Phonemes come from `espeak-ng -q -x -v en-us WORD`, edited for the error.
# Mastery ages are loose, illustrative stand-ins for acquisition norms.
ENGLISH_WORDS: tuple[Word, ...] = (
    Word("rabbit", "r'abIt", "w'abIt", "gliding", 6.5, "w'abI", "final_consonant_deletion"),
    Word("red", "r'Ed", "w'Ed", "gliding", 6.5, "w'E", "final_consonant_deletion"),
    Word("rain", "r'eIn", "w'eIn", "gliding", 6.5, "w'eI", "final_consonant_deletion"),
    Word("leaf", "l'i:f", "w'i:f", "gliding", 5.5, "w'i:p", "stopping"),
    Word("key", "k'i:", "t'i:", "fronting", 4.0, "d'i:", "prevocalic_voicing"),
    Word("cup", "k'Vp", "t'Vp", "fronting", 4.0, "t'V", "final_consonant_deletion"),
    Word("duck", "d'Vk", "d'Vt", "fronting", 4.0, "d'V", "final_consonant_deletion"),
    Word("sun", "s'Vn", "t'Vn", "stopping", 4.0, "t'V", "final_consonant_deletion"),
    Word("soap", "s'oUp", "t'oUp", "stopping", 4.0, "t'oU", "final_consonant_deletion"),
    Word("zoo", "z'u:", "d'u:", "stopping", 4.5),
    Word("fish", "f'IS", "p'IS", "stopping", 3.5, "p'I", "final_consonant_deletion"),
    Word("shoe", "S'u:", "t'u:", "stopping", 4.5, "d'u:", "prevocalic_voicing"),
    Word("star", "st'A@", "t'A@", "cluster_reduction", 5.0),
    Word("snake", "sn'eIk", "n'eIk", "cluster_reduction", 5.0, "n'eIt", "fronting"),
    Word("tree", "tr'i:", "t'i:", "cluster_reduction", 5.5),
    Word("frog", "fr'0g", "f'0g", "cluster_reduction", 5.5, "f'0d", "fronting"),
    Word("glove", "gl'Vv", "g'Vv", "cluster_reduction", 5.0, "d'Vv", "fronting"),
    Word("bed", "b'Ed", "b'E", "final_consonant_deletion", 3.5),
    Word("dog", "d'0g", "d'0", "final_consonant_deletion", 3.5),
    Word("ball", "b'O:l", "b'O:", "final_consonant_deletion", 4.0),
    Word("sock", "s'0k", "T'0k", "lisp", 5.5, "T'0t", "fronting"),
    Word("house", "h'aUs", "h'aUT", "lisp", 5.5, "h'aU", "final_consonant_deletion"),
    Word("bus", "b'Vs", "b'VT", "lisp", 5.5, "b'V", "final_consonant_deletion"),
    Word("chair", "tS'e@", "S'e@", "deaffrication", 5.0, "t'e@", "stopping"),
    Word("jump", "dZ'Vmp", "d'Vmp", "stopping", 5.0, "d'Vp", "cluster_reduction"),
)

# Phonemes come from `espeak-ng -q -x -v de WORD`, edited for the error.  The processes are the ones German
# children are known for: fronting of /k g/ and of /S/ and /C/ to [s] and [S], stopping of /f ts/, reduction of
# clusters and of the affricates /pf ts/, interdental lisp (Sigmatismus), /r/ said as [l] (Pararhotazismus) and
# deletion of an unstressed syllable.  Mastery ages are as loose as the English ones.
GERMAN_WORDS: tuple[Word, ...] = (
    Word("Kamm", "k'am", "t'am", "fronting", 4.0, "t'a", "final_consonant_deletion"),
    Word("Katze", "k'ats@", "t'ats@", "fronting", 4.0, "t'at@", "stopping"),
    Word("Gabel", "g'A:b@l", "d'A:b@l", "fronting", 4.0, "d'A:b@", "final_consonant_deletion"),
    Word("Schuh", "S'u:", "s'u:", "fronting", 4.5, "t'u:", "stopping"),
    Word("Fisch", "f'IS", "f'Is", "fronting", 4.5, "p'Is", "stopping"),
    Word("Schaf", "S'A:f", "s'A:f", "fronting", 4.5, "s'A:p", "stopping"),
    Word("Milch", "m'IlC", "m'IlS", "fronting", 4.5, "m'IS", "cluster_reduction"),
    Word("Vogel", "f'o:g@l", "p'o:g@l", "stopping", 3.5, "p'o:d@l", "fronting"),
    Word("Zahn", "ts'A:n", "t'A:n", "stopping", 4.0, "t'A:", "final_consonant_deletion"),
    Word("Stern", "St'Ern", "t'Ern", "cluster_reduction", 5.0),
    Word("Schnecke", "Sn'Ek@", "n'Ek@", "cluster_reduction", 5.0, "n'Et@", "fronting"),
    Word("Blume", "bl'Um@", "b'Um@", "cluster_reduction", 4.5),
    Word("Frosch", "fr'OS", "f'OS", "cluster_reduction", 5.0, "f'Os", "fronting"),
    Word("Brot", "br'o:t", "b'o:t", "cluster_reduction", 4.5, "b'o:", "final_consonant_deletion"),
    Word("Glas", "gl'A:s", "g'A:s", "cluster_reduction", 4.5, "d'A:s", "fronting"),
    Word("Apfel", "_!'apf@l", "_!'af@l", "deaffrication", 4.5),
    Word("Zug", "ts'u:k", "s'u:k", "deaffrication", 4.5, "s'u:t", "fronting"),
    Word("Sonne", "z'On@", "D'On@", "lisp", 5.0),
    Word("Maus", "m'aUs", "m'aUT", "lisp", 5.0, "m'aU", "final_consonant_deletion"),
    Word("Hase", "h'A:z@", "h'A:D@", "lisp", 5.0),
    Word("Rad", "r'A:t", "l'A:t", "pararhotacism", 5.0),
    Word("Rose", "r'o:z@", "l'o:z@", "pararhotacism", 5.0, "l'o:D@", "lisp"),
    Word("Banane", "ban'A:n@", "n'A:n@", "weak_syllable_deletion", 3.5),
    Word("Tomate", "to:m'A:t@", "m'A:t@", "weak_syllable_deletion", 3.5, "m'A:t", "final_consonant_deletion"),
    Word("Ball", "b'al", "b'a", "final_consonant_deletion", 3.5),
)

# Female-type espeak-ng variants; children's voices are built from these.
VOICES: tuple[str, ...] = (
    "f1", "f2", "f3", "f4", "f5", "steph", "steph2", "steph3",
    "Annie", "anika", "Andrea", "belinda", "linda", "aunty", "Alicia",
)  # fmt: skip

# Adult voices and sentences for the background babble bank (text input).
BABBLE_VOICES: tuple[str, ...] = ("m1", "m3", "f2", "m5", "f4", "m7")
ENGLISH_BABBLE: tuple[str, ...] = (
    "could you hand me the blue folder on the desk please",
    "we will be ready in about ten minutes so take a seat",
    "the next appointment is on thursday morning after nine",
    "she said the printer on the second floor is broken again",
    "did anybody see where I put my keys and my phone",
    "lunch is in the other room and there is coffee as well",
)
GERMAN_BABBLE: tuple[str, ...] = (
    "kannst du mir bitte den blauen ordner vom schreibtisch geben",
    "wir sind in etwa zehn minuten fertig also setz dich doch",
    "der nächste termin ist am donnerstag morgen nach neun uhr",
    "sie hat gesagt dass der drucker im zweiten stock wieder kaputt ist",
    "hat jemand gesehen wo ich meine schlüssel und mein telefon hingelegt habe",
    "das mittagessen ist im anderen raum und kaffee gibt es auch",
)


@dataclass(frozen=True)
class Language:
    """What changes with the language: the espeak-ng voice, the target words and the babble."""

    voice: str  # espeak-ng language voice; speakers add a variant (`en-us+f3`)
    words: tuple[Word, ...]
    babble_text: tuple[str, ...]


LANGUAGES: dict[str, Language] = {
    "en": Language("en-us", ENGLISH_WORDS, ENGLISH_BABBLE),
    "de": Language("de", GERMAN_WORDS, GERMAN_BABBLE),
}

AGES: tuple[float, ...] = tuple(2.5 + 0.5 * i for i in range(14))  # 2.5 .. 9.0


@dataclass(frozen=True)
class Settings:
    """Knobs that set how hard the task is; tuned with bench/calibrate_demo.py."""

    n_speakers: int = 48
    disorder_share: float = 1 / 3
    age_slope: float = 0.6  # logit of an error per year below mastery age
    error_bias: float = -1.7  # logit of an error at the mastery age
    disorder_logit: tuple[float, float] = (2.5, 4.5)
    snr_db: tuple[float, float] = (35.0, 50.0)
    reverb_share: float = 0.4
    rt60_s: tuple[float, float] = (0.1, 0.3)
    drr_db: tuple[float, float] = (6.0, 12.0)  # direct-to-reverberant ratio
    bandlimit_share: float = 0.1
    babble_share: float = 0.2
    babble_snr_db: tuple[float, float] = (20.0, 30.0)
    flip_share: float = 0.02
    clip_share: float = 0.01
    hi_sr_share: float = 0.15
    stereo_share: float = 0.15
    wav_share: float = 0.01  # of all files; drawn among the 44.1 kHz / stereo ones
    compound_errors: bool = True  # children with a disorder combine two processes where a word allows
    pad_s: tuple[float, float] = (0.05, 0.3)
    min_duration_s: float = 0.5
    peak_dbfs: tuple[float, float] = (-28.0, -8.0)  # per-speaker recording level


@dataclass(frozen=True)
class Speaker:
    """One synthetic child: voice settings, error tendency and recording setup."""

    speaker: str
    age: float
    voice: str
    pitch: int
    rate: int
    alpha: float
    severity: float
    disorder: bool
    snr_db: float
    noise_color: str
    rt60_s: float  # 0 = no reverb
    drr_db: float
    bandlimited: bool
    babble_snr_db: float | None
    gain_db: float


def exact_mask(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """Boolean mask with exactly round(share * n) True values, so shares are exact."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: round(share * n)]] = True
    return mask


def make_speakers(rng: np.random.Generator, cfg: Settings) -> list[Speaker]:
    """Draw the speaker panel; younger children get higher pitch, alpha, slower rate."""
    n = cfg.n_speakers
    ages = rng.permutation([AGES[i % len(AGES)] for i in range(n)])
    voices = rng.permutation([VOICES[i % len(VOICES)] for i in range(n)])
    disorder = exact_mask(rng, n, cfg.disorder_share)
    reverb = exact_mask(rng, n, cfg.reverb_share)
    bandlimited = exact_mask(rng, n, cfg.bandlimit_share)
    babble = exact_mask(rng, n, cfg.babble_share)
    speakers = []
    for i in range(n):
        age = float(ages[i])
        youth = (AGES[-1] - age) / (AGES[-1] - AGES[0])  # 1 = youngest, 0 = oldest
        severity = rng.uniform(*cfg.disorder_logit) if disorder[i] else rng.normal(0.0, 0.5)
        speakers.append(
            Speaker(
                speaker=f"s{i + 1:02d}",
                age=age,
                voice=str(voices[i]),
                pitch=int(np.clip(round(80 + 15 * youth + rng.normal(0, 4)), 60, 99)),
                rate=int(round(155 - 65 * youth + rng.normal(0, 6))),
                alpha=float(np.clip(round(1.05 + 0.4 * youth + rng.normal(0, 0.04), 2), 1.0, 1.5)),
                severity=round(float(severity), 2),
                disorder=bool(disorder[i]),
                snr_db=round(float(rng.uniform(*cfg.snr_db)), 1),
                noise_color=str(rng.choice(["white", "pink"])),
                rt60_s=round(float(rng.uniform(*cfg.rt60_s)), 2) if reverb[i] else 0.0,
                drr_db=round(float(rng.uniform(*cfg.drr_db)), 1) if reverb[i] else 0.0,
                bandlimited=bool(bandlimited[i]),
                babble_snr_db=round(float(rng.uniform(*cfg.babble_snr_db)), 1) if babble[i] else None,
                gain_db=round(float(rng.uniform(*cfg.peak_dbfs)), 1),
            )
        )
    return speakers


def error_probability(spk: Speaker, word: Word, cfg: Settings) -> float:
    """P(abnormal): falls with age past the word's mastery age, raised by severity."""
    logit = cfg.error_bias + cfg.age_slope * (word.mastery_age - spk.age) + spk.severity
    return float(1.0 / (1.0 + np.exp(-logit)))


def production(word: Word, abnormal: bool, compound: bool) -> tuple[str, str]:
    """Phonemes and error type of one production; compound errors only where the word has one."""
    if not abnormal:
        return word.normal, "none"
    if compound and word.compound:
        return word.compound, f"{word.error_type}+{word.compound_extra}"
    return word.abnormal, word.error_type


def espeak(text: str, voice: str, pitch: int, rate: int, tmp: Path) -> tuple[np.ndarray, int]:
    """Render one utterance with the espeak-ng CLI (one call per clip keeps it deterministic).

    voice is the full espeak-ng voice, language and variant (`en-us+f3`).
    """
    wav = tmp / "utt.wav"
    cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate)]
    subprocess.run([*cmd, "-w", str(wav), text], check=True, capture_output=True)
    x, sr = sf.read(wav, dtype="float64")
    return x, sr


def trim(x: np.ndarray, rel: float = 1e-3) -> np.ndarray:
    """Drop espeak-ng's own leading/trailing silence so padding is under our control."""
    idx = np.flatnonzero(np.abs(x) > rel * np.max(np.abs(x)))
    return x[idx[0] : idx[-1] + 1] if idx.size else x


def resample(x: np.ndarray, sr_in: float, sr_out: int) -> np.ndarray:
    """Polyphase resampling by a rational approximation of sr_out / sr_in."""
    ratio = Fraction(sr_out / sr_in).limit_denominator(1000)
    if ratio == 1:
        return x
    return resample_poly(x, ratio.numerator, ratio.denominator)


def vocal_tract(x: np.ndarray, sr: int, alpha: float) -> np.ndarray:
    """Play x alpha times faster at SR: pitch, formants and tempo all scale by alpha."""
    return resample(x, sr * alpha, SR)


def room_ir(rng: np.random.Generator, rt60_s: float, drr_db: float) -> np.ndarray:
    """Synthetic room: a direct path plus exponentially decaying noise (60 dB at rt60)."""
    t = np.arange(int(rt60_s * SR)) / SR
    tail = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60_s)
    tail[: int(0.002 * SR)] = 0.0  # first reflections arrive a couple of ms late
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail**2))
    tail[0] = 1.0
    return tail


def colored_noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    """Unit-power white or (approximately) pink noise."""
    w = rng.standard_normal(n)
    if color == "pink":  # 1/f approximation by a 3-pole IIR (J. O. Smith)
        w = lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                    [1.0, -2.494956002, 2.017265875, -0.522189400], w)  # fmt: skip
    return w / np.sqrt(np.mean(w**2))


def make_babble(tmp: Path, language: Language, seconds: float = 30.0) -> np.ndarray:
    """A long multi-talker babble track (4 overlapping adult voices), unit power."""
    rng = np.random.default_rng(12345)  # fixed: babble is scenery, not part of --seed
    n = int(seconds * SR)
    track = np.zeros(n)
    for talker in range(4):
        stream: list[np.ndarray] = []
        while sum(s.size for s in stream) < n:
            text = language.babble_text[int(rng.integers(len(language.babble_text)))]
            voice = f"{language.voice}+{BABBLE_VOICES[(talker + len(stream)) % len(BABBLE_VOICES)]}"
            x, sr = espeak(text, voice, int(rng.integers(35, 60)), int(rng.integers(150, 190)), tmp)
            x = resample(trim(x), sr, SR)
            stream.append(x / np.sqrt(np.mean(x**2)))
        track += np.roll(np.concatenate(stream)[:n], int(rng.integers(n)))
    return track / np.sqrt(np.mean(track**2))


def render_clip(
    rng: np.random.Generator,
    speech: np.ndarray,
    spk: Speaker,
    babble: np.ndarray,
    cfg: Settings,
) -> np.ndarray:
    """Pad clean speech at SR and pass it through the speaker's room, mic and noise."""
    lead, trail = (int(rng.uniform(*cfg.pad_s) * SR) for _ in range(2))
    trail = max(trail, int(cfg.min_duration_s * SR) - lead - speech.size)
    x = np.concatenate([np.zeros(lead), speech / np.max(np.abs(speech)), np.zeros(trail)])
    speech_power = float(np.mean(speech**2) / np.max(np.abs(speech)) ** 2)
    if spk.babble_snr_db is not None:
        start = int(rng.integers(babble.size - x.size))
        level = np.sqrt(speech_power * 10 ** (-spk.babble_snr_db / 10))
        x = x + level * babble[start : start + x.size]
    if spk.rt60_s > 0:
        x = fftconvolve(x, room_ir(rng, spk.rt60_s, spk.drr_db))[: x.size]
    if spk.bandlimited:
        x = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=SR, output="sos"), x)
    snr_db = spk.snr_db + rng.uniform(-2.0, 2.0)
    x = x + np.sqrt(speech_power * 10 ** (-snr_db / 10)) * colored_noise(rng, x.size, spk.noise_color)
    return x


def write_audio(path: Path, x: np.ndarray, sr: int, stereo: bool) -> None:
    """Write 16-bit PCM at sr; stereo files are dual-mono, which FLAC stores almost free."""
    if sr != SR:
        x = resample(x, SR, sr)
    if stereo:
        x = np.stack([x, x], axis=1)
    x = np.clip(x, -1.0, 32767 / 32768)
    fmt = "FLAC" if path.suffix == ".flac" else "WAV"
    extra = {"compression_level": 1.0} if fmt == "FLAC" else {}  # smallest FLAC, same samples
    sf.write(path, x, sr, subtype="PCM_16", format=fmt, **extra)


def slug(word: str) -> str:
    """File-name-safe form of a word, so paths stay portable."""
    return re.sub(r"[^a-z0-9]+", "_", word.lower()).strip("_")


def generate(out: Path, seed: int, cfg: Settings, language: Language) -> list[dict[str, object]]:
    """Synthesise all clips into out/audio and return the manifest rows."""
    words = language.words
    rng = np.random.default_rng(seed)
    speakers = make_speakers(rng, cfg)
    n_clips = len(speakers) * len(words)
    # Per-file draws with exact shares: label flips, clipping, rate, channels, container.
    flipped = exact_mask(rng, n_clips, cfg.flip_share)
    clipped = exact_mask(rng, n_clips, cfg.clip_share)
    hi_sr = exact_mask(rng, n_clips, cfg.hi_sr_share)
    stereo = exact_mask(rng, n_clips, cfg.stereo_share)
    odd = np.flatnonzero(hi_sr | stereo)
    wav = np.zeros(n_clips, dtype=bool)
    wav[rng.permutation(odd)[: round(cfg.wav_share * n_clips)]] = True

    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    for stale in audio_dir.glob("s[0-9]*_*.*"):  # only files this script names
        if stale.suffix in {".flac", ".wav"}:
            stale.unlink()

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        babble = make_babble(tmp, language)
        for s_idx, spk in enumerate(speakers):
            voice = f"{language.voice}+{spk.voice}"
            for w_idx, word in enumerate(words):
                k = s_idx * len(words) + w_idx
                clip_rng = np.random.default_rng([seed, s_idx, w_idx])
                abnormal = bool(clip_rng.random() < error_probability(spk, word, cfg))
                phonemes, error_type = production(word, abnormal, spk.disorder and cfg.compound_errors)
                raw, raw_sr = espeak(f"[[{phonemes}]]", voice, spk.pitch, spk.rate, tmp)
                x = render_clip(clip_rng, vocal_tract(trim(raw), raw_sr, spk.alpha), spk, babble, cfg)
                gain_db = spk.gain_db + clip_rng.uniform(-3.0, 3.0)
                if clipped[k]:
                    gain_db = clip_rng.uniform(3.0, 8.0)  # drive the peak past full scale
                x = x / np.max(np.abs(x)) * 10 ** (gain_db / 20)
                sr = HI_SR if hi_sr[k] else SR
                rel = f"audio/{spk.speaker}_{slug(word.word)}.{'wav' if wav[k] else 'flac'}"
                write_audio(out / rel, x, sr, bool(stereo[k]))
                label = abnormal != bool(flipped[k])
                rows.append(
                    {
                        "path": rel,
                        "label": "abnormal" if label else "normal",
                        "age": spk.age,
                        "word": word.word,
                        "speaker": spk.speaker,
                        "error_type": error_type,
                        "phonemes": phonemes,
                        "label_flipped": int(flipped[k]),
                        "severity": spk.severity,
                        "disorder": int(spk.disorder),
                        "voice": spk.voice,
                        "pitch": spk.pitch,
                        "rate": spk.rate,
                        "alpha": spk.alpha,
                        "snr_db": spk.snr_db,
                        "noise": spk.noise_color,
                        "reverb": int(spk.rt60_s > 0),
                        "rt60_s": spk.rt60_s,
                        "bandlimited": int(spk.bandlimited),
                        "babble": int(spk.babble_snr_db is not None),
                        "babble_snr_db": "" if spk.babble_snr_db is None else spk.babble_snr_db,
                        "peak_dbfs": round(min(gain_db, 0.0), 1),
                        "clipped": int(clipped[k]),
                        "sample_rate": sr,
                        "channels": 2 if stereo[k] else 1,
                        "duration_s": round(x.size / SR, 3),
                    }
                )
    return rows


def write_manifest(path: Path, rows: list[dict[str, object]]) -> None:
    """UTF-8 CSV with LF line ends, so the committed file is the same on every OS."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the repo's data/demo)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default: 0)")
    parser.add_argument("--speakers", type=int, default=Settings.n_speakers, help="number of speakers (default: 48)")
    parser.add_argument(
        "--language", default="en", help=f"word table and voice: {', '.join(LANGUAGES)} (default: en, the bundled set)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.language not in LANGUAGES:
        print(f"error: --language {args.language!r} is not one of: {', '.join(LANGUAGES)}", file=sys.stderr)
        return 2
    if shutil.which("espeak-ng") is None:
        print("error: espeak-ng not found on PATH; install it (Debian: apt-get install espeak-ng)", file=sys.stderr)
        return 2
    cfg = Settings(n_speakers=args.speakers)
    start = time.monotonic()
    rows = generate(args.out, args.seed, cfg, LANGUAGES[args.language])
    write_manifest(args.out / "manifest.csv", rows)
    n_abn = sum(r["label"] == "abnormal" for r in rows)
    print(
        f"wrote {len(rows)} clips ({n_abn} abnormal) from {cfg.n_speakers} speakers "
        f"to {args.out} in {time.monotonic() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
