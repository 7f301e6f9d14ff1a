# Boards run main.py at power-on; it stays a source file (not .mpy) for that reason.
import device

device.main()
