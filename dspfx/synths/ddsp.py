"""The DDSP synth in one call: harmonic + filtered noise in parallel, optionally into a reverb."""

from __future__ import annotations

from dspfx.chain import Chain, Parallel
from dspfx.effects.convolution import Convolution
from dspfx.synths.harmonic import Harmonic
from dspfx.synths.noise import FilteredNoise
from dspfx.unit import Unit

__all__ = ["harmonic_plus_noise"]


def harmonic_plus_noise(
    sample_rate: int = 16000,
    *,
    n_harmonics: int = 100,
    n_bands: int = 65,
    reverb_s: float | None = None,
    seed: int | None = None,
) -> Unit:
    """The synth of DDSP (Engel et al., ICLR 2020): an additive ``harmonic`` synth and
    ``filtered_noise`` summed, optionally followed by a learned ``convolution`` reverb.

    Controls are addressed by path, as a decoder network drives them::

        synth = harmonic_plus_noise(16000)
        audio = synth(n_samples=64000, **{
            "harmonic.f0_hz": f0,                            # (batch, frames)
            "harmonic.amplitude": amplitude,                 # (batch, frames)
            "harmonic.harmonic_distribution": distribution,  # (batch, frames, n_harmonics)
            "noise.magnitudes": magnitudes,                  # (batch, frames, n_bands)
        })

    Args:
        sample_rate: in Hz (DDSP's default is 16 kHz).
        n_harmonics: harmonics of the additive synth (DDSP: 60 to 100).
        n_bands: noise filter bands, linearly spaced from 0 to Nyquist (DDSP: 65).
        reverb_s: length of a learned impulse response in seconds (DDSP: 3 s), or None for no
            reverb. The reverb is a ``convolution`` with a learned, un-normalised IR and a
            ``mix`` knob (child ``"reverb"``), after the sum (child ``"synth"``).
        seed: seed of the noise (None: torch's global generator).

    Returns:
        ``Parallel(harmonic=..., noise=...)``, or ``Chain(synth=that, reverb=...)`` with a reverb.
    """
    synth = Parallel(
        harmonic=Harmonic(sample_rate=sample_rate, n_harmonics=n_harmonics),
        noise=FilteredNoise(sample_rate=sample_rate, n_bands=n_bands, seed=seed),
    )
    if reverb_s is None:
        return synth
    if not reverb_s > 0:
        raise ValueError(f"reverb_s must be a positive number of seconds or None, got {reverb_s!r}")
    reverb = Convolution(sample_rate=sample_rate, n_taps=int(round(reverb_s * sample_rate)), normalize=False)
    return Chain(synth=synth, reverb=reverb)
