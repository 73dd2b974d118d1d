"""RGB frames and TV-L1 optical flow of one video (PyAV decoding, OpenCV contrib's DualTVL1).

Flow is taken where the RGB frames are (1 fps, the papers' frame rule in video.py): for each kept
frame t, the flow from t to t+1. Full-rate flow (every frame pair, what the two-stream papers'
extractions store) costs one TV-L1 solve per frame, ~25x more on UCF-101; the loader only ever
reads a few segment-middle flow frames, so drltune keeps one per second. Each flow component is
stored the way those extractions do (and ucf101.py reads): a greyscale image, clipped to
[-bound, bound] and mapped linearly to 0..255, so 127.5 is no motion.
"""

from __future__ import annotations

import numpy as np

from drltune.data.video import kept, video_fps

BOUND = 20.0  # pixels per frame at 0 / 255 (denseflow's and TSN's default)


def quantize(flow: np.ndarray, bound: float = BOUND) -> np.ndarray:
    """A float flow component -> uint8, bound -> 255, -bound -> 0, 0 -> 127/128."""
    return np.clip(np.round((flow + bound) * (255.0 / (2 * bound))), 0, 255).astype(np.uint8)


def frames_and_flow(
    path: str, per_second: int = 1, bound: float = BOUND
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], float]:
    """(RGB frames, flow u images, flow v images, seconds) of one video: the RGB frames of
    video.frames_per_second, and the flow from each of them to the next frame."""
    import av  # the `media` extra
    import cv2  # opencv-contrib-python(-headless), the `media` extra

    tvl1 = cv2.optflow.DualTVL1OpticalFlow.create()
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        fps = video_fps(stream)
        rgb, flows, total, previous = [], [], 0, None
        for frame in container.decode(stream):
            is_kept = kept(total, fps, per_second)
            if is_kept or previous is not None:
                image = frame.to_ndarray(format="rgb24")
                grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
                if previous is not None:
                    # OpenCV allocates an output array passed as None; its stubs type `flow` as
                    # required
                    flows.append((total - 1, tvl1.calc(previous, grey, None)))  # type: ignore[call-overload]
                previous = grey if is_kept else None
                if is_kept:
                    rgb.append((total, image))
            total += 1
    if not total:
        raise ValueError("no decodable video frames")
    whole = total // fps * fps
    frames = [f for i, f in rgb if i < whole] or [rgb[0][1]]
    kept_flows = [f for i, f in flows if i < whole] or [f for _, f in flows[:1]]
    return (
        frames,
        [quantize(f[..., 0], bound) for f in kept_flows],
        [quantize(f[..., 1], bound) for f in kept_flows],
        total / fps,
    )
