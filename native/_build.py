"""cffi API-mode build of `native._native` (run by setuptools through setup.py's cffi_modules).

API mode compiles a real CPython extension at install time: no ABI guessing at import, and
cffi's generated wrappers release the GIL around every C call (`Py_BEGIN_ALLOW_THREADS` in
the generated `_native.c`), which is what lets a gateway checksum a 1 MiB spool segment while
its asyncio loop keeps running.
"""

from __future__ import annotations

import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCES = ("crc32c.c", "frames.c", "xor.c", "codec.c", "cbor_scan.c")


def _rel(name: str) -> str:
    # setuptools wants source paths relative to the project root it runs from.
    return os.path.relpath(os.path.join(_HERE, name))


# Exactly the declarations of ringtail_native.h that Python uses; the header is the contract.
CDEF = """
#define RT_FORMAT_VERSION 2
#define RT_FORMAT_VERSION_MIN 1
#define RT_MAX_POINTS 1000000
const char *rt_strerror(int err);
uint32_t rt_crc32c(uint32_t crc, const uint8_t *data, size_t len);
const char *rt_crc32c_backend(void);
uint32_t rt_crc32c_portable(uint32_t crc, const uint8_t *data, size_t len);
int rt_crc32c_hw_available(void);
uint32_t rt_crc32c_hw(uint32_t crc, const uint8_t *data, size_t len);
int rt_crc32c_pclmul_available(void);
uint32_t rt_crc32c_pclmul(uint32_t crc, const uint8_t *data, size_t len);
int rt_crc32c_fold_available(void);
uint32_t rt_crc32c_fold(uint32_t crc, const uint8_t *data, size_t len);
size_t rt_encode_bound(size_t n);
size_t rt_encode_scratch_bound(size_t n);
int rt_encode(const int64_t *ts, const double *values, size_t n, uint8_t *out, size_t out_cap,
              void *scratch, size_t scratch_cap, size_t *out_len);
int rt_block_count(const uint8_t *block, size_t len, size_t *count);
int rt_decode(const uint8_t *block, size_t len, int64_t *ts, double *values, size_t count);
int rt_cbor_scan(const uint8_t *data, size_t len, size_t max_depth, uint64_t *out);
"""

# -ffp-contract=off: the decimal mode's exactness test (n / 10^e == v) must not be fused into
# an FMA on aarch64, or the C encoder and the Python reference would disagree.
CFLAGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-ffp-contract=off", "-Wall", "-Wextra"]

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "native._native",
    '#include "ringtail_native.h"',
    sources=[_rel(s) for s in _SOURCES],
    include_dirs=[_rel(".")],
    depends=[_rel(h) for h in ("ringtail_native.h", "bits.h", "frames.h", "xor.h")],
    extra_compile_args=CFLAGS,
    libraries=["m", "pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
