"""The boot sequence of the device's storage: meta log, ring recovery, new boot number.

Order matters (RING.md, "Boot"): the ring is recovered before the boot number is taken, so
the new boot is greater than every boot found on flash even if the meta log were older than
the ring; and records carry the new boot only after it is durable.
"""

from metalog import Meta
from ring import DROP_OLDEST, Ring

META_SECTORS = 2  # the first two sectors of the partition hold the meta log


def open_store(flash, policy=DROP_OLDEST, first_sector=0, count=0):
    """Open the storage on `count` sectors from `first_sector` (0: to the end of the flash):
    two for the meta log, the rest for the ring. Returns the started Ring."""
    if count == 0:
        count = flash.sector_count - first_sector
    if count < META_SECTORS + 2:
        raise ValueError("storage needs at least four sectors")
    meta = Meta(flash, first_sector)
    meta.load()
    ring = Ring(flash, meta, first_sector + META_SECTORS, count - META_SECTORS, policy)
    ring.recover()
    ring.start(meta.new_boot(ring.max_boot))
    return ring
