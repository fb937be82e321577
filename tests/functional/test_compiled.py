"""The device policy of the compiled kernels: a CPU kernel handed a tensor on another device
raises (naming the unit that ran it) instead of copying to the CPU and back. Checked without a
GPU on the meta device; tests/test_cuda.py runs the units that have torch paths on a GPU."""

import pytest
import torch

import dspfx
class _MetaKernelUnit(dspfx.Unit):
    """A stand-in unit whose process() hands a tensor on another device to a compiled kernel."""

    name = "meta_kernel_stand_in"
    category = "effect"

    def process(self, x, controls, state):
        from dspfx.functional._compiled import as_numpy

        as_numpy(torch.empty(3, device="meta"))
        return x, state


def test_a_cpu_kernel_given_another_device_raises_naming_the_unit_never_copies():
    from dspfx.functional import CPUKernelError
    from dspfx.functional._compiled import as_numpy

    with pytest.raises(CPUKernelError, match="meta"):
        as_numpy(torch.empty(3, device="meta"))
    unit = _MetaKernelUnit()
    with pytest.raises(CPUKernelError, match=r"meta_kernel_stand_in \(_MetaKernelUnit\) runs a compiled CPU kernel"):
        unit(torch.zeros(1, 1, 4))
    chain = dspfx.Chain(a=dspfx.make("gain"), b=_MetaKernelUnit())
    with pytest.raises(CPUKernelError, match=r"^meta_kernel_stand_in") as info:
        chain(torch.zeros(1, 1, 4))
    assert "chain" not in str(info.value).split(":")[0]  # the innermost unit is named, once
