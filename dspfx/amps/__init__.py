"""Guitar-amp blocks: preamp, tone stack, power amp, output transformer, cabinet.

Importing this package registers every amp unit; each module lists its units in ``__all__``.
"""

__all__: list[str] = []
