"""Files and pixels: image decoding, ground-truth mask rules, overlays, atomic writes and safe
names. Imports nothing of the harness but :mod:`bench.errors`."""
