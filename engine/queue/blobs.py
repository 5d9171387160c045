"""Response bodies at rest: zstd with a dictionary trained on the run's own first replies.

A chat completion body is a few hundred bytes, most of it the same JSON envelope (object, id,
model, usage, finish_reason) around a short text: zstd alone saves a third of such a body, with
a dictionary trained on a thousand of them about three quarters, at a few microseconds per
body either way. The queue and the response cache hold one body per call (635,577 in the
default PERSONA run), so this is most of their size.

Format: a stored body is either the reply's bytes as they came (every body stored before a
dictionary exists, and every file written before this module) or one zstd frame that names its
dictionary by id. The two cannot be confused: a JSON body never starts with the zstd magic
number. A dictionary is stored (by the backend, in the same transaction) before the first body
compressed with it, and never changes, so every stored body stays readable.
"""

from __future__ import annotations

from collections.abc import Iterable

import zstandard

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
TRAIN_SAMPLES = 1000  # bodies seen before the dictionary is trained (~0.1 s, once per file)
DICT_BYTES = 16 * 1024
_MIN_SAMPLE = 32  # tiny bodies teach the dictionary nothing
_LEVEL = 1  # level 3: 7 % smaller at 1.4 x the CPU, paid in the queue's thread under the GIL


class BlobCodec:
    """Encodes bodies for storage and decodes them back; owned by one thread.

    `dictionaries` are the (id, data) pairs already stored where the bodies are read from;
    the newest (last) one compresses. Without one, bodies are stored as they are until
    `TRAIN_SAMPLES` have been seen; then `encode` trains one and hands it out once through
    `take_new_dictionary`, which the backend must store before it commits the bodies encoded
    after it.
    """

    def __init__(self, dictionaries: Iterable[tuple[int, bytes]] = ()) -> None:
        self._decoders: dict[int, zstandard.ZstdDecompressor] = {0: zstandard.ZstdDecompressor()}
        self._encoder: zstandard.ZstdCompressor | None = None
        self._samples: list[bytes | bytearray | memoryview[int]] | None = []
        self._new: tuple[int, bytes] | None = None
        for _, data in dictionaries:
            self._use(zstandard.ZstdCompressionDict(data))

    def encode(self, body: bytes) -> bytes:
        if self._encoder is None:
            self._learn(body)
            if self._encoder is None:
                return body
        return self._encoder.compress(body)

    def decode(self, stored: bytes) -> bytes:
        if not stored.startswith(ZSTD_MAGIC):
            return stored
        dict_id = zstandard.get_frame_parameters(stored).dict_id
        decoder = self._decoders.get(dict_id)
        if decoder is None:
            raise LookupError(f"stored body compressed with unknown dictionary {dict_id}")
        return decoder.decompress(stored)

    def knows(self, dict_id: int) -> bool:
        return dict_id in self._decoders

    def add_dictionary(self, data: bytes) -> None:
        """A dictionary stored by another writer (read side only: it does not compress)."""
        zdict = zstandard.ZstdCompressionDict(data)
        self._decoders[zdict.dict_id()] = zstandard.ZstdDecompressor(dict_data=zdict)

    def take_new_dictionary(self) -> tuple[int, bytes] | None:
        new, self._new = self._new, None
        return new

    def _learn(self, body: bytes) -> None:
        if self._samples is None:
            return
        if len(body) >= _MIN_SAMPLE:
            self._samples.append(body)
        if len(self._samples) < TRAIN_SAMPLES:
            return
        samples, self._samples = self._samples, None
        try:
            zdict = zstandard.train_dictionary(DICT_BYTES, samples, level=_LEVEL)
        except zstandard.ZstdError:
            return  # bodies too alike or too few to train on: keep storing them as they are
        if zdict.dict_id() in self._decoders:
            return  # an id already in use (one in 2**32): keep storing bodies as they are
        self._use(zdict)
        self._new = (zdict.dict_id(), zdict.as_bytes())

    def _use(self, zdict: zstandard.ZstdCompressionDict) -> None:
        self._decoders[zdict.dict_id()] = zstandard.ZstdDecompressor(dict_data=zdict)
        self._encoder = zstandard.ZstdCompressor(level=_LEVEL, dict_data=zdict)
        self._samples = None
