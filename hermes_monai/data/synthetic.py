"""Embedded default dataset: synthetic breast-ultrasound-like images with lesion masks and classes.

The bundle runs end to end without downloads by generating this dataset on first use
(:func:`ensure_synthetic_dataset`). Each image is grey uint8 PNG ``images/us_NNNN.png`` with one
hypoechoic lesion; its mask ``masks/us_NNNN.png`` (0 / 255) is the lesion shape exactly. The
datalist ``datalist.json`` lists the splits ``labeled`` / ``unlabeled`` / ``validation`` /
``test`` with paths relative to the dataset folder (unlabeled entries carry only ``"image"``,
and no mask file is written for them, so nothing can leak into training).

Image model (all vectorised numpy, ~1 ms per 128x128 image):

* tissue: horizontal layered texture (noise smoothed far more along x than y, plus a wavy
  sinusoidal layering), multiplied by Rayleigh speckle smoothed slightly (laterally elongated
  grain) and a depth attenuation ``exp(-alpha * depth)``; half the images get a dark
  curvilinear-probe fan (sector) edge.
* lesion: a star-shaped region ``rho < r(theta)`` around an ellipse whose width is 12-30 % of the
  image width, placed away from the borders (always fully inside the fan); inside it the echo
  level drops to 15-40 % of the tissue and the speckle is weaker.
* class cues, drawn from overlapping distributions so the task is learnable but not trivial:

  ============  ============================  ===================================
  cue           benign (0)                    malignant (1)
  ============  ============================  ===================================
  boundary      smooth; 15 % slightly          lobulated (harmonics 2-7) + spikes;
                irregular                      20 % fairly round
  aspect        wider than tall (h/w 0.45-0.9) taller tendency (h/w 0.85-1.4)
  margin        sharp                          blurred
  posterior     acoustic enhancement           shadowing
  ============  ============================  ===================================

``difficulty`` (0: the images above, byte for byte) moves lesions toward the tissue's echo level
(iso-echoic lesions, whose borders the weaker speckle inside still marks), so that segmentation needs more
labels; the class cues stay as above. Masks and classes are unchanged. Generator version 2 also added fat
lobules, acoustic shadows from above and class marks; measured, they left a from-scratch classifier at chance
even with every label, and version 3 dropped them (docs/benchmarks.md, "The embedded dataset, version 3").
Between 1 and 2 (generator version 4) a share ``(difficulty - 1) / 2`` of the lesions changes appearance,
independently of the class: half of them hyperechoic (brighter than the tissue), half complex (cystic spaces
and echogenic parts inside), as real lesions are; a model must see enough of each kind to find them all.
Everything else of a case (shape, position, cues, iso-echo) is that of ``difficulty`` 1.

Randomness: one ``numpy.random.SeedSequence(seed)`` spawns a stream for the split layout and
one per image, so output is byte-identical for a seed. Classes are balanced within each split
(exactly half/half for an even count; the extra item of an odd count is benign). File numbers
are a random permutation across splits so an index reveals nothing.

Re-use: if ``datalist.json`` exists with the same generator parameters (its ``meta``) and all
referenced files exist, it is returned without regenerating; otherwise the dataset is
regenerated (old ``us_*.png`` files in ``images/`` and ``masks/`` are removed first) and the
datalist is written last, atomically, so an interrupted run is never mistaken for a finished one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from hermes_monai.data.datalist import write_datalist

__all__ = ["generate_synthetic_dataset", "ensure_synthetic_dataset", "render_case", "CLASS_NAMES"]

CLASS_NAMES: tuple[str, str] = ("benign", "malignant")
GENERATOR_NAME = "hermes_monai.data.synthetic"
# 3: difficulty moves lesions toward iso-echoic only (2 also added lobules, shadows and class marks);
# 4: difficulty above 1 adds hyperechoic and complex lesions; difficulty 0 images are version 1's, and
# difficulty in (0, 1] version 3's, byte for byte
GENERATOR_VERSION = 4
MAX_DIFFICULTY = 2.0
SPLITS: tuple[str, ...] = ("labeled", "unlabeled", "validation", "test")

# Fan geometry (normalised coordinates, y down): apex above the image, 50 deg half-angle; at
# depth y >= 0.1 it spans x in [0.083, 0.917], and lesions are kept inside x in [0.1, 0.9], y >= 0.1.
_FAN_APEX = (0.5, -0.25)
_FAN_HALF_ANGLE = np.deg2rad(50.0)
_R_MAX = 1.35  # boundary radius clip (relative to the ellipse), bounds the lesion extent


def _shape_params(rng: np.random.Generator, cls: int) -> dict[str, Any]:
    """Draw the lesion/cue parameters for one case of class ``cls`` (0 benign, 1 malignant)."""
    width = rng.uniform(0.12, 0.30)
    a = width / 2
    if cls == 0:
        aspect = rng.uniform(0.45, 0.9) if rng.random() < 0.85 else rng.uniform(0.9, 1.15)
        irregular = rng.random() < 0.15
        level = rng.uniform(0.04, 0.09) if irregular else rng.uniform(0.0, 0.035)
        harmonics = np.arange(2, 6)
        n_spikes = int(rng.integers(1, 3)) if irregular else 0
        spike_amp = (0.05, 0.15)
        margin = rng.uniform(0.01, 0.04) if rng.random() < 0.9 else rng.uniform(0.04, 0.09)
        posterior = rng.uniform(0.3, 0.7) if rng.random() < 0.85 else rng.uniform(-0.15, 0.1)
    else:
        aspect = rng.uniform(0.85, 1.4) if rng.random() < 0.8 else rng.uniform(0.6, 0.9)
        round_ = rng.random() < 0.2
        level = rng.uniform(0.01, 0.05) if round_ else rng.uniform(0.06, 0.14)
        harmonics = np.arange(2, 8)
        n_spikes = int(rng.integers(0, 3)) if round_ else int(rng.integers(3, 10))
        spike_amp = (0.05, 0.15) if round_ else (0.15, 0.45)
        margin = rng.uniform(0.06, 0.16) if rng.random() < 0.8 else rng.uniform(0.02, 0.06)
        posterior = rng.uniform(-0.55, -0.2) if rng.random() < 0.8 else rng.uniform(-0.1, 0.15)
    b = a * aspect
    return {
        "a": a,
        "b": b,
        "tilt": rng.uniform(-0.3, 0.3),
        "harm_k": harmonics,
        "harm_amp": level * rng.uniform(0.4, 1.0, size=harmonics.size),
        "harm_phase": rng.uniform(0, 2 * np.pi, size=harmonics.size),
        "spike_amp": rng.uniform(*spike_amp, size=n_spikes),
        "spike_angle": rng.uniform(0, 2 * np.pi, size=n_spikes),
        "spike_kappa": rng.uniform(40.0, 120.0, size=n_spikes),
        "margin": margin,
        "posterior": posterior,
    }


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float | tuple[float, float]) -> np.ndarray:
    """Gaussian white noise (size, size) smoothed by ``sigma`` (pixels; (y, x) or one for both, periodic
    edges) and scaled to unit standard deviation."""
    field = gaussian_filter(rng.standard_normal((size, size)), sigma=sigma, mode="wrap")
    return field / (field.std() + 1e-8)


def _check_difficulty(difficulty: float) -> None:
    if not 0.0 <= float(difficulty) <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be in [0, {MAX_DIFFICULTY:g}], got {difficulty}")


def _version(difficulty: float) -> int:
    """The generator version whose images ``difficulty`` gives (they are unchanged since then)."""
    return 1 if not difficulty else (3 if difficulty <= 1.0 else GENERATOR_VERSION)


def _iso_echo(rng: np.random.Generator, difficulty: float) -> float:
    """How far ``difficulty`` moves one lesion's echo level toward the tissue's (0: unchanged, 1: iso-echoic):
    ``difficulty × U[0.5, 0.9]`` for half the lesions, ``difficulty × U[0, 0.4]`` for the others."""
    d = min(float(difficulty), 1.0)
    return d * (rng.uniform(0.5, 0.9) if rng.random() < 0.5 else rng.uniform(0.0, 0.4))


def _appearance(
    rng: np.random.Generator, difficulty: float, tissue: np.ndarray, lesion_level: np.ndarray, px: float
) -> np.ndarray:
    """The lesion's echo level (S, S) after the appearance draw of ``difficulty`` above 1: with probability
    ``(difficulty - 1) / 4`` hyperechoic (1.25-1.6 x the tissue), with the same probability complex (smooth
    noise splits it into anechoic cystic spaces and echogenic parts at 0.9-1.3 x the tissue), else
    unchanged."""
    share = (float(difficulty) - 1.0) / 4.0
    draw = rng.random()
    if draw < share:
        return tissue * rng.uniform(1.25, 1.6)
    if draw < 2 * share:
        blobs = _smooth_noise(rng, tissue.shape[0], 2.5 * px)
        cyst = 1.0 / (1.0 + np.exp(-4.0 * (blobs - 0.5)))
        return (1.0 - cyst) * tissue * rng.uniform(0.9, 1.3) + cyst * 0.05
    return lesion_level


def render_case(
    rng: np.random.Generator, cls: int, size: int = 128, difficulty: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic ultrasound image and its lesion mask.

    Args:
        rng: random generator (consumed).
        cls: 0 benign, 1 malignant.
        size: output side length in pixels.
        difficulty: in [0, 2]; 0 is the original image model (byte-identical output). Above 0, drawn after
            every other random number of the case: the lesion's echo moved toward the tissue's
            (:func:`_iso_echo`, at most as far as at 1); above 1, drawn after that, the lesion's appearance
            (:func:`_appearance`).

    Returns:
        ``(image, mask)``, both uint8 of shape (size, size); the mask is 0 / 255.
    """
    _check_difficulty(difficulty)
    s = size
    coords = (np.arange(s, dtype=np.float64) + 0.5) / s
    y, x = coords[:, None], coords[None, :]  # (S, 1) depth, (1, S) lateral
    px = s / 128.0  # pixel scale so textures look alike at every size

    # --- tissue: layered texture -------------------------------------------------------------
    streaks = _smooth_noise(rng, s, (1.2 * px, 10.0 * px))
    freq, phase = rng.uniform(2.0, 6.0), rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * (freq * y + 0.04 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * x)) + phase)
    tissue = 0.55 + 0.09 * streaks + 0.07 * wave
    tissue = tissue + 0.12 * (y < rng.uniform(0.03, 0.07))  # bright skin line

    # --- lesion geometry ---------------------------------------------------------------------
    p = _shape_params(rng, cls)
    a, b = p["a"], p["b"]
    extent = _R_MAX * max(a, b)
    cx = rng.uniform(0.10 + extent, 0.90 - extent)
    cy = rng.uniform(0.10 + extent, min(0.75, 0.92 - extent))
    cos_t, sin_t = np.cos(p["tilt"]), np.sin(p["tilt"])
    dx, dy = x - cx, y - cy
    u = (dx * cos_t + dy * sin_t) / a
    v = (-dx * sin_t + dy * cos_t) / b
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)[..., None]  # (S, S, 1) to broadcast over harmonics / spikes
    radius = 1.0 + (p["harm_amp"] * np.cos(p["harm_k"] * theta + p["harm_phase"])).sum(-1)
    radius += (p["spike_amp"] * np.exp(p["spike_kappa"] * (np.cos(theta - p["spike_angle"]) - 1))).sum(-1)
    radius = np.clip(radius, 0.35, _R_MAX)
    dist = rho - radius  # < 0 inside, in units of the ellipse radius
    mask = dist < 0
    weight = 0.5 * (1.0 - np.tanh(dist / (2.0 * p["margin"])))  # logistic soft edge, 0.5 on the mask edge

    # --- posterior enhancement / shadowing below the lesion -----------------------------------
    rows = np.arange(s)[:, None]
    cols_hit = mask.any(axis=0)
    bottom = np.where(cols_hit, s - 1 - np.argmax(mask[::-1], axis=0), s)  # last lesion row per column
    ellipse_bottom = (cy + b) * s
    bottom = np.where(cols_hit, bottom, ellipse_bottom)
    lateral = gaussian_filter1d(cols_hit.astype(np.float64), sigma=1.5 * px)
    below = (rows - bottom[None, :]) / s
    decay = rng.uniform(0.15, 0.35)
    band = lateral[None, :] * np.exp(-np.clip(below, 0, None) / decay) / (1 + np.exp(-below * s / (1.5 * px)))
    posterior = 1.0 + p["posterior"] * band

    # --- compose: echo level x speckle x attenuation ------------------------------------------
    lesion_level = rng.uniform(0.15, 0.45) * 0.55 * (1 + 0.05 * streaks)
    speckle = gaussian_filter(rng.rayleigh(1.0, (s, s)), sigma=(0.5 * px, 0.9 * px), mode="wrap")
    speckle /= speckle.mean()
    speckle = 1 + (speckle - 1) * (1 - 0.4 * weight)
    attenuation = np.exp(-rng.uniform(0.5, 1.1) * y)
    gain = rng.uniform(0.9, 1.2)
    fan = rng.random() < 0.5  # curvilinear probe: dark outside the fan, soft edge
    if difficulty > 0:
        lesion_level = lesion_level + _iso_echo(rng, difficulty) * (tissue - lesion_level)
    if difficulty > 1:
        lesion_level = _appearance(rng, difficulty, tissue, lesion_level, px)
    echo = (tissue * (1 - weight) + lesion_level * weight) * posterior
    img = echo * speckle * attenuation * gain
    if fan:
        ax, ay = _FAN_APEX
        angle = np.abs(np.arctan2(x - ax, y - ay))
        img = img / (1 + np.exp((angle - _FAN_HALF_ANGLE) * 60.0))

    image = np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)
    return image, mask.astype(np.uint8) * 255


def _meta(
    num_labeled: int,
    num_unlabeled: int,
    num_validation: int,
    num_test: int,
    image_size: int,
    seed: int,
    difficulty: float = 0.0,
) -> dict[str, Any]:
    # difficulty 0 writes the meta of datasets generated before the knob existed (version 1), so they stay
    # reusable; a hardened dataset of an older version is regenerated
    extra = {"difficulty": float(difficulty)} if difficulty else {}
    return {
        "generator": GENERATOR_NAME,
        "version": _version(difficulty),
        "num_labeled": int(num_labeled),
        "num_unlabeled": int(num_unlabeled),
        "num_validation": int(num_validation),
        "num_test": int(num_test),
        "image_size": int(image_size),
        "seed": int(seed),
        "class_names": list(CLASS_NAMES),
        **extra,
    }


def _reusable(datalist_path: Path, meta: dict[str, Any]) -> bool:
    """True when ``datalist_path`` was written with ``meta`` and all its files are present."""
    if not datalist_path.is_file():
        return False
    try:
        data = json.loads(datalist_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(data, dict) or data.get("meta") != meta:
        return False
    root = datalist_path.parent
    for split in SPLITS:
        for entry in data.get(split, []):
            for key in ("image", "label"):
                if key in entry and not (root / entry[key]).is_file():
                    return False
    return True


def generate_synthetic_dataset(
    output_dir: str | Path,
    num_labeled: int = 40,
    num_unlabeled: int = 200,
    num_validation: int = 40,
    num_test: int = 60,
    image_size: int = 128,
    seed: int = 0,
    difficulty: float = 0.0,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic dataset (images, masks, ``datalist.json``) into ``output_dir``.

    Args:
        output_dir: dataset folder (created if needed).
        num_labeled / num_unlabeled / num_validation / num_test: images per split.
        image_size: side length of the square images.
        seed: seed of the numpy generator; same seed and parameters give identical bytes.
        difficulty: in [0, 2], see :func:`render_case` (0: the original images).
        overwrite: regenerate even when a matching dataset exists.

    Returns:
        Path of ``datalist.json``.
    """
    counts = {
        "labeled": num_labeled,
        "unlabeled": num_unlabeled,
        "validation": num_validation,
        "test": num_test,
    }
    if any(int(n) < 0 for n in counts.values()):
        raise ValueError(f"split sizes must be >= 0, got {counts}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    root = Path(output_dir)
    datalist_path = root / "datalist.json"
    _check_difficulty(difficulty)  # before anything on disk is touched
    meta = _meta(num_labeled, num_unlabeled, num_validation, num_test, image_size, seed, difficulty)
    if not overwrite and _reusable(datalist_path, meta):
        return datalist_path

    image_dir, mask_dir = root / "images", root / "masks"
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    datalist_path.unlink(missing_ok=True)  # never leave a datalist describing half-written files
    for stale in [*image_dir.glob("us_*.png"), *mask_dir.glob("us_*.png")]:
        stale.unlink()

    total = sum(int(n) for n in counts.values())
    layout_seq, *case_seqs = np.random.SeedSequence(seed).spawn(total + 1)
    layout_rng = np.random.default_rng(layout_seq)
    split_of = np.concatenate([np.full(int(n), i) for i, n in enumerate(counts.values())]).astype(int)
    class_of = np.concatenate(
        [layout_rng.permutation(np.arange(int(n)) >= (int(n) + 1) // 2).astype(int) for n in counts.values()]
    )
    number_of = layout_rng.permutation(total) + 1  # file number of each item
    width = max(4, len(str(total)))

    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in counts}
    for item in np.argsort(number_of, kind="stable"):  # render in file-number order
        split = SPLITS[split_of[item]]
        cls = int(class_of[item])
        image, mask = render_case(np.random.default_rng(case_seqs[item]), cls, image_size, difficulty)
        name = f"us_{int(number_of[item]):0{width}d}.png"
        Image.fromarray(image).save(image_dir / name)
        entry: dict[str, Any] = {"image": f"images/{name}"}
        if split != "unlabeled":
            Image.fromarray(mask).save(mask_dir / name)
            entry.update({"label": f"masks/{name}", "class": cls})
        splits[split].append(entry)
    return write_datalist(datalist_path, splits, meta)


def ensure_synthetic_dataset(dataset_dir: str | Path, **kwargs: Any) -> Path:
    """Generate the synthetic dataset in ``dataset_dir`` unless a matching one is already there.

    Same keyword arguments as :func:`generate_synthetic_dataset` (``overwrite`` is forced off);
    returns the path of ``datalist.json``.
    """
    kwargs.pop("overwrite", None)
    return generate_synthetic_dataset(dataset_dir, overwrite=False, **kwargs)
