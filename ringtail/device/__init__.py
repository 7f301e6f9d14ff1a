"""Host-side tooling for boards running Ringtail's firmware (docs/hwtests.md).

- `virtual`: a virtual board, the MicroPython unix port behind a pseudo-terminal that
  `mpremote` drives exactly as a USB board (used by hwtests/ and `ringtail stack`);
- `flash`: compile the firmware with mpy-cross into a ROMFS image, deploy it with mpremote
  (a board's ROMFS partition, a virtual board's romfs.img, or .mpy files), write the
  device's config, verify what landed, reset the board (`ringtail device flash`);
- `romfs`: building the firmware's ROMFS image, and running code from one on the unix port
  with a board's free heap (the virtual board, tests/firmware);
- `mpremote`: one mpremote session against a port, with a timeout and its output;
- `tools`: where the device toolchain (micropython, mpy-cross, mpremote) is found;
- `cli`: the bodies of `ringtail device ...` (the parser is in ringtail/cli.py).
"""
