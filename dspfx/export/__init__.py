"""Exports: models leave Python in the formats their players read.

- :mod:`~dspfx.export.nam`: ``.nam`` files (Neural Amp Modeler) of the black-box capture models.
- :mod:`~dspfx.export.faust`: Faust code and LV2 plugins of chains (knobs as controls).
"""

from dspfx.export.faust import export_plugin, faust_code
from dspfx.export.nam import export_nam, nam_dict

__all__ = ["export_nam", "nam_dict", "export_plugin", "faust_code"]
