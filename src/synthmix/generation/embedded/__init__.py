"""The embedded generator: a compact class-conditional diffusion model trained on the user's images.

Modules: ``config`` (settings), ``unet`` (the denoiser), ``diffusion`` (noise schedule, samplers,
img2img, class interpolation), ``train`` (resumable training), ``backend`` (the ``embedded``
generator of ``synthmix generate``), ``fidelity`` (class fidelity of generated images).
Importing this package is cheap; torch and diffusers load in the submodules.
"""
