"""Writes the decompression-bomb and size-lie seeds of the committed fuzz corpus
(tests/fuzz_corpus/, read by tests/reliability.rs `fuzz_smoke_run_and_corpus_never_panic`).

    /work/venv-py/bin/python scripts/fuzz_seeds.py     # needs torch

Not used by the crate or CI: the files it writes are committed. Each starts from what
`torch.save` writes for a one-tensor state dict under a key of the `micro_base` fixture model,
then changes one thing a hostile file would:
- zip-bomb-misfit.pth: `patch_embed.conv1.weight` (the model's is [4, 3, 3, 3]) saved as 2**22
  zeros, its storage record deflated: 16 MiB behind ~16 KB, refused by its shape unread.
- zip-record-claims-more.pth: the tensor has its real 108 elements, but its storage record is
  replaced by 4 MiB of deflated zeros: the record's header claims more than the pickle declares.
- legacy-storage-overrun.pth: the legacy (non-zip) format, with the storage's element count
  raised to 2**40: a storage that would run past the end of the file.
"""
import io
import pathlib
import struct
import zipfile

import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fuzz_corpus"
KEY = "patch_embed.conv1.weight"


def saved(obj, **kwargs):
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def rezip(data, replace=None):
    """The zip `data` re-written with every storage record deflated; `replace` maps a record
    name's suffix to new bytes."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            for suffix, new in (replace or {}).items():
                if info.filename.endswith(suffix):
                    body = new
            method = zipfile.ZIP_DEFLATED if "/data/" in info.filename else zipfile.ZIP_STORED
            dst.writestr(info.filename, body, compress_type=method, compresslevel=9)
    return out.getvalue()


def main():
    bomb = saved({"model": {KEY: torch.zeros(2**22)}})
    (OUT / "zip-bomb-misfit.pth").write_bytes(rezip(bomb))

    honest = saved({"model": {KEY: torch.ones(4, 3, 3, 3)}})
    lie = rezip(honest, {"/data/0": bytes(4 << 20)})
    (OUT / "zip-record-claims-more.pth").write_bytes(lie)

    legacy = bytearray(saved({"model": {KEY: torch.ones(4, 3, 3, 3)}},
                             _use_new_zipfile_serialization=False))
    # The storage follows the pickles as an 8-byte element count and its 108 float32 values:
    # the count is the 8 bytes before the last 432.
    at = len(legacy) - 108 * 4 - 8
    assert struct.unpack("<Q", legacy[at:at + 8])[0] == 108
    legacy[at:at + 8] = struct.pack("<Q", 2**40)
    (OUT / "legacy-storage-overrun.pth").write_bytes(bytes(legacy))
    for name in ["zip-bomb-misfit.pth", "zip-record-claims-more.pth", "legacy-storage-overrun.pth"]:
        print(name, (OUT / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
