"""Hardware-in-the-loop tests: a virtual board by default, a real one with --board PORT."""
