"""Exports: models leave Python in the formats their players read.

- :mod:`~dspfx.export.nam`: ``.nam`` files (Neural Amp Modeler) of the black-box capture models.
"""

from dspfx.export.nam import export_nam, nam_dict

__all__ = ["export_nam", "nam_dict"]
