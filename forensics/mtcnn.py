"""MTCNN's detection pass (facenet-pytorch 2.5.3's ``detect_face``) with its area resizes taken from
one summed-area table: the same boxes, probabilities and landmarks, bit for bit, in less time.

``detect_face`` converts a batch to float and resizes it with ``interpolate(mode="area")`` (PyTorch's
adaptive average pooling) once per pyramid scale, and once per candidate box for the second and third
networks (24 and 48 px). Each resize reads the whole float image again: on a 16-frame 1080p video
that was about half of the face-finding time. Here the uint8 pixels are summed once into a table of
integer prefix sums; a pooling window's sum is then four look-ups, exact in integers. PyTorch sums a
window of integer-valued floats exactly too (while the sum stays under 2**24; where a window is larger, PyTorch resizes
as before) and divides it by the window's height, then its width, in float32: so does this, and the
networks see the same numbers, in the same (channels-last) memory layout. The rest of the pass
(networks, box regression, non-maximum suppression) is facenet-pytorch's own code, called as is.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["area_resize", "area_resize_boxes", "detect", "summed_area_table"]

_FLOAT_EXACT = 2**24  # float32 holds every integer up to here: PyTorch's window sums are exact below it


def summed_area_table(images: np.ndarray) -> np.ndarray:
    """``(B, H, W, C)`` uint8 -> ``(B, H + 1, W + 1, C)`` integer prefix sums, a zero row and column first."""
    b, h, w, c = images.shape
    dtype = np.int32 if 255 * h * w < 2**31 else np.int64
    table = np.zeros((b, h + 1, w + 1, c), dtype)
    inner = table[:, 1:, 1:]
    np.cumsum(images, axis=2, dtype=dtype, out=inner)
    for y in range(1, h):  # row by row: three times faster than numpy's cumsum down the rows
        inner[:, y] += inner[:, y - 1]
    return table


def _bounds(n: np.ndarray | int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive pooling windows of ``n`` pixels into ``size``: [floor(i*n/size), ceil((i+1)*n/size))."""
    i = np.arange(size)
    n = np.asarray(n)[..., None]
    return (i * n) // size, -((-(i + 1) * n) // size)


def _exact(rows: np.ndarray, cols: np.ndarray) -> bool:
    """Whether PyTorch's float32 sum of the largest window is exact, as this module's integer sum is."""
    return len(rows) == 0 or 255 * int(rows.max()) * int(cols.max()) < _FLOAT_EXACT


def _divide(sums: np.ndarray, rows: np.ndarray, cols: np.ndarray, channels_last: bool) -> torch.Tensor:
    """``sums / rows / cols`` in float32, as PyTorch's kernel divides, as an N, C, H, W tensor laid out
    as PyTorch's resize lays it out (the networks' float sums depend on the layout)."""
    out = np.ascontiguousarray(sums, dtype=np.float32)  # N, H, W, C
    out /= rows.astype(np.float32)
    out /= cols.astype(np.float32)
    out = torch.from_numpy(out).permute(0, 3, 1, 2)
    return out if channels_last else out.contiguous()


def area_resize(table: np.ndarray, size: tuple[int, int]) -> torch.Tensor | None:
    """``interpolate(images, size, mode="area")`` of the whole (channels-last) images behind ``table``; ``None``
    where a window is too large for PyTorch's own sum to be exact (the caller resizes as it does)."""
    h, w = table.shape[1] - 1, table.shape[2] - 1
    y0, y1 = _bounds(h, size[0])
    x0, x1 = _bounds(w, size[1])
    if not _exact(y1 - y0, x1 - x0):
        return None
    rows = np.take(table, y1, axis=1) - np.take(table, y0, axis=1)  # np.take: 3-4x faster than [:, y1]
    sums = np.take(rows, x1, axis=2) - np.take(rows, x0, axis=2)
    return _divide(sums, (y1 - y0)[:, None, None], (x1 - x0)[None, :, None], channels_last=True)


def area_resize_boxes(table: np.ndarray, image: np.ndarray, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray,
                      x1: np.ndarray, size: int) -> torch.Tensor | None:
    """For each k, ``interpolate(images[image[k], :, y0[k]:y1[k], x0[k]:x1[k]], (size, size), mode="area")``,
    concatenated (contiguous) ``(K, C, size, size)``; ``None`` as for ``area_resize``."""
    r0, r1 = _bounds(y1 - y0, size)
    c0, c1 = _bounds(x1 - x0, size)
    if not _exact(r1 - r0, c1 - c0):
        return None
    r0, r1, c0, c1 = r0 + y0[:, None], r1 + y0[:, None], c0 + x0[:, None], c1 + x0[:, None]
    b = image[:, None, None]
    top, bottom, left, right = r0[:, :, None], r1[:, :, None], c0[:, None, :], c1[:, None, :]
    sums = table[b, bottom, right] - table[b, top, right] - table[b, bottom, left] + table[b, top, left]
    return _divide(sums, (r1 - r0)[:, :, None, None], (c1 - c0)[:, None, :, None], channels_last=False)


def _crops(table: np.ndarray, imgs_float: Any, boxes: torch.Tensor, image_inds: torch.Tensor, w: int, h: int,
           size: int) -> torch.Tensor:
    """The second or third network's input: each box's square, resized (facenet's loop over boxes)."""
    from facenet_pytorch.models.utils.detect_face import imresample, pad

    y, ey, x, ex = pad(boxes, w, h)
    keep = (ey > (y - 1)) & (ex > (x - 1))
    inds = image_inds.numpy()[keep]
    y0, y1, x0, x1 = y[keep] - 1, ey[keep], x[keep] - 1, ex[keep]
    data = area_resize_boxes(table, inds, y0, y1, x0, x1, size)
    if data is None:
        data = torch.cat([imresample(imgs_float()[int(i), :, a:b, c:d].unsqueeze(0), (size, size))
                          for i, a, b, c, d in zip(inds, y0, y1, x0, x1)], dim=0)
    return (data - 127.5) * 0.0078125


def detect(images: np.ndarray, minsize: float, pnet: Any, rnet: Any, onet: Any, threshold: Sequence[float],
           factor: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """facenet-pytorch's ``detect_face`` on a CPU batch of same-size uint8 images ``(B, H, W, 3)``:
    per image, (boxes N x 5 with the probability last, landmarks N x 5 x 2), as it returns them."""
    from facenet_pytorch.models.utils.detect_face import (
        batched_nms,
        batched_nms_numpy,
        bbreg,
        fixed_batch_process,
        generateBoundingBox,
        imresample,
        rerec,
    )

    images = np.ascontiguousarray(images)
    batch_size, h, w = images.shape[:3]
    table = summed_area_table(images)
    cached: list[torch.Tensor] = []

    def imgs_float() -> torch.Tensor:  # facenet's float batch, only where a window is too large for exactness
        if not cached:
            cached.append(torch.as_tensor(images).permute(0, 3, 1, 2).type(torch.float32))
        return cached[0]

    m = 12.0 / minsize
    minl = min(h, w) * m
    scale_i = m
    scales = []
    while minl >= 12:
        scales.append(scale_i)
        scale_i = scale_i * factor
        minl = minl * factor

    if not scales:  # an image smaller than the smallest face searched for: nothing to find
        return [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)) for _ in range(batch_size)]

    # First stage
    boxes, image_inds, scale_picks = [], [], []
    offset = 0
    for scale in scales:
        size = (int(h * scale + 1), int(w * scale + 1))
        im_data = area_resize(table, size)
        if im_data is None:
            im_data = imresample(imgs_float(), size)
        im_data = (im_data - 127.5) * 0.0078125
        reg, probs = pnet(im_data)
        boxes_scale, image_inds_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold[0])
        boxes.append(boxes_scale)
        image_inds.append(image_inds_scale)
        pick = batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], image_inds_scale, 0.5)
        scale_picks.append(pick + offset)
        offset += boxes_scale.shape[0]

    boxes = torch.cat(boxes, dim=0)
    image_inds = torch.cat(image_inds, dim=0)
    scale_picks = torch.cat(scale_picks, dim=0)
    boxes, image_inds = boxes[scale_picks], image_inds[scale_picks]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]

    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    qq1 = boxes[:, 0] + boxes[:, 5] * regw
    qq2 = boxes[:, 1] + boxes[:, 6] * regh
    qq3 = boxes[:, 2] + boxes[:, 7] * regw
    qq4 = boxes[:, 3] + boxes[:, 8] * regh
    boxes = torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)
    boxes = rerec(boxes)

    # Second stage
    if len(boxes) > 0:
        im_data = _crops(table, imgs_float, boxes, image_inds, w, h, 24)
        out = fixed_batch_process(im_data, rnet)
        out0 = out[0].permute(1, 0)
        out1 = out[1].permute(1, 0)
        score = out1[1, :]
        ipass = score > threshold[1]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out0[:, ipass].permute(1, 0)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
        boxes = bbreg(boxes, mv)
        boxes = rerec(boxes)

    # Third stage
    points = torch.zeros(0, 5, 2)
    if len(boxes) > 0:
        im_data = _crops(table, imgs_float, boxes, image_inds, w, h, 48)
        out = fixed_batch_process(im_data, onet)
        out0 = out[0].permute(1, 0)
        out1 = out[1].permute(1, 0)
        out2 = out[2].permute(1, 0)
        score = out2[1, :]
        points = out1
        ipass = score > threshold[2]
        points = points[:, ipass]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out0[:, ipass].permute(1, 0)
        w_i = boxes[:, 2] - boxes[:, 0] + 1
        h_i = boxes[:, 3] - boxes[:, 1] + 1
        points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0)
        boxes = bbreg(boxes, mv)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

    boxes, points, image_inds = boxes.numpy(), points.numpy(), image_inds.numpy()
    return [(boxes[image_inds == k].copy(), points[image_inds == k].copy()) for k in range(batch_size)]
