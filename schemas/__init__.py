"""msgspec Structs shared by every package; encoders and decoders are built once here.

This package does no I/O: it only says what the data looks like.
"""
