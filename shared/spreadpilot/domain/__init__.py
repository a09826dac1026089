"""The pure trading core: values in, values out; no I/O, no clock reads."""
