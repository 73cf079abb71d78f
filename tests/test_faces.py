"""Tests for forensics.faces: pure geometry/tracking units, then MTCNN on real photos and video.

Real data lives in ../shared/data (read in place); tests that need it skip when it is absent.
Images are loaded with PIL here, not forensics.media, so these tests depend on faces.py only.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from forensics import mtcnn as mtcnn_pass
from forensics.core import MediaError
from forensics.faces import (
    Face,
    FaceCrop,
    FaceDetector,
    box_iou,
    crop_face,
    crop_faces,
    face_region,
    fit_region,
    landmark_box,
    resize_square,
    square_crop_box,
    track_faces,
    whole_image_crop,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# Faces a person counts when looking at the photos (checked by eye):
#   couple.jpg: 2 (a woman and a man, both large and frontal).
#   selfie-many-people.jpg: 7 people; 6 faces clearly visible (blonde woman at the left edge,
#     the woman in the centre-left, the bearded man, the man in the centre, the man with glasses
#     cut by the right edge, the big smiling man at the bottom right cut by the right edge) plus
#     a woman at the bottom-left corner of whom only half a face is in the picture.
#   multiface.jpg: 6 people sitting on steps, all faces clearly visible.
GROUP_PHOTOS = [
    # (path, clearly visible faces, most faces a sane detector may report)
    ("photos/deepface/couple.jpg", 2, 3),
    ("photos/deepface/selfie-many-people.jpg", 6, 8),
    ("photos/facenet/multiface.jpg", 6, 7),
]

# No dataset photo is faceless, so faceless real-world images are taken from CASIA v1 authentic
# photos that were checked by eye to contain no person, animal or carved face (flowers, a sea of
# clouds, a patio with a wicker chair, a river, a thatched cottage, a jetty with a boat) plus a
# crop of multiface.jpg with only the iron railing, window and stone wall to the right of the
# people (x 820..1200, y 0..360: clear of every head). Railing scrolls and foliage are the kind
# of texture that produces false faces.
FACELESS_CASIA = [
    "tamper/casia1/Sp_D_CND_A_pla0005_pla0023_0281_authentic.png",
    "tamper/casia1/Sp_D_CRN_A_nat0077_nat0067_0387_authentic.png",
    "tamper/casia1/Sp_D_NND_A_art0040_arc0079_0600_authentic.png",
    "tamper/casia1/Sp_S_NNN_A_nat0041_nat0041_0208_authentic.png",
    "tamper/casia1/Sp_S_NNN_A_sec0013_sec0013_0036_authentic.png",
    "tamper/casia1/Sp_S_NNN_A_sec0038_sec0038_0039_authentic.png",
]
FACELESS_CROP = ("photos/facenet/multiface.jpg", (820, 0, 1200, 360))

VIDEO = "video/hamilton_clip.mp4"


def data_file(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} (../shared/data is absent on this machine)")
    return path


def load_rgb(relative: str) -> np.ndarray:
    return np.asarray(Image.open(data_file(relative)).convert("RGB"))


def face(box, frame: int = 0, confidence: float = 0.99) -> Face:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    marks = [(cx - 5, cy - 5), (cx + 5, cy - 5), (cx, cy), (cx - 4, cy + 5), (cx + 4, cy + 5)]
    return Face(box=tuple(float(v) for v in box), confidence=confidence, landmarks=marks, frame=frame)


def gradient_image(h: int, w: int) -> np.ndarray:
    """Every pixel distinct enough to tell where a crop came from; nothing is black."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([40 + xx % 200, 40 + yy % 200, np.full_like(xx, 128)], axis=-1).astype(np.uint8)


# --------------------------------------------------------------------------- pure units


def test_face_properties_and_to_dict_are_plain_json():
    f = Face(
        box=(10.04, 20.06, 110.56, 170.0),
        confidence=0.987654321,
        landmarks=[(np.float32(30.123), np.float32(40.987))] * 5,
        frame=np.int64(3),
        track=np.int64(1),
    )
    assert f.width == pytest.approx(100.52)
    assert f.height == pytest.approx(149.94)
    assert f.size == pytest.approx(100.52)
    d = f.to_dict()
    assert d["box"] == [10.0, 20.1, 110.6, 170.0]
    assert d["confidence"] == 0.9877
    assert d["frame"] == 3 and d["track"] == 1
    assert len(d["landmarks"]) == 5 and d["landmarks"][0] == [30.1, 41.0]
    # Must survive the standard json module without a custom encoder (numpy scalars would not).
    assert json.loads(json.dumps(d)) == d
    assert Face(box=(0, 0, 1, 1), confidence=0.5, landmarks=[]).to_dict()["track"] is None


def test_square_crop_box_is_square_with_margin_and_centred():
    box = (100.0, 100.0, 140.0, 180.0)  # w 40, h 80, centre (120, 140)
    x0, y0, x1, y1 = square_crop_box(box, (1000, 1000, 3), margin=0.5)
    assert x1 - x0 == y1 - y0 == 120  # max(w, h) * 1.5
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == (120, 140)
    assert square_crop_box(box, (1000, 1000), margin=0.0) == (80, 100, 160, 180)
    assert all(isinstance(v, int) for v in square_crop_box(box, (1000, 1000)))


def test_square_crop_box_is_shifted_inside_the_image_when_it_fits():
    # A face at the top-left corner: the square would start at negative coordinates.
    assert square_crop_box((0, 0, 50, 50), (200, 300, 3), margin=0.3) == (0, 0, 65, 65)
    # At the bottom-right corner (image 200 high, 300 wide).
    assert square_crop_box((250, 150, 300, 200), (200, 300, 3), margin=0.3) == (235, 135, 300, 200)


def test_square_crop_box_stays_centred_when_larger_than_the_image():
    # Side 130 on a 100x100 image: cannot fit, stays centred on the face (50, 50).
    assert square_crop_box((0, 0, 100, 100), (100, 100, 3), margin=0.3) == (-15, -15, 115, 115)
    # Fits horizontally (image 300 wide) but not vertically (100 high): shifted in x only.
    x0, y0, x1, y1 = square_crop_box((0, 0, 100, 100), (100, 300, 3), margin=0.3)
    assert (x0, x1) == (0, 130)
    assert (y0, y1) == (-15, 115)


def test_crop_face_takes_the_square_and_resizes_it():
    img = gradient_image(300, 400)
    f = face((150, 100, 200, 160))  # w 50, h 60 -> side 78 with margin 0.3, fully inside
    crop = crop_face(img, f, 64)
    assert isinstance(crop, FaceCrop) and crop.face is f and crop.fallback is False
    assert crop.image.shape == (64, 64, 3) and crop.image.dtype == np.uint8
    x0, y0, x1, y1 = crop.crop_box
    assert x1 - x0 == y1 - y0 == 78
    expected = cv2.resize(img[y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop.image, expected)
    # Enlarging (78 -> 256) gives the right size too and roughly the same picture.
    big = crop_face(img, f, 256)
    assert big.image.shape == (256, 256, 3)
    small_again = cv2.resize(big.image, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(small_again.astype(int) - expected.astype(int)).mean() < 3


def test_crop_face_pads_black_outside_the_image():
    img = gradient_image(100, 100)  # no black pixel anywhere
    crop = crop_face(img, face((0, 0, 100, 100)), 130, margin=0.3)  # square (-15,-15)-(115,115)
    assert crop.crop_box == (-15, -15, 115, 115)
    out = crop.image
    assert out.shape == (130, 130, 3)
    # 15-pixel black frame on every side, the whole image untouched inside it.
    assert out[:15].max() == 0 and out[-15:].max() == 0
    assert out[:, :15].max() == 0 and out[:, -15:].max() == 0
    np.testing.assert_array_equal(out[15:115, 15:115], img)


def test_crop_faces_keeps_order():
    img = gradient_image(200, 200)
    faces = [face((10, 10, 60, 60)), face((120, 120, 180, 190))]
    crops = crop_faces(img, faces, 32)
    assert [c.face for c in crops] == faces
    assert all(c.image.shape == (32, 32, 3) for c in crops)
    assert crops[0].crop_box != crops[1].crop_box


def test_landmark_box_frames_a_face_by_its_landmarks_whatever_the_box():
    # Eyes 40 apart at y 100, mouth 44 below them: span max(40, 44) = 44 -> side 44 / 0.40 = 110,
    # centred halfway between the eyes' centre (100, 100) and the mouth's (100, 144).
    marks = [(80, 100), (120, 100), (100, 122), (88, 144), (112, 144)]
    expected = (45.0, 67.0, 155.0, 177.0)
    for box in [(50, 60, 150, 190), (70, 90, 130, 160), (40, 30, 170, 180)]:  # tight, loose, shifted
        f = Face(box=box, confidence=0.99, landmarks=marks)
        assert landmark_box(f) == pytest.approx(expected)
        assert face_region(f, "landmarks") == pytest.approx(expected)
        assert face_region(f, "box") == box
    # Twice the face, twice the region: framing scales with the face, not with the box.
    double = Face(box=(100, 120, 300, 380), confidence=0.99, landmarks=[(2 * x, 2 * y) for x, y in marks])
    assert landmark_box(double) == pytest.approx(tuple(2 * v for v in expected))
    # A turned head (eyes 10 apart): the eyes-to-mouth distance keeps the size.
    turned = Face(box=(50, 60, 150, 190), confidence=0.99,
                  landmarks=[(95, 100), (105, 100), (100, 122), (92, 144), (108, 144)])
    x0, y0, x1, y1 = landmark_box(turned)
    assert x1 - x0 == pytest.approx(110.0) and (y0 + y1) / 2 == pytest.approx(122.0)
    # Bad landmarks cannot blow the crop up or shrink it away: 0.6..1.6 box sides.
    far = Face(box=(0, 0, 100, 100), confidence=0.99, landmarks=[(0, 0), (400, 0), (200, 10), (190, 20), (210, 20)])
    assert landmark_box(far)[2] - landmark_box(far)[0] == pytest.approx(160.0)
    tiny = Face(box=(0, 0, 100, 100), confidence=0.99, landmarks=[(50, 50)] * 5)
    assert landmark_box(tiny)[2] - landmark_box(tiny)[0] == pytest.approx(60.0)
    # No landmarks (or NaNs): the box.
    assert landmark_box(Face(box=(1, 2, 3, 4), confidence=0.9, landmarks=[])) == (1, 2, 3, 4)
    assert landmark_box(Face(box=(1, 2, 3, 4), confidence=0.9, landmarks=[(np.nan, 1)] * 5)) == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="face framing must be one of box, landmarks, got 'ears'"):
        face_region(Face(box=box, confidence=0.99, landmarks=marks), "ears")


def test_crop_face_with_landmark_framing_squares_the_landmark_region():
    img = gradient_image(400, 400)
    marks = [(180, 200), (220, 200), (200, 222), (188, 244), (212, 244)]  # landmark square side 110
    f = Face(box=(160, 170, 240, 270), confidence=0.99, landmarks=marks)
    crop = crop_face(img, f, 64, margin=0.2, framing="landmarks")
    assert crop.crop_box == square_crop_box(landmark_box(f), img.shape, 0.2)
    x0, y0, x1, y1 = crop.crop_box
    assert x1 - x0 == y1 - y0 == 132  # 110 * 1.2
    assert crop.crop_box != crop_face(img, f, 64, margin=0.2).crop_box
    assert [c.crop_box for c in crop_faces(img, [f], 64, 0.2, "landmarks")] == [crop.crop_box]


def test_crop_face_cuts_as_the_training_crops_were_cut_when_asked():
    """`cut_size` cuts the square at that side and then resizes it to the input (the crop cache's two
    resizes); `fit_inside` shrinks a landmark square larger than the image to its shorter side and lowers
    the margin so the square fits, instead of padding black: the crop cache's own rule, so a model
    trained on its crops sees the app's faces cut the same way."""
    img = gradient_image(200, 160)  # h 200, w 160: no black pixel anywhere
    marks = [(50, 90), (110, 90), (80, 120), (55, 160), (105, 160)]  # landmark square side 175 > 160
    f = Face(box=(30, 50, 130, 190), confidence=0.99, landmarks=marks)
    padded = crop_face(img, f, 64, margin=0.1, framing="landmarks")
    assert padded.image.min() == 0  # black outside the image
    fitted = crop_face(img, f, 64, margin=0.1, framing="landmarks", fit_inside=True)
    x0, y0, x1, y1 = fitted.crop_box
    assert x1 - x0 == y1 - y0 == 160 and x0 >= 0 and y0 >= 0 and x1 <= 160 and y1 <= 200
    assert fitted.image.min() > 0
    region, margin = fit_region(landmark_box(f), img.shape, 0.1)
    assert region[2] - region[0] == pytest.approx(160.0) and margin == 0.0
    assert fitted.margin == 0.0 and padded.margin == pytest.approx(0.1)  # the margin each was cut with
    via = crop_face(img, f, 64, margin=0.1, framing="landmarks", cut_size=96, fit_inside=True)
    np.testing.assert_array_equal(via.image, resize_square(crop_face(img, f, 96, 0.1, "landmarks", fit_inside=True).image, 64))
    assert via.crop_box == fitted.crop_box and via.image.shape == (64, 64, 3)
    noisy = np.random.default_rng(0).integers(0, 256, (200, 160, 3), dtype=np.uint8)  # a gradient resizes alike
    assert not np.array_equal(crop_face(noisy, f, 64, 0.1, "landmarks", 96, True).image,
                              crop_face(noisy, f, 64, 0.1, "landmarks", fit_inside=True).image)  # two resizes are not one
    assert [c.crop_box for c in crop_faces(img, [f], 64, 0.1, "landmarks", 96, True)] == [via.crop_box]
    # A square that fits already is left alone; the box framing is never shrunk, only its margin lowered.
    inside = crop_face(gradient_image(400, 400), f, 64, 0.1, "landmarks", fit_inside=True)
    assert inside.crop_box == crop_face(gradient_image(400, 400), f, 64, 0.1, "landmarks").crop_box
    assert fit_region((0, 0, 150, 150), (100, 100), 0.3, shrink=False) == ((0, 0, 150, 150), 0.0)
    # A model folder says how its faces are cut (config.json's forensics block); bad values are refused.
    from forensics.core import DetectorError
    from forensics.detectors.base import DetectorInfo

    base = {"name": "x", "labels": ["real", "fake"], "face_margin": 0.0, "face_framing": "landmarks"}
    assert DetectorInfo.from_dict({**base, "crop_size": 256, "fit_inside": True}).crop_options() == {
        "margin": 0.0, "framing": "landmarks", "cut_size": 256, "fit_inside": True}
    assert DetectorInfo.from_dict(base).crop_options()["cut_size"] is None  # older folders: straight to the input
    for bad, message in (({"crop_size": 8}, "crop_size 8 must be a whole number of pixels from 16 to 4096"),
                         ({"crop_size": "256"}, "crop_size '256' must be"), ({"crop_size": 25.5}, "crop_size 25.5"),
                         ({"fit_inside": "yes"}, "fit_inside 'yes' must be true or false")):
        with pytest.raises(DetectorError, match=message):
            DetectorInfo.from_dict({**base, **bad})


def test_whole_image_crop_is_the_centre_square():
    img = gradient_image(200, 300)
    crop = whole_image_crop(img, 100)
    assert crop.fallback is True and crop.face is None
    assert crop.crop_box == (50, 0, 250, 200)
    assert crop.image.shape == (100, 100, 3) and crop.image.dtype == np.uint8
    expected = cv2.resize(img[:, 50:250], (100, 100), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop.image, expected)
    portrait = whole_image_crop(gradient_image(300, 200), 50)
    assert portrait.crop_box == (0, 50, 200, 250)


def test_box_iou_hand_computed():
    a = (0, 0, 10, 10)
    assert box_iou(a, a) == 1.0
    assert box_iou(a, (20, 20, 30, 30)) == 0.0
    assert box_iou(a, (10, 0, 20, 10)) == 0.0  # touching edges share no area
    assert box_iou(a, (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou(a, (0, 0, 5, 5)) == pytest.approx(25 / 100)
    assert box_iou(a, (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    assert box_iou((5, 0, 15, 10), a) == box_iou(a, (5, 0, 15, 10))


def test_track_faces_two_people_moving_keep_their_ids():
    frames = [
        [face((10 + 5 * t, 10, 60 + 5 * t, 70), t), face((200 - 5 * t, 20, 250 - 5 * t, 80), t)]
        for t in range(5)
    ]
    assert track_faces(frames) == 2
    assert [[f.track for f in fr] for fr in frames] == [[0, 1]] * 5


def test_track_faces_short_absence_keeps_the_id():
    a, b = (0, 0, 50, 50), (100, 0, 150, 50)
    frames = [[face(a), face(b)], [face(a)], [face(a), face(b)]]  # b missing for 1 frame
    assert track_faces(frames, max_gap=2) == 2
    assert frames[2][1].track == frames[0][1].track == 1


def test_track_faces_gap_longer_than_max_gap_starts_a_new_track():
    a, b = (0, 0, 50, 50), (100, 0, 150, 50)
    frames = [[face(a), face(b)], [face(a)], [face(a)], [face(a)], [face(a), face(b)]]
    assert track_faces(frames, max_gap=2) == 3  # b missing for 3 frames > max_gap
    assert frames[0][1].track == 1 and frames[4][1].track == 2
    assert {f.track for fr in frames for f in fr if f.box == a} == {0}
    # The same sequence with a wider max_gap keeps b's id.
    assert track_faces(frames, max_gap=3) == 2
    assert frames[4][1].track == 1


def test_track_faces_new_person_and_ids_in_order_of_appearance():
    a, b, c = (0, 0, 50, 50), (100, 0, 150, 50), (200, 0, 250, 50)
    frames = [[face(b)], [face(a), face(b)], [face(a), face(b), face(c)], []]
    assert track_faces(frames) == 3
    assert [f.track for f in frames[0]] == [0]
    assert [f.track for f in frames[1]] == [1, 0]
    assert [f.track for f in frames[2]] == [1, 0, 2]


def test_track_faces_matches_highest_iou_first_and_respects_threshold():
    frames = [
        [face((0, 0, 100, 100))],
        # Both overlap the track; the second overlaps more and must take the id.
        [face((40, 0, 140, 100)), face((10, 0, 110, 100))],
    ]
    assert track_faces(frames) == 2
    assert frames[1][1].track == 0 and frames[1][0].track == 1
    # Overlap below the threshold is a new person, not the same one.
    weak = [[face((0, 0, 100, 100))], [face((80, 0, 180, 100))]]  # IoU 20/180
    assert track_faces(weak, iou_threshold=0.3) == 2
    assert track_faces(weak, iou_threshold=0.1) == 1


def test_detector_is_cheap_to_build_and_checks_input():
    det = FaceDetector(min_face_size=30, confidence=0.95)
    assert det._mtcnn is None  # MTCNN is only built on first detection
    with pytest.raises(ValueError):
        FaceDetector(confidence=1.5)
    with pytest.raises(ValueError):
        FaceDetector(thresholds=(0.6, 0.7))
    with pytest.raises(MediaError, match="uint8"):
        det.detect(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(MediaError, match="HxWx3"):
        det.detect(np.zeros((50, 50), np.uint8))
    with pytest.raises(MediaError, match="image 1"):
        det.detect_batch([np.zeros((50, 50, 3), np.uint8), np.zeros((50, 50, 4), np.uint8)])
    assert det._mtcnn is None  # bad input is refused before the networks are loaded
    assert det.detect_batch([]) == []


# --------------------------------------------------------------------------- MTCNN, real data


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def group_results(detector) -> dict[str, tuple[np.ndarray, list[Face]]]:
    out = {}
    for rel, _, _ in GROUP_PHOTOS:
        if (DATA / rel).exists():
            img = load_rgb(rel)
            out[rel] = (img, detector.detect(img))
    return out


def test_landmark_framing_frames_faces_of_two_sources_alike(detector):
    """MTCNN's box depends on the picture around the face: on UTKFace's tight 200x200 crops it is
    tighter around the eyes than on FFHQ's full-head images, so box crops of the two sources show
    faces at different sizes. Landmark framing shows them at one size."""
    share = {}
    for source in ("ffhq", "utkface"):
        paths = sorted(data_file(f"faces/real/{source}").glob("*.jpg"))[:6]
        for framing in ("box", "landmarks"):
            ratios = []
            for path in paths:
                img = np.asarray(Image.open(path).convert("RGB"))
                f = max(detector.detect(img), key=lambda f: f.width)
                x0, _, x1, _ = crop_face(img, f, 64, margin=0.0, framing=framing).crop_box
                ratios.append(np.hypot(*np.subtract(f.landmarks[1], f.landmarks[0])) / (x1 - x0))
            share[source, framing] = float(np.median(ratios))
    # measured: eye distance / crop side 0.352 (FFHQ) vs 0.410 (UTKFace) by box; 0.399 vs 0.397 by landmarks
    assert share["utkface", "box"] / share["ffhq", "box"] > 1.10
    assert abs(share["utkface", "landmarks"] / share["ffhq", "landmarks"] - 1) < 0.03
    assert share["ffhq", "landmarks"] == pytest.approx(0.40, abs=0.02)


@pytest.mark.parametrize("rel, expected, most", GROUP_PHOTOS)
def test_mtcnn_finds_every_face_in_group_photos(group_results, rel, expected, most):
    data_file(rel)
    img, faces = group_results[rel]
    h, w = img.shape[:2]
    assert expected <= len(faces) <= most, [f.to_dict() for f in faces]
    assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)  # left to right
    for f in faces:
        x0, y0, x1, y1 = f.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert f.confidence >= 0.9 and f.size >= 40 and f.frame == 0 and f.track is None
        assert len(f.landmarks) == 5
        (lex, ley), (rex, rey), (nx, ny), _, (mrx, mry) = f.landmarks
        assert lex < rex  # image-left eye first
        assert ley < mry and rey < mry  # eyes above the mouth
        assert x0 - 1 <= nx <= x1 + 1 and y0 - 1 <= ny <= y1 + 1  # nose inside the box
    # No two detections of the same face.
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            assert box_iou(faces[i].box, faces[j].box) < 0.3


def test_selfie_faces_cut_by_the_border_are_found(group_results):
    rel = GROUP_PHOTOS[1][0]
    data_file(rel)
    img, faces = group_results[rel]
    w = img.shape[1]
    # The man with glasses and the big smiling man are both cut by the right edge; MTCNN
    # alone misses them, the black detection border (edge_pad) makes them findable.
    at_right_edge = [f for f in faces if f.box[2] >= w - 0.5]
    assert len(at_right_edge) >= 2
    assert max(f.size for f in at_right_edge) > 100


def test_min_face_size_and_confidence_filter(detector, group_results, monkeypatch):
    rel = GROUP_PHOTOS[2][0]
    data_file(rel)
    img, faces = group_results[rel]
    sizes = sorted(f.size for f in faces)
    cut = (sizes[0] + sizes[-1]) / 2  # between the smallest and the largest face
    monkeypatch.setattr(detector, "min_face_size", int(cut))
    big = detector.detect(img)
    # MTCNN's pyramid starts at another scale, so boxes move a little: compare by overlap.
    assert big and len(big) < len(faces)
    assert all(f.size >= int(cut) for f in big)
    assert all(max(box_iou(f.box, g.box) for g in faces) > 0.6 for f in big)
    monkeypatch.setattr(detector, "min_face_size", 40)
    lowest = min(f.confidence for f in faces)
    monkeypatch.setattr(detector, "confidence", (lowest + 1.0) / 2)
    confident = detector.detect(img)
    assert len(confident) < len(faces)
    assert all(f.confidence >= (lowest + 1.0) / 2 for f in confident)


def test_couple_faces_are_one_per_person(group_results):
    rel = GROUP_PHOTOS[0][0]
    data_file(rel)
    img, faces = group_results[rel]
    w = img.shape[1]
    assert len(faces) == 2
    # The woman's face is on the left half, the man's on the right half, both large.
    assert faces[0].box[2] < w * 0.5 < faces[1].box[0]
    assert all(f.size > 400 for f in faces)


def test_faceless_real_photos_find_no_face(detector):
    rel, (cx0, cy0, cx1, cy1) = FACELESS_CROP
    images = [load_rgb(rel)[cy0:cy1, cx0:cx1]] + [load_rgb(p) for p in FACELESS_CASIA]
    assert len({im.shape for im in images}) >= 3  # landscape, portrait and the crop: mixed sizes
    results = detector.detect_batch(images)
    assert results == [[] for _ in images]
    assert all(isinstance(r, list) for r in results)


def test_a_finer_search_for_one_call_finds_faces_under_the_detectors_floor(detector):
    """``min_face_size`` on one call searches below the detector's own floor (40 px) without changing it:
    the astronaut's face shrunk to about 29 px is missed at 40 and found at 20."""
    photo = Image.open(Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.jpg").convert("RGB")
    small = np.asarray(photo.resize((photo.width // 3, photo.height // 3)))
    assert detector.detect_batch([small]) == [[]]
    [found] = detector.detect_batch([small], min_face_size=20)
    assert len(found) == 1 and 20 <= min(found[0].box[2] - found[0].box[0], found[0].box[3] - found[0].box[1]) < 40
    assert detector.min_face_size == 40 and detector.detect(small) == []
    with pytest.raises(ValueError, match="min_face_size must be at least 1"):
        detector.detect_batch([small], min_face_size=0)
    # How small a face a search can reach: as asked, unless the image is downscaled for detection so far
    # that MTCNN's 12-pixel window is the limit (1280 px is the detection size).
    assert detector.search_floor(small.shape, 20) == 20 and detector.search_floor((1080, 1920), 20) == 20
    assert detector.search_floor((2160, 3840), 20) == pytest.approx(36.0) and detector.search_floor((100, 100)) == 40


def test_flat_grey_image_finds_none(detector):
    grey = np.full((240, 320, 3), 128, np.uint8)
    result = detector.detect(grey)
    assert result == [] and isinstance(result, list)
    # A batch where MTCNN finds nothing in any image (its None path in batch mode).
    assert detector.detect_batch([grey, grey.copy()]) == [[], []]


def test_images_smaller_than_the_smallest_face_searched_for_find_none(detector):
    """A 16 x 16 photo (the smallest the app accepts), a 16-px-wide strip, and a 30-px image under the
    40-px floor: MTCNN's image pyramid is empty there, so no face, not a failed pass; the finer search
    for small faces (20 px) likewise on a 16-px image."""
    photo = np.asarray(Image.open(Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.jpg").convert("RGB"))
    for size in ((16, 16), (16, 400), (30, 30)):
        small = np.asarray(Image.fromarray(photo).resize(size))
        assert detector.detect(small) == []
        assert detector.detect_batch([small, small.copy()]) == [[], []]
    assert detector.detect_batch([np.asarray(Image.fromarray(photo).resize((16, 16)))], min_face_size=20) == [[]]
    tiny = np.zeros((2, 16, 16, 3), np.uint8)  # the pass itself, asked for faces of 40 px in 16-px images
    assert [(b.shape, p.shape) for b, p in mtcnn_pass.detect(tiny, 40, None, None, None, [0.6, 0.7, 0.7], 0.709)] == [
        ((0, 5), (0, 5, 2))] * 2


def test_detect_batch_mixed_sizes_matches_single_detection(detector, group_results):
    rel = GROUP_PHOTOS[1][0]
    data_file(rel)
    selfie, single = group_results[rel]
    grey = np.full((120, 160, 3), 90, np.uint8)
    # Same-size images 0 and 2 go through MTCNN as one stacked batch, the grey one on its own.
    results = detector.detect_batch([selfie, grey, selfie.copy()], batch_size=2)
    assert len(results) == 3 and results[1] == []
    for k in (0, 2):
        assert len(results[k]) == len(single) >= 6
        assert all(f.frame == k for f in results[k])
        np.testing.assert_allclose([f.box for f in results[k]], [f.box for f in single], atol=1e-3)


def test_downscaled_detection_finds_the_same_face():
    img = load_rgb("photos/face_recognition/obama-1080p.jpg")
    assert max(img.shape) == 1920
    # edge_pad=0: the face is central, and the border would only slow the full-size run.
    full = FaceDetector(detect_max_side=1920, edge_pad=0).detect(img)
    small = FaceDetector(detect_max_side=640, edge_pad=0).detect(img)
    assert full and small
    ref = max(full, key=lambda f: f.size)
    got = max(small, key=lambda f: f.size)
    assert ref.size > 200  # Obama's face, not a stray detection
    tolerance = 0.05 * ref.size  # within 5% of the face size, in full-resolution pixels
    np.testing.assert_allclose(got.box, ref.box, atol=tolerance)
    np.testing.assert_allclose(got.landmarks, ref.landmarks, atol=tolerance)


@pytest.fixture(scope="module")
def video_frames() -> list[np.ndarray]:
    """Six evenly spaced frames of the real clip, RGB (read sequentially: seeking can drift)."""
    cap = cv2.VideoCapture(str(data_file(VIDEO)))
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(bgr)
    finally:
        cap.release()
    assert len(frames) > 100
    picks = np.linspace(0, len(frames) - 1, 6).round().astype(int)
    return [cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB) for i in picks]


@pytest.fixture(scope="module")
def video_faces(detector, video_frames) -> list[list[Face]]:
    return detector.detect_batch(video_frames, batch_size=4)


def test_detect_batch_on_video_frames(video_faces, video_frames):
    # hamilton_clip: frames 0, 2 and 3 show Lin-Manuel Miranda, 4 and 5 the same four audience
    # members in one shot; frame 1 is a dim, blurred audience shot.
    assert len(video_faces) == 6
    for k, faces in enumerate(video_faces):
        assert all(f.frame == k for f in faces)
        h, w = video_frames[k].shape[:2]
        assert all(0 <= f.box[0] < f.box[2] <= w and 0 <= f.box[1] < f.box[3] <= h for f in faces)
    assert sum(1 for faces in video_faces if faces) >= 4
    assert len(video_faces[2]) == len(video_faces[3]) == 1
    assert 3 <= len(video_faces[4]) == len(video_faces[5]) <= 6


def test_tracks_on_video_are_stable(video_faces):
    n = track_faces(video_faces)
    tracks = [[f.track for f in faces] for faces in video_faces]
    flat = [t for ts in tracks for t in ts]
    assert None not in flat
    assert n == len(set(flat)) and sorted(set(flat)) == list(range(n))
    # Ids in order of first appearance.
    first_seen = list(dict.fromkeys(flat))
    assert first_seen == sorted(first_seen)
    # The same person keeps one id within a shot: Lin-Manuel in frames 2-3, the audience in 4-5.
    assert tracks[2] == tracks[3]
    assert tracks[4] == tracks[5] and len(set(tracks[4])) == len(tracks[4])
    # Different shots do not share ids (the cut between frames 3 and 4 moves everyone).
    assert not set(tracks[3]) & set(tracks[4])
    assert n < len(flat)


def test_batch_falls_back_to_single_images_when_mtcnn_cannot_pack(
    detector, video_faces, video_frames, monkeypatch
):
    """On a device other than the CPU, facenet-pytorch's own pass runs, and it packs a batch's results
    in object arrays that numpy can refuse: detecting one by one then gives the same faces. Also shows
    that facenet's pass and ``forensics.mtcnn``'s (what ``video_faces`` came from) find the same faces."""
    mtcnn = detector._mtcnn
    real_detect = mtcnn.detect
    calls = []

    def refuse_batches(img, landmarks=False):
        calls.append(img.ndim)
        if isinstance(img, np.ndarray) and img.ndim == 4:
            raise ValueError("setting an array element with a sequence")
        return real_detect(img, landmarks=landmarks)

    monkeypatch.setattr(mtcnn, "detect", refuse_batches)
    monkeypatch.setattr(detector, "device", "cuda")  # the branch taken; MTCNN itself stays where it was built
    got = detector.detect_batch(video_frames[3:5], batch_size=2)
    assert calls == [4, 3, 3]
    for k, faces in zip((3, 4), got):
        assert [f.frame for f in faces] == [1 if k == 4 else 0] * len(faces)
        np.testing.assert_allclose([f.box for f in faces], [f.box for f in video_faces[k]], atol=1e-3)


def _facenet_pass(mtcnn, batch: np.ndarray, minsize: float):
    from facenet_pytorch.models.utils.detect_face import detect_face

    with torch.no_grad():
        boxes, points = detect_face(batch, minsize, mtcnn.pnet, mtcnn.rnet, mtcnn.onet, mtcnn.thresholds,
                                    mtcnn.factor, "cpu")
    return [(np.asarray(b, np.float32).reshape(-1, 5), np.asarray(p, np.float32).reshape(-1, 5, 2))
            for b, p in zip(boxes, points)]


def test_mtcnn_pass_is_facenets_bit_for_bit_on_real_media(detector, video_frames, group_results):
    """``forensics.mtcnn`` takes MTCNN's area resizes from a table of sums instead of PyTorch's
    ``interpolate``: boxes, probabilities and landmarks must be exactly facenet-pytorch's, on padded
    detection images of video frames (batched as ``detect_batch`` does) and of group photos, at the
    minimum face sizes the app uses (40, and 40 * 2/3 on a downscaled 1080p frame)."""
    mtcnn = detector._get_mtcnn()
    frames = [detector._detection_image(f)[0] for f in video_frames]
    batches = [np.stack(frames[k:k + 2]) for k in range(0, len(frames), 2)]
    batches += [detector._detection_image(img)[0][None] for img, _ in group_results.values()]
    found = 0
    for n, batch in enumerate(batches):
        for minsize in (40.0, 40 * 2 / 3) if n == 0 else (40.0,):
            with torch.no_grad():
                ours = mtcnn_pass.detect(batch, minsize, mtcnn.pnet, mtcnn.rnet, mtcnn.onet, mtcnn.thresholds,
                                         mtcnn.factor)
            reference = _facenet_pass(mtcnn, batch, minsize)
            assert len(ours) == len(reference) == len(batch)
            for (boxes, points), (want_boxes, want_points) in zip(ours, reference):
                assert boxes.dtype == np.float32 and np.array_equal(boxes, want_boxes)
                assert np.array_equal(points, want_points)
                found += len(boxes)
    assert found >= 20  # real faces were compared, not only empty results


def test_area_resizes_equal_pytorchs_or_step_aside():
    """The table-of-sums resizes equal ``interpolate(mode="area")`` bit for bit, in PyTorch's memory
    layout (the networks' sums depend on it), and return None where PyTorch's own float32 window sum
    would no longer be exact (so the caller uses PyTorch's resize there)."""
    from torch.nn.functional import interpolate

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 157, 203, 3), dtype=np.uint8)
    table = mtcnn_pass.summed_area_table(images)
    floats = torch.as_tensor(images).permute(0, 3, 1, 2).float()  # channels-last, as facenet makes it
    for size in [(157, 203), (100, 77), (71, 150), (12, 13), (1, 1)]:
        want = interpolate(floats, size=size, mode="area")
        got = mtcnn_pass.area_resize(table, size)
        assert torch.equal(got, want) and got.stride() == want.stride()
    y0, y1, x0, x1 = np.array([0, 20, 150]), np.array([157, 61, 157]), np.array([3, 0, 190]), np.array([90, 203, 203])
    image = np.array([1, 0, 1])
    got = mtcnn_pass.area_resize_boxes(table, image, y0, y1, x0, x1, 24)
    want = torch.cat([interpolate(floats[i, :, a:b, c:d].unsqueeze(0), size=(24, 24), mode="area")
                      for i, a, b, c, d in zip(image, y0, y1, x0, x1)])
    assert torch.equal(got, want) and got.stride() == want.stride()
    big = mtcnn_pass.summed_area_table(np.zeros((1, 300, 300, 3), np.uint8))
    assert mtcnn_pass.area_resize(big, (1, 1)) is None  # 90,000 pixels * 255 > 2**24
    assert mtcnn_pass.area_resize(big, (2, 2)) is not None  # 22,500 * 255 < 2**24


def test_crops_of_detected_faces(group_results):
    rel = GROUP_PHOTOS[0][0]
    data_file(rel)
    img, faces = group_results[rel]
    crops = crop_faces(img, faces, 224)
    assert len(crops) == len(faces)
    for c in crops:
        assert c.image.shape == (224, 224, 3) and c.image.dtype == np.uint8 and not c.fallback
        x0, y0, x1, y1 = c.crop_box
        fx0, fy0, fx1, fy1 = c.face.box
        assert x0 <= fx0 and y0 <= fy0 and fx1 <= x1 and fy1 <= y1  # the margin surrounds the face
        assert c.image.mean() > 40  # real pixels, not padding


def test_dark_flat_footage_is_stretched_for_face_finding_only(detector):
    """MTCNN misses faces in dark, flat footage: the labelled DFDC clip ``dfdc_abofeumbvv.mp4`` (grey
    levels 7-69) loses its face in most frames once compressed again. Its frames are stretched to the full
    grey range for face finding (the crops are cut from the frames as they are); a photo with ordinary
    contrast is left exactly as it is."""
    import subprocess

    from forensics.faces import stretched_contrast
    from forensics.media import load_video

    clip = DATA / "video" / "dfdc_abofeumbvv.mp4"
    if not clip.exists():
        pytest.skip("the labelled DFDC clip is not in ../shared/data")
    frames = load_video(clip, frames=8).frames
    stretched = stretched_contrast(frames[0])
    assert stretched is not frames[0] and np.percentile(stretched, 99) > 200 > np.percentile(frames[0], 99)
    plain = FaceDetector(stretch_contrast=False)
    found = [sum(bool(f) for f in d.detect_batch(frames)) for d in (plain, detector)]
    assert found[1] == len(frames) > found[0], found  # every frame's face, where the plain pass misses some
    crops = [crop_faces(frames[k], faces, 224) for k, faces in enumerate(detector.detect_batch(frames)) if faces]
    assert all(abs(float(c[0].image.mean()) - float(frames[0].mean())) < 40 for c in crops)  # cut from the dark frame
    # The same clip through H.264 at CRF 32, as a shared clip is compressed again: no face at all without it.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        again = Path(tmp) / "again.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clip), "-frames:v", "120", "-c:v",
                        "libx264", "-preset", "veryfast", "-crf", "32", "-an", str(again)], check=True)
        compressed = load_video(again, frames=6).frames
    assert sum(bool(f) for f in plain.detect_batch(compressed)) < sum(bool(f) for f in detector.detect_batch(compressed))
    # Ordinary contrast: untouched, the very same array.
    photo = np.asarray(Image.open(DATA / "photos" / "face_recognition" / "obama.jpg").convert("RGB"))
    assert stretched_contrast(photo) is photo
    flat = np.full((64, 64, 3), 90, np.uint8)
    assert stretched_contrast(flat) is flat  # nothing to stretch: a flat image stays flat
    assert stretched_contrast(photo, span=256) is not photo  # a span wider than any photo's stretches it
