"""A low-quality clip made from one real photograph: a camera pan over it, downscaled and JPEG
compressed as footage from a phone or a web video would be.

For trying `dloral-run` and `make_reference.py` on real image content when no footage of your own
is at hand. scikit-image's wheel ships public-domain / CC0 photographs that suit it, e.g.
`skimage/data/coffee.png` (600×400, CC0) and `skimage/data/astronaut.png` (512×512, public domain):

    python3 Tools/reference/make_pan_clip.py --image coffee.png --out clip/ --frames 6 --size 320x180

Frames are written as frame_0000.png, frame_0001.png, … (PNG, so the compression happens once,
here). Deterministic: the same arguments give the same bytes.
"""
import argparse
import io
import os
import sys

from PIL import Image


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", required=True, help="a photograph (any format Pillow reads)")
    ap.add_argument("--out", required=True, help="folder for the frames (created)")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--size", default="320x180", help="WxH of each low-quality frame")
    ap.add_argument("--scale", type=float, default=1.5,
                    help="how much larger the window cut from the photograph is than a frame")
    ap.add_argument("--step", type=float, default=6.0, help="pan per frame in photograph pixels (x); y moves half as much")
    ap.add_argument("--quality", type=int, default=70, help="JPEG quality of each frame's compression")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    photo = Image.open(a.image).convert("RGB")
    cw, ch = round(w * a.scale), round(h * a.scale)
    span_x = a.step * (a.frames - 1)
    span_y = a.step * 0.5 * (a.frames - 1)
    if cw + span_x > photo.width or ch + span_y > photo.height:
        sys.exit(f"{a.image}: {photo.width}×{photo.height} is too small for {a.frames} frames of a "
                 f"{cw}×{ch} window panning {span_x:.0f}×{span_y:.0f} pixels; lower --scale, --step or --frames")
    x0 = (photo.width - cw - span_x) / 2
    y0 = (photo.height - ch - span_y) / 2
    os.makedirs(a.out, exist_ok=True)
    for t in range(a.frames):
        left, top = x0 + a.step * t, y0 + a.step * 0.5 * t
        # Sub-pixel pan: Pillow's box argument resamples the window at fractional offsets.
        frame = photo.resize((w, h), Image.BICUBIC, box=(left, top, left + cw, top + ch))
        buf = io.BytesIO()
        frame.save(buf, "JPEG", quality=a.quality)
        buf.seek(0)
        Image.open(buf).convert("RGB").save(os.path.join(a.out, f"frame_{t:04d}.png"))
    print(f"{a.out}: {a.frames} frames of {w}×{h}")


if __name__ == "__main__":
    main()
